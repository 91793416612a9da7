"""Priorities: among ready jobs the highest priority is claimed first, within a priority the
oldest visible; groups and the concurrency cap keep their rules; claim stays a bounded index
walk whatever waits ahead at any priority; PGMQ's own functions keep working on the queue."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from test_index_walks import FEW, counting

import pgmq_jobs.client as jobs
from support import make_visible

Connection = psycopg.Connection[Any]

pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def claim_order(conn: Connection, queue: str, n: int) -> list[int]:
    """Job ids in the order one-at-a-time claims return them."""
    order = []
    for _ in range(n):
        [job] = jobs.claim(conn, queue)
        order.append(job.job_id)
    return order


def test_highest_priority_first_then_oldest_first(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    enqueued: list[tuple[int, int]] = []  # (priority, job id) in enqueue order
    for priority in (0, -1, 5, 0, 5, -1, 0, 5):
        enqueued.append((priority, jobs.enqueue(conn, queue_name, {}, priority=priority)))
    expected = [job_id for _, job_id in sorted(enqueued, key=lambda p: (-p[0], p[1]))]

    assert claim_order(conn, queue_name, len(enqueued)) == expected
    assert jobs.claim(conn, queue_name) == []


def test_a_claim_of_many_takes_the_highest_priorities(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    low = jobs.enqueue_batch(conn, queue_name, [{}] * 5, priorities=[-3] * 5)
    mid = jobs.enqueue_batch(conn, queue_name, [{}] * 5)
    high = jobs.enqueue_batch(conn, queue_name, [{}] * 3, priorities=[7, 2, 7])

    first = {j.job_id for j in jobs.claim(conn, queue_name, 6)}

    assert first == {*high, *mid[:3]}
    rest = {j.job_id for j in jobs.claim(conn, queue_name, 10)}
    assert rest == {*mid[3:], *low}


def test_visibility_time_orders_within_a_priority(conn: Connection, queue_name: str) -> None:
    """Oldest *visible* first: a retried job comes back behind jobs that were ready before it
    became visible again, at its own priority."""
    jobs.create_queue(conn, queue_name, retry_base=3600, retry_max=3600, jitter="none")
    retried = jobs.enqueue(conn, queue_name, {}, priority=1)
    [job] = jobs.claim(conn, queue_name)
    assert jobs.fail(conn, queue_name, job.job_id, job.attempt, "later").outcome == "retry"
    waiting = jobs.enqueue(conn, queue_name, {}, priority=1)
    plain = jobs.enqueue(conn, queue_name, {})
    make_visible(conn, queue_name, retried)

    assert claim_order(conn, queue_name, 3) == [waiting, retried, plain]


def test_groups_keep_their_order_whatever_the_priorities(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    head = jobs.enqueue(conn, queue_name, {}, group_key="g", priority=-5)
    follower = jobs.enqueue(conn, queue_name, {}, group_key="g", priority=9)
    other = jobs.enqueue(conn, queue_name, {}, priority=1)

    # The follower's priority does not let it pass its head; the head's own low priority
    # puts it after the other ready job.
    [first] = jobs.claim(conn, queue_name)
    [second] = jobs.claim(conn, queue_name)
    assert (first.job_id, second.job_id) == (other, head)
    assert jobs.claim(conn, queue_name) == []
    assert jobs.complete(conn, queue_name, [second]) == 1
    [third] = jobs.claim(conn, queue_name)
    assert third.job_id == follower


def test_the_concurrency_cap_keeps_its_limit_and_the_order(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, concurrency=2)
    low = jobs.enqueue_batch(conn, queue_name, [{}] * 3, priorities=[-1] * 3)
    high = jobs.enqueue_batch(conn, queue_name, [{}] * 3, priorities=[4] * 3)

    first = jobs.claim(conn, queue_name, 10)
    assert [j.job_id for j in sorted(first, key=lambda j: j.job_id)] == high[:2]
    assert jobs.claim(conn, queue_name, 10) == []
    jobs.complete(conn, queue_name, first)
    second = jobs.claim(conn, queue_name, 10)
    assert {j.job_id for j in second} == {high[2], low[0]}


def test_delayed_top_priority_jobs_ahead_are_never_read(conn: Connection, queue_name: str) -> None:
    """Claim reads a bounded number of rows with thousands of delayed and retry-scheduled jobs
    of the top priority in front of ready jobs of every priority."""
    jobs.create_queue(conn, queue_name)
    n = 3000
    jobs.enqueue_batch(conn, queue_name, [{}] * n, priorities=[100] * n, delay=3600)
    jobs.enqueue_batch(conn, queue_name, [{}] * n, priorities=[50] * n, delay=3600)
    ready = jobs.enqueue_batch(conn, queue_name, [{}] * 3, priorities=[-2, 0, 3])
    conn.execute(f"analyze pgmq.q_{queue_name}")
    table = f"q_{queue_name}"

    with counting(conn, table) as read:
        claimed = jobs.claim(conn, queue_name, 10)

    assert sorted(j.job_id for j in claimed) == sorted(ready)
    # Bounded by the priorities present (a probe each: 100, 50, 3, 0, -2), never by the
    # 6,000 jobs waiting at the top two.
    assert sum(read[table]) <= FEW + len(ready) + 5, read[table]


def test_priority_survives_retries_and_replay(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    urgent = jobs.enqueue(conn, queue_name, {"u": 1}, priority=3)
    [job] = jobs.claim(conn, queue_name)
    assert jobs.fail(conn, queue_name, job.job_id, job.attempt, "x").outcome == "dead"
    plain = jobs.enqueue(conn, queue_name, {})
    assert jobs.replay(conn, queue_name) == 1

    [first] = jobs.claim(conn, queue_name)

    assert first.payload == {"u": 1} and first.job_id not in (urgent, plain)
    info = jobs.job(conn, queue_name, first.job_id)
    assert info is not None and info.priority == 3


def test_bad_priorities_are_refused_and_nothing_is_enqueued(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="priority must be"):
        jobs.enqueue(conn, queue_name, {}, priority=40000)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"priorities\[2\]"):
        jobs.enqueue_batch(conn, queue_name, [{}, {}], priorities=[1, -40000])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one element per payload"):
        jobs.enqueue_batch(conn, queue_name, [{}, {}], priorities=[1])
    assert jobs.claim(conn, queue_name, 10) == []


def test_sql_callers_pass_plain_integer_literals(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    conn.execute("select pgmq_jobs.enqueue(%s, '{}', priority => 5)", (queue_name,))
    conn.execute(
        "select pgmq_jobs.enqueue_batch(%s, array['{}', '{}']::jsonb[], priorities => array[1, 2])",
        (queue_name,),
    )
    priorities = conn.execute(
        f"select (headers ->> 'priority')::int from pgmq.q_{queue_name} order by msg_id"
    ).fetchall()
    assert priorities == [(5,), (1,), (2,)]


def test_pgmq_own_functions_keep_working_on_the_queue(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue(conn, queue_name, {"p": 1}, priority=2)
    conn.execute("select pgmq.send(%s, '{\"raw\": true}')", (queue_name,))
    read = conn.execute(
        "select message from pgmq.read(%s, 30, 10) order by msg_id", (queue_name,)
    ).fetchall()
    assert [r[0] for r in read] == [{"p": 1}, {"raw": True}]


def test_until_its_priority_index_is_built_a_queue_is_claimed_by_visibility_time(
    conn: Connection, queue_name: str
) -> None:
    """An upgraded queue whose index pgmq-jobs install has not built yet (it builds it
    concurrently after the upgrade's transaction): claims go on, oldest visible first."""
    jobs.create_queue(conn, queue_name)
    first = jobs.enqueue(conn, queue_name, {}, priority=-1)
    second = jobs.enqueue(conn, queue_name, {}, priority=9)
    conn.execute(
        "update pgmq_jobs.queue_settings set priority_index = false where queue = %s",
        (queue_name,),
    )
    conn.execute(f'drop index pgmq."q_{queue_name}_priority_vt"')

    assert claim_order(conn, queue_name, 2) == [first, second]

    statement = conn.execute(
        "select pgmq_jobs._priority_index_sql(%s, false)", (queue_name,)
    ).fetchone()
    assert statement is not None
    conn.execute(statement[0])
    assert conn.execute(
        "select pgmq_jobs._finish_priority_index(%s)", (queue_name,)
    ).fetchone() == (True,)
    third = jobs.enqueue(conn, queue_name, {}, priority=-1)
    fourth = jobs.enqueue(conn, queue_name, {}, priority=9)
    assert claim_order(conn, queue_name, 2) == [fourth, third]


def test_the_first_job_of_another_priority_turns_the_priority_walk_on(
    conn: Connection, queue_name: str
) -> None:
    """Claim walks the priorities only in a queue that has had a job of another priority
    than 0 (the plain vt walk costs less); the first such job, enqueued singly, in a batch or
    replayed, turns it on for good, and is then claimed first."""

    def prioritized() -> bool:
        row = conn.execute(
            "select prioritized from pgmq_jobs.queue_settings where queue = %s", (queue_name,)
        ).fetchone()
        return bool(row and row[0])

    jobs.create_queue(conn, queue_name, max_attempts=1)
    plain = jobs.enqueue_batch(conn, queue_name, [{}] * 3, priorities=[0, 0, 0])
    assert not prioritized()
    with conn.transaction(force_rollback=True):
        jobs.enqueue(conn, queue_name, {}, priority=4)
        assert prioritized()
    assert not prioritized(), "a rolled-back enqueue leaves the flag as it was"
    urgent = jobs.enqueue_batch(conn, queue_name, [{}, {}], priorities=[0, 2])[1]
    assert prioritized()
    assert claim_order(conn, queue_name, 4) == [urgent, *plain]

    other = f"{queue_name}_r"
    jobs.create_queue(conn, other, max_attempts=1)
    conn.execute(
        "update pgmq_jobs.queue_settings set prioritized = false where queue = %s",
        (queue_name,),
    )
    dead = jobs.enqueue(conn, other, {"d": 1}, priority=5)
    [job] = jobs.claim(conn, other)
    assert job.job_id == dead
    assert jobs.fail(conn, other, job.job_id, job.attempt, "x").outcome == "dead"
    conn.execute(
        "update pgmq_jobs.queue_settings set prioritized = false where queue = %s", (other,)
    )
    assert jobs.replay(conn, other) == 1
    row = conn.execute(
        "select prioritized from pgmq_jobs.queue_settings where queue = %s", (other,)
    ).fetchone()
    assert row == (True,)
