"""Ordered groups: enqueue(..., group_key) delivers a group's jobs one at a time, in order."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import make_visible, queue_rows

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def claim_ids(conn: Connection, queue: str, qty: int = 100) -> list[int]:
    return sorted(j.job_id for j in jobs.claim(conn, queue, qty))


def test_group_delivers_one_at_a_time_in_order(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    a = [jobs.enqueue(conn, queue_name, {"g": "a", "n": i}, group_key="a") for i in range(3)]
    b = [jobs.enqueue(conn, queue_name, {"g": "b", "n": i}, group_key="b") for i in range(2)]
    free = jobs.enqueue(conn, queue_name, {"g": None})
    # Heads of both groups and the keyless job run in parallel; nothing else.
    first = jobs.claim(conn, queue_name, 100)
    assert sorted(j.job_id for j in first) == sorted([a[0], b[0], free])
    assert jobs.claim(conn, queue_name, 100) == []
    by_id = {j.job_id: j for j in first}
    jobs.complete(conn, queue_name, [by_id[a[0]]])
    assert claim_ids(conn, queue_name) == [a[1]]
    jobs.complete(conn, queue_name, [by_id[b[0]], by_id[free]])
    assert claim_ids(conn, queue_name) == [b[1]]


def test_one_completion_of_many_heads_releases_each_group_next(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    groups = {
        key: [jobs.enqueue(conn, queue_name, {"n": i}, group_key=key) for i in range(3)]
        for key in ("x", "y", "z", "w")
    }
    heads = jobs.claim(conn, queue_name, 100)
    assert sorted(j.job_id for j in heads) == sorted(ids[0] for ids in groups.values())
    # All heads in one complete (one set-based release): each group's second job, no more.
    assert jobs.complete(conn, queue_name, heads) == 4
    seconds = jobs.claim(conn, queue_name, 100)
    assert sorted(j.job_id for j in seconds) == sorted(ids[1] for ids in groups.values())
    # Two of them again; the other two groups stay blocked behind their heads.
    done = [j for j in seconds if j.job_id in (groups["x"][1], groups["w"][1])]
    assert jobs.complete(conn, queue_name, done) == 2
    assert claim_ids(conn, queue_name) == sorted([groups["x"][2], groups["w"][2]])


def test_group_order_holds_through_a_retry(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, retry_base=600, retry_max=600, max_attempts=3)
    first = jobs.enqueue(conn, queue_name, {"step": 1}, group_key="run-7")
    second = jobs.enqueue(conn, queue_name, {"step": 2}, group_key="run-7")
    [job] = jobs.claim(conn, queue_name, 10)
    assert job.job_id == first
    assert jobs.fail(conn, queue_name, first, 1, "flaky").outcome == "retry"
    # The earlier job waits to retry: the later one is not claimed meanwhile.
    assert jobs.claim(conn, queue_name, 10) == []
    make_visible(conn, queue_name, first)
    [again] = jobs.claim(conn, queue_name, 10)
    assert (again.job_id, again.attempt) == (first, 2)
    assert jobs.complete(conn, queue_name, [again]) == 1
    [nxt] = jobs.claim(conn, queue_name, 10)
    assert nxt.job_id == second


def test_a_dead_letter_releases_its_group(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    first = jobs.enqueue(conn, queue_name, {"step": 1}, group_key="g")
    second = jobs.enqueue(conn, queue_name, {"step": 2}, group_key="g")
    third = jobs.enqueue(conn, queue_name, {"step": 3}, group_key="g")
    [job] = jobs.claim(conn, queue_name, 10)
    assert jobs.fail(conn, queue_name, job.job_id, 1, "poison").outcome == "dead"
    [job] = jobs.claim(conn, queue_name, 10)
    assert job.job_id == second
    # Its worker dies: the claim that finds it exhausted routes it and releases the group.
    make_visible(conn, queue_name, second)
    assert claim_ids(conn, queue_name) == [third]
    reasons = {d.job_id: d.reason for d in jobs.dead_letters(conn, queue_name)}
    assert reasons == {first: "exhausted", second: "expired"}


def test_delay_of_a_parked_job_is_kept(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    first = jobs.enqueue(conn, queue_name, {}, group_key="g")
    later = jobs.enqueue(conn, queue_name, {}, group_key="g", delay=3600)
    [job] = jobs.claim(conn, queue_name)
    assert job.job_id == first
    jobs.complete(conn, queue_name, [job])
    assert jobs.claim(conn, queue_name) == []  # released, but not before its own time
    [row] = queue_rows(conn, queue_name)
    assert row["msg_id"] == later
    delay = conn.execute("select %s - clock_timestamp()", (row["vt"],)).fetchone()
    assert delay is not None and 3500 < delay[0].total_seconds() <= 3600


def test_replayed_dead_letter_queues_behind_its_group(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    first = jobs.enqueue(conn, queue_name, {"n": 1}, group_key="g")
    jobs.enqueue(conn, queue_name, {"n": 2}, group_key="g")
    [job] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, first, 1, "x")
    [job2] = jobs.claim(conn, queue_name)  # the group's second job is in flight now
    assert jobs.replay(conn, queue_name) == 1
    assert jobs.claim(conn, queue_name, 10) == []  # the replayed job waits its turn
    jobs.complete(conn, queue_name, [job2])
    [replayed] = jobs.claim(conn, queue_name, 10)
    assert replayed.payload == {"n": 1}
    assert job.job_id == first


def test_concurrent_producers_and_completions_never_strand_a_group(
    connect: Any, queue_name: str
) -> None:
    """Producers append to a group while its head completes: every job is delivered once,
    in order, and the group never stalls with only parked jobs."""
    admin: Connection = connect(autocommit=True)
    jobs.create_queue(admin, queue_name, visibility_timeout=600)
    total = 60
    done: list[int] = []

    def produce() -> None:
        with psycopg.connect(admin.info.dsn, autocommit=True) as c:
            for i in range(total):
                jobs.enqueue(c, queue_name, {"i": i}, group_key="hot")

    producer = threading.Thread(target=produce)
    producer.start()
    worker: Connection = connect(autocommit=True)
    idle = 0
    while len(done) < total and idle < 2000:
        batch = jobs.claim(worker, queue_name, 10)
        assert len(batch) <= 1, "a group delivers one job at a time"
        if not batch:
            idle += 1
            continue
        done.append(batch[0].payload["i"])
        assert jobs.complete(worker, queue_name, batch) == 1
    producer.join(timeout=30)
    assert done == list(range(total))
    assert queue_rows(admin, queue_name) == []
