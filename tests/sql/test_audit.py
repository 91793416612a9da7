"""The audit trail: operator actions with the acting role; append-only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgmq_jobs.client as jobs

Connection = psycopg.Connection[Any]


@pytest.fixture
def operator(db_dsn: str, queue_name: str) -> Iterator[str]:
    role = f"op_{queue_name}"
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        admin.execute(sql.SQL("grant pgmq_jobs_admin to {}").format(sql.Identifier(role)))
        yield role
        admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_replay_and_purge_by_a_named_role_are_audited(
    conn: Connection, db_dsn: str, queue_name: str, operator: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}])
    for job in jobs.claim(conn, queue_name, 2):
        jobs.fail(conn, queue_name, job.job_id, 1, "x")
    dead = [d.dead_id for d in jobs.dead_letters(conn, queue_name)]

    # A login role of its own, and the same role through SET ROLE (as PostgREST does).
    with psycopg.connect(db_dsn, user=operator, autocommit=True) as op:
        assert jobs.replay(op, queue_name, dead[:1]) == 1
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(operator)))
    try:
        assert jobs.purge_dead_letters(conn, queue_name) == 1
        jobs.configure_queue(conn, queue_name, max_attempts=7)
    finally:
        conn.execute("reset role")

    rows = jobs.audit(conn, queue_name)
    by_action = {r["action"]: r for r in rows}
    assert by_action["replay"]["role"] == operator
    assert by_action["replay"]["change"] == {"dead_ids": dead[:1], "replayed": 1}
    assert by_action["purge_dead_letters"]["role"] == operator
    assert by_action["purge_dead_letters"]["change"]["purged"] == 1
    assert by_action["configure_queue"]["role"] == operator
    assert by_action["configure_queue"]["change"] == {"max_attempts": {"from": 1, "to": 7}}
    assert by_action["create_queue"]["role"] == conn.info.user
    # Job outcomes are not audit rows.
    assert {r["action"] for r in rows} == {
        "create_queue",
        "replay",
        "purge_dead_letters",
        "configure_queue",
    }


def test_schedule_and_drop_are_audited(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.schedule(conn, f"{queue_name}_s", "0 0 1 1 *", queue_name)
    jobs.unschedule(conn, f"{queue_name}_s")
    jobs.drop_queue(conn, queue_name)
    actions = [r["action"] for r in reversed(jobs.audit(conn, queue_name))]
    assert actions == ["create_queue", "schedule", "unschedule", "drop_queue"]


def test_audit_log_is_append_only(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("delete from pgmq_jobs.audit_log where queue = %s", (queue_name,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("update pgmq_jobs.audit_log set actor = 'someone else'")
    assert len(jobs.audit(conn, queue_name)) == 1
