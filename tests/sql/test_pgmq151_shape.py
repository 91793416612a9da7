"""The lifecycle on queue tables shaped like PGMQ 1.5.1's (hosted Supabase).

PGMQ 1.13 (the PyPI SQL used in tests) adds a ``last_read_at`` column that 1.5.1 lacks;
dropping it from a queue's tables shows that nothing in sql/ depends on it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

import pgmq_jobs.client as jobs
from support import make_visible

Connection = psycopg.Connection[Any]


def to_151_shape(conn: Connection, queue: str) -> None:
    for table in (f"q_{queue}", f"a_{queue}", f"q_{queue}_dlq", f"a_{queue}_dlq"):
        conn.execute(
            sql.SQL("alter table pgmq.{} drop column if exists last_read_at").format(
                sql.Identifier(table)
            )
        )
    columns = conn.execute(
        "select array_agg(attname::text order by attnum) from pg_attribute"
        " where attrelid = %s::regclass and attnum > 0 and not attisdropped",
        (f"pgmq.q_{queue}",),
    ).fetchone()
    assert columns is not None
    assert columns[0] == ["msg_id", "read_ct", "enqueued_at", "vt", "message", "headers"]


def test_lifecycle_on_151_shaped_tables(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=2, visibility_timeout=0.1)
    to_151_shape(conn, queue_name)
    ok, failing, lost = jobs.enqueue_batch(conn, queue_name, [{"k": "ok"}, {"k": "f"}, {"k": "l"}])
    claimed = {j.job_id: j for j in jobs.claim(conn, queue_name, 3, worker="w")}
    assert jobs.complete(conn, queue_name, [claimed[ok]]) == 1
    assert jobs.fail(conn, queue_name, failing, 1, "e", retry_after=0).outcome == "retry"
    assert jobs.extend(conn, queue_name, lost, 1, 0.05) is not None
    make_visible(conn, queue_name, lost)
    again = {j.job_id: j for j in jobs.claim(conn, queue_name, 3)}
    assert {failing: 2, lost: 2} == {k: v.attempt for k, v in again.items()}
    assert jobs.fail(conn, queue_name, failing, 2, "e2").outcome == "dead"
    make_visible(conn, queue_name, lost)
    assert jobs.claim(conn, queue_name) == []  # lost is past its attempts: routed, not returned
    reasons = sorted(d.reason for d in jobs.dead_letters(conn, queue_name))
    assert reasons == ["exhausted", "expired"]
    assert jobs.replay(conn, queue_name) == 2
    assert jobs.purge_dead_letters(conn, queue_name) == 0
    assert len(jobs.claim(conn, queue_name, 5)) == 2
