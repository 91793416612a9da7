"""pgmq_jobs.list_jobs (issue 21, for the dashboard's queue page and ``jobs list``): a page of
one state's jobs with job()'s columns, found by a bounded index walk, on plain and partitioned
queues."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql
from test_index_walks import counting

import pgmq_jobs.client as jobs

Connection = psycopg.Connection[Any]

pytestmark = pytest.mark.usefixtures("both_queue_kinds")

STATES = ("waiting", "delayed", "in_flight", "retrying", "parked")
DEEP = 2000  # jobs of other states a walk must not read
FEW = 20


def every_state(conn: Connection, queue: str) -> dict[str, int]:
    """One job in each of the eight states."""
    ids = {
        "retrying": jobs.enqueue(conn, queue, {"s": "retrying"}),
        "in_flight": jobs.enqueue(conn, queue, {"s": "in_flight"}),
        "head": jobs.enqueue(conn, queue, {"s": "head"}, group_key="g"),
        "parked": jobs.enqueue(conn, queue, {"s": "parked"}, group_key="g"),
        "completed": jobs.enqueue(conn, queue, {"s": "completed"}),
        "dead": jobs.enqueue(conn, queue, {"s": "dead"}),
    }
    claimed = {j.job_id: j for j in jobs.claim(conn, queue, 10)}
    assert jobs.fail(conn, queue, ids["retrying"], 1, "boom", retry_after=3600).outcome == "retry"
    assert jobs.complete(conn, queue, [claimed[ids["completed"]]]) == 1
    assert jobs.fail(conn, queue, ids["dead"], 1, "fatal", permanent=True).outcome == "dead"
    ids["waiting"] = jobs.enqueue(conn, queue, {"s": "waiting"})
    ids["delayed"] = jobs.enqueue(conn, queue, {"s": "delayed"}, delay=3600)
    ids["cancelled"] = jobs.enqueue(conn, queue, {"s": "cancelled"}, delay=60)
    assert jobs.cancel(conn, queue, [ids["cancelled"]]) == 1
    return ids


def test_each_state_lists_its_jobs_with_the_columns_of_job(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, keep_completed="1 day")
    ids = every_state(conn, queue_name)
    for state in (*STATES, "completed", "dead", "cancelled"):
        # The head of group g is in flight too.
        expected = sorted([ids[state], ids["head"]] if state == "in_flight" else [ids[state]])
        listed = jobs.list_jobs(conn, queue_name, state)
        assert sorted(j.job_id for j in listed) == expected, state
        # The same rows job() gives, wherever the job is.
        assert sorted(listed, key=lambda j: j.job_id) == [
            jobs.job(conn, queue_name, i) for i in expected
        ], state
        assert {j.state for j in listed} == {state}
        assert {"s": state} in [j.payload for j in listed]
    # No state: every job still in the queue, by id.
    everything = jobs.list_jobs(conn, queue_name)
    in_queue = sorted(ids[s] for s in (*STATES, "head"))
    assert [j.job_id for j in everything] == in_queue
    assert [e["error"] for e in jobs.list_jobs(conn, queue_name, "retrying")[0].errors] == ["boom"]


def test_pages_are_ordered_and_limited(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    later = jobs.enqueue(conn, queue_name, {"n": 1}, delay=7200)
    sooner = jobs.enqueue(conn, queue_name, {"n": 2}, delay=3600)
    waiting = jobs.enqueue_batch(conn, queue_name, [{"n": i} for i in range(5)])
    assert [j.job_id for j in jobs.list_jobs(conn, queue_name, "delayed")] == [sooner, later]
    assert [j.job_id for j in jobs.list_jobs(conn, queue_name, "waiting", 3)] == waiting[:3]
    assert len(jobs.list_jobs(conn, queue_name, None, 4)) == 4


def test_windowed_dedupe_key_is_listed(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    keyed = jobs.enqueue(conn, queue_name, {}, dedupe_key="k1", dedupe_window=600)
    plain = jobs.enqueue(conn, queue_name, {}, dedupe_key="k2")
    keys = {j.job_id: j.dedupe_key for j in jobs.list_jobs(conn, queue_name, "waiting")}
    assert keys == {keyed: "k1", plain: "k2"}


@pytest.mark.parametrize("state", ["waiting", "delayed", "in_flight", "retrying"])
def test_a_state_is_a_bounded_walk_whatever_else_the_queue_holds(
    conn: Connection, queue_name: str, state: str
) -> None:
    """Deep piles of the states a walk does not share its index stretch with are not read:
    DEEP delayed jobs behind the waiting walk's cut-off, DEEP waiting ones before the delayed
    walk, and DEEP of both beside the walks of delivered jobs."""
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"w": i} for i in range(DEEP)])
    jobs.enqueue_batch(conn, queue_name, [{"d": i} for i in range(DEEP)], delay=3600)
    # Two running deliveries and two retries, then the piles above stay untouched.
    mine = jobs.enqueue_batch(conn, queue_name, [{"m": i} for i in range(4)], priorities=[5] * 4)
    held = jobs.claim(conn, queue_name, 4)
    assert sorted(j.job_id for j in held) == mine
    for j in held[2:]:
        jobs.fail(conn, queue_name, j.job_id, j.attempt, "x", retry_after=600)
    conn.execute(sql.SQL("analyze pgmq.{}").format(sql.Identifier(f"q_{queue_name}")))
    tables = (
        [f"q_{queue_name}"]
        if conn.execute(
            "select relkind from pg_class where oid = %s::regclass", (f"pgmq.q_{queue_name}",)
        ).fetchone()
        == ("r",)
        else [
            r[0]
            for r in conn.execute(
                "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
                " where i.inhparent = %s::regclass",
                (f"pgmq.q_{queue_name}",),
            ).fetchall()
        ]
    )
    with counting(conn, *tables) as read:
        listed = jobs.list_jobs(conn, queue_name, state, 2)
    assert len(listed) == 2 and {j.state for j in listed} == {state}
    total = sum(sum(v) for v in read.values())
    assert total <= FEW, (state, read)


def test_bad_calls_are_refused(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="state must be"):
        jobs.list_jobs(conn, queue_name, "running")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="lim must be between"):
        jobs.list_jobs(conn, queue_name, "waiting", 0)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="lim must be between"):
        jobs.list_jobs(conn, queue_name, "waiting", 1001)
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="lim must not be null"):
        conn.execute("select * from pgmq_jobs.list_jobs(%s, null, null)", (queue_name,))
    with pytest.raises(psycopg.Error, match="unknown queue"):
        jobs.list_jobs(conn, f"{queue_name}_nope")


def test_only_the_admin_lists_jobs(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    for role in ("pgmq_jobs_worker", "pgmq_jobs_producer"):
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                jobs.list_jobs(conn, queue_name)
        finally:
            conn.execute("reset role")
    conn.execute("set role pgmq_jobs_admin")
    try:
        assert [j.job_id for j in jobs.list_jobs(conn, queue_name)] == [job_id]
    finally:
        conn.execute("reset role")
