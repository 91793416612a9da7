"""sweep(): expired deliveries to the DLQ, retention, history, bounds, concurrency.

These run in a fresh database cloned from the template, which has no pg_cron (pg_cron lives
in the shared test database only), so no scheduled sweep races the test's own calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgmq_jobs.client as jobs
from support import make_visible, queue_rows

Connection = psycopg.Connection[Any]


@pytest.fixture
def db(fresh_db: Callable[[], str]) -> str:
    return fresh_db()


@pytest.fixture
def conn(db: str) -> Iterator[Connection]:
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


def age(conn: Connection, table: str, column: str, by: str) -> None:
    """Test-only time travel: make every row of a table look older."""
    conn.execute(
        sql.SQL("update {} set {} = {} - %s::interval").format(
            sql.Identifier(*table.split(".")), sql.Identifier(column), sql.Identifier(column)
        ),
        (by,),
    )


def stalled(conn: Connection, queue: str, n: int, attempts: int, expire: bool = True) -> list[int]:
    """n jobs whose worker died on their last allowed delivery (vt passed when expire)."""
    ids = jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(n)])
    for attempt in range(attempts):
        if attempt:
            for job_id in ids:
                make_visible(conn, queue, job_id)
        assert len(jobs.claim(conn, queue, n, worker="doomed")) == n
    if expire:
        for job_id in ids:
            make_visible(conn, queue, job_id)
    return ids


def test_sweep_routes_only_exhausted_expired_deliveries(conn: Connection) -> None:
    jobs.create_queue(conn, "sweepq", max_attempts=2)
    dead_ids = stalled(conn, "sweepq", 3, attempts=2, expire=False)
    retry_id = jobs.enqueue(conn, "sweepq", {"retry": True})
    [job] = jobs.claim(conn, "sweepq")
    inflight_id = jobs.enqueue(conn, "sweepq", {"inflight": True}, max_attempts=1)
    [inflight] = jobs.claim(conn, "sweepq", visibility_timeout=600)  # exhausted, in flight
    make_visible(conn, "sweepq", retry_id)  # timed out once: still has an attempt left
    waiting_id = jobs.enqueue(conn, "sweepq", {"waiting": True})
    for job_id in dead_ids:
        make_visible(conn, "sweepq", job_id)  # their last delivery timed out

    summary = jobs.sweep(conn)
    assert summary["skipped"] is False and summary["expired_to_dlq"] == 3
    letters = jobs.dead_letters(conn, "sweepq")
    assert sorted(d.job_id for d in letters) == dead_ids
    assert {d.reason for d in letters} == {"expired"}
    assert all([e["attempt"] for e in d.errors] == [1, 2] for d in letters)
    left = {r["msg_id"] for r in queue_rows(conn, "sweepq")}
    assert left == {retry_id, inflight_id, waiting_id}
    assert (job.job_id, inflight.job_id) == (retry_id, inflight_id)
    assert jobs.sweep(conn)["expired_to_dlq"] == 0


def test_sweep_is_bounded_per_run(conn: Connection) -> None:
    jobs.create_queue(conn, "boundq", max_attempts=1)
    stalled(conn, "boundq", 5, attempts=1)
    assert [jobs.sweep(conn, max_rows=2)["expired_to_dlq"] for _ in range(4)] == [2, 2, 1, 0]
    assert len(jobs.dead_letters(conn, "boundq")) == 5


def test_retention_removes_only_what_is_old_enough(conn: Connection) -> None:
    jobs.create_queue(conn, "retq", max_attempts=1, keep_completed=3600, dead_letter_retention=7200)
    jobs.enqueue_batch(conn, "retq", [{"i": i} for i in range(4)])
    done = jobs.claim(conn, "retq", 2)
    jobs.complete(conn, "retq", done)
    age(conn, "pgmq.a_retq", "archived_at", "2 hours")  # the first two: older than 1 h
    rest = jobs.claim(conn, "retq", 2)
    jobs.complete(conn, "retq", rest[:1])  # fresh completion: kept
    jobs.fail(conn, "retq", rest[1].job_id, rest[1].attempt, "x")  # a fresh dead letter
    jobs.enqueue(conn, "retq", {"old": "dead"})
    [old] = jobs.claim(conn, "retq")
    jobs.fail(conn, "retq", old.job_id, old.attempt, "old")
    conn.execute(
        "update pgmq.q_retq_dlq set vt = vt - interval '3 hours' where message->>'job_id' = %s",
        (str(old.job_id),),
    )

    summary = jobs.sweep(conn)
    assert summary["completed_deleted"] == 2 and summary["dead_letters_deleted"] == 1
    assert [r["msg_id"] for r in queue_rows(conn, "retq", "a")] == [rest[0].job_id]
    assert [d.job_id for d in jobs.dead_letters(conn, "retq")] == [rest[1].job_id]


def test_keep_dead_letters_forever_by_default(conn: Connection) -> None:
    jobs.create_queue(conn, "keepq", max_attempts=1)
    jobs.enqueue(conn, "keepq", {})
    [job] = jobs.claim(conn, "keepq")
    jobs.fail(conn, "keepq", job.job_id, 1, "x")
    conn.execute("update pgmq.q_keepq_dlq set vt = vt - interval '3000 days'")
    assert jobs.sweep(conn)["dead_letters_deleted"] == 0
    assert len(jobs.dead_letters(conn, "keepq")) == 1


def test_sweep_records_history_of_outcomes_and_gauges(conn: Connection) -> None:
    jobs.create_queue(conn, "histq", max_attempts=2, retry_base=600, retry_max=600)
    jobs.enqueue_batch(conn, "histq", [{"i": i} for i in range(6)])
    jobs.enqueue(conn, "histq", {"later": 1}, delay=3600)
    claimed = jobs.claim(conn, "histq", 6)
    assert jobs.complete(conn, "histq", claimed[:3]) == 3
    for job in claimed[3:5]:
        assert jobs.fail(conn, "histq", job.job_id, job.attempt, "e").outcome == "retry"
    assert jobs.fail(conn, "histq", claimed[5].job_id, 1, "p", permanent=True).outcome == "dead"
    age(conn, "pgmq_jobs.outcome_log", "at", "1 minute")  # a finished minute

    jobs.sweep(conn)
    rows = conn.execute(
        "select sum(completed), sum(retried), sum(dead), sum(expired) from pgmq_jobs.queue_history"
        " where queue = 'histq'"
    ).fetchone()
    assert rows == (3, 2, 1, 0)
    gauges = conn.execute(
        "select ready, in_flight, delayed, dead_letters, enqueued_total"
        " from pgmq_jobs.queue_history where queue = 'histq' order by minute desc limit 1"
    ).fetchone()
    # 2 retry-waiting + 1 delayed are "delayed"; nothing is ready or in flight.
    assert gauges == (0, 0, 3, 1, 7)
    assert conn.execute("select count(*) from pgmq_jobs.outcome_log").fetchone() == (0,)
    jobs.sweep(conn)  # folding again adds nothing
    again = conn.execute(
        "select sum(completed) from pgmq_jobs.queue_history where queue = 'histq'"
    ).fetchone()
    assert again == (3,)


def test_two_concurrent_sweeps_neither_double_route_nor_deadlock(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as setup:
        jobs.create_queue(setup, "twoq", max_attempts=1)
        stalled(setup, "twoq", 50, attempts=1)
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def run() -> None:
        with psycopg.connect(db, autocommit=True) as c:
            barrier.wait()
            results.append(jobs.sweep(c))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2
    assert sum(r.get("expired_to_dlq", 0) for r in results) == 50
    with psycopg.connect(db, autocommit=True) as check:
        letters = jobs.dead_letters(check, "twoq", 1000)
        assert len(letters) == len({d.job_id for d in letters}) == 50


def test_sweep_racing_a_completion_gives_exactly_one_outcome(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as setup:
        jobs.create_queue(setup, "raceq", max_attempts=1, visibility_timeout=600)
        jobs.enqueue_batch(setup, "raceq", [{"i": 1}, {"i": 2}])
        a, b = jobs.claim(setup, "raceq", 2)
        for job in (a, b):
            make_visible(setup, "raceq", job.job_id)  # both timed out on their last attempt
    with psycopg.connect(db) as worker, psycopg.connect(db, autocommit=True) as sweeper:
        # Job a: the worker's completion is in progress (row locked) when the sweep runs.
        assert jobs.complete(worker, "raceq", [a]) == 1
        summary = jobs.sweep(sweeper)
        assert summary["expired_to_dlq"] == 1  # only b: a was locked, so skipped
        worker.commit()
        # Job b: the sweep won; the late completion is stale.
        assert jobs.complete(worker, "raceq", [b]) == 0
        worker.commit()
        assert [r["msg_id"] for r in queue_rows(sweeper, "raceq", "a")] == [a.job_id]
        assert [d.job_id for d in jobs.dead_letters(sweeper, "raceq")] == [b.job_id]
        assert queue_rows(sweeper, "raceq") == []


def test_processing_times_are_folded_into_history(conn: Connection) -> None:
    jobs.create_queue(conn, "timeq")
    jobs.enqueue_batch(conn, "timeq", [{"i": i} for i in range(4)])
    claimed = jobs.claim(conn, "timeq", 4)
    assert jobs.complete(conn, "timeq", claimed[:2], durations_ms=[0.5, 3.0]) == 2
    assert jobs.complete(conn, "timeq", claimed[2:], durations_ms=[1500.0, 3.5]) == 2
    age(conn, "pgmq_jobs.outcome_log", "at", "1 minute")
    jobs.sweep(conn)
    row = conn.execute(
        "select duration_count, duration_ms_sum, duration_buckets from pgmq_jobs.queue_history"
        " where queue = 'timeq' and completed > 0"
    ).fetchone()
    assert row is not None
    count, total, buckets = row
    assert (count, total) == (4, 1507.0)
    # <1 ms: 1; [2,4) ms: 2; [1024,2048) ms: 1
    assert buckets[0] == 1 and buckets[2] == 2 and buckets[11] == 1 and sum(buckets) == 4
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one element per job"):
        jobs.complete(conn, "timeq", claimed[:1], durations_ms=[1.0, 2.0])
