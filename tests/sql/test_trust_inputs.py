"""Issue 18, finding 9: input that was accepted and should not be.

Key arrays that pair keys with the wrong payloads, a run_at that jumps the queue, unbounded
worker bookkeeping, no-op configure calls in the audit trail, and audit rows that named only
the SET ROLE role.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgmq_jobs.client as jobs
from support import queue_rows

Connection = psycopg.Connection[Any]


@pytest.mark.parametrize(
    "keys",
    [
        "{{k},{k}}",  # 2-D: keys[1] and keys[2] are null, so both jobs went in
        "[0:1]={k,k}",  # indexed from 0: keys[2] is null, the second job went in
    ],
)
@pytest.mark.parametrize("which", ["dedupe_keys", "group_keys"])
def test_enqueue_batch_refuses_misshapen_key_arrays(
    conn: Connection, queue_name: str, keys: str, which: str
) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one-dimensional"):
        conn.execute(
            sql.SQL(
                "select pgmq_jobs.enqueue_batch(%s, array['{{}}', '{{}}']::jsonb[],"
                " {} => %s::text[])"
            ).format(sql.Identifier(which)),
            (queue_name, keys),
        )
    assert queue_rows(conn, queue_name) == []
    # The same keys in a plain array still dedupe.
    ids = conn.execute(
        "select pgmq_jobs.enqueue_batch(%s, array['{}', '{}']::jsonb[], dedupe_keys => %s)",
        (queue_name, ["k", "k"]),
    ).fetchall()
    assert len({r[0] for r in ids}) == 1


def test_a_run_at_in_the_past_does_not_jump_the_queue(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    first = jobs.enqueue(conn, queue_name, {"n": 1})
    [(early, now)] = conn.execute(
        "select pgmq_jobs.enqueue(%s, '{}', run_at => '4713-01-01 BC'), clock_timestamp()",
        (queue_name,),
    ).fetchall()
    [row] = [r for r in queue_rows(conn, queue_name) if r["msg_id"] == early]
    assert row["vt"] >= now - timedelta(seconds=1)
    assert row["vt"].year > 2000
    # Claimed in order: the job that was there first comes first.
    [claimed] = jobs.claim(conn, queue_name, 1)
    assert claimed.job_id == first


def test_heartbeat_has_bounded_sizes(conn: Connection) -> None:
    beat = "select pgmq_jobs.heartbeat('w-bounded', %s::text[], host => %s)"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="host must be at most 255"):
        conn.execute(beat, (["q"], "h" * 20_000))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 1000 queue names"):
        conn.execute(beat, ([f"q{i}" for i in range(1001)], "h"))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 63 characters"):
        conn.execute(beat, (["q" * 10_000], "h"))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one-dimensional"):
        conn.execute(beat, ("{{a},{b}}", "h"))
    conn.execute(beat, (["q1", "q2"], "host-1"))
    assert conn.execute(
        "select host, queues from pgmq_jobs.worker_heartbeats where worker_id = 'w-bounded'"
    ).fetchone() == ("host-1", ["q1", "q2"])
    conn.execute("delete from pgmq_jobs.worker_heartbeats where worker_id = 'w-bounded'")


def test_wait_for_jobs_records_only_queues_that_exist(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    wait = "select pgmq_jobs.wait_for_jobs('w-waits', %s::text[], %s)"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 1000 queue names"):
        conn.execute(wait, ([f"nq_{i}" for i in range(5000)], True))
    conn.execute(wait, ([queue_name, "no_such_queue", "x" * 5000], True))
    rows = conn.execute(
        "select queue from pgmq_jobs.waiting_workers where worker_id = 'w-waits'"
    ).fetchall()
    assert rows == [(queue_name,)]
    conn.execute(wait, ([queue_name], False))


def test_a_configure_queue_that_changes_nothing_is_not_audited(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3)
    before = conn.execute(
        "select updated_at from pgmq_jobs.queue_settings where queue = %s", (queue_name,)
    ).fetchone()
    jobs.configure_queue(conn, queue_name)
    jobs.configure_queue(conn, queue_name, max_attempts=3)
    assert [r["action"] for r in jobs.audit(conn, queue_name)] == ["create_queue"]
    after = conn.execute(
        "select updated_at from pgmq_jobs.queue_settings where queue = %s", (queue_name,)
    ).fetchone()
    assert after == before
    jobs.configure_queue(conn, queue_name, max_attempts=4)
    assert [r["action"] for r in jobs.audit(conn, queue_name)] == [
        "configure_queue",
        "create_queue",
    ]


@pytest.fixture
def login_role(db_dsn: str, queue_name: str) -> Iterator[str]:
    role = f"login_{queue_name}"
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        admin.execute(sql.SQL("grant pgmq_jobs_admin to {}").format(sql.Identifier(role)))
        yield role
        admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_audit_rows_record_the_session_role_beside_the_set_role(
    conn: Connection, db_dsn: str, queue_name: str, login_role: str
) -> None:
    jobs.create_queue(conn, queue_name)
    with psycopg.connect(db_dsn, user=login_role, autocommit=True) as op:
        jobs.configure_queue(op, queue_name, max_attempts=2)
        op.execute("set role pgmq_jobs_admin")
        jobs.configure_queue(op, queue_name, max_attempts=3)
    rows = jobs.audit(conn, queue_name)
    assert [(r["role"], r["session_role"]) for r in rows] == [
        ("pgmq_jobs_admin", login_role),
        (login_role, login_role),
        (conn.info.user, conn.info.user),
    ]
