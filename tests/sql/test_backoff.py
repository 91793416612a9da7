"""Retry scheduling: d = min(retry_max, retry_base * retry_factor^(n-1)) with jitter."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgmq_jobs.client as jobs
from support import db_now, make_visible

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")

BASE, FACTOR, MAX = 2.0, 3.0, 100.0
SAMPLES = 40


def expected_cap(attempt: int) -> float:
    return min(MAX, BASE * FACTOR ** (attempt - 1))


def bounds(jitter: str, d: float) -> tuple[float, float]:
    return {"none": (d, d), "full": (0.0, d), "equal": (d / 2, d)}[jitter]


@pytest.mark.parametrize("jitter", ["none", "full", "equal"])
def test_delay_within_formula_bounds_per_attempt(
    conn: Connection, queue_name: str, jitter: str
) -> None:
    jobs.create_queue(
        conn,
        queue_name,
        max_attempts=8,
        retry_base=BASE,
        retry_factor=FACTOR,
        retry_max=MAX,
        jitter=jitter,
    )
    ids = jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(SAMPLES)])
    for attempt in range(1, 8):  # attempts 5..7 are capped by retry_max
        for job_id in ids:
            make_visible(conn, queue_name, job_id)
        claimed = jobs.claim(conn, queue_name, SAMPLES)
        assert {j.attempt for j in claimed} == {attempt} and len(claimed) == SAMPLES
        d = expected_cap(attempt)
        lo, hi = bounds(jitter, d)
        delays = []
        for job in claimed:
            before = db_now(conn)
            result = jobs.fail(conn, queue_name, job.job_id, job.attempt, "e")
            after = db_now(conn)
            assert result.outcome == "retry" and result.next_attempt_at is not None
            assert before + timedelta(seconds=lo) <= result.next_attempt_at
            assert result.next_attempt_at <= after + timedelta(seconds=hi)
            delays.append((result.next_attempt_at - before).total_seconds())
        if jitter != "none":
            # Jitter really spreads the retries over its range.
            spread = max(delays) - min(delays)
            assert spread > (hi - lo) / 4, (attempt, delays)


def test_retry_after_overrides_backoff_and_jitter(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, retry_base=1, jitter="full")
    jobs.enqueue(conn, queue_name, {})
    [job] = jobs.claim(conn, queue_name)
    before = db_now(conn)
    result = jobs.fail(conn, queue_name, job.job_id, 1, "later", retry_after=timedelta(minutes=42))
    after = db_now(conn)
    assert result.outcome == "retry" and result.next_attempt_at is not None
    assert before + timedelta(minutes=42) <= result.next_attempt_at <= after + timedelta(minutes=42)


def test_retry_after_zero_retries_immediately(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, retry_base=600, retry_max=600)
    jobs.enqueue(conn, queue_name, {})
    [job] = jobs.claim(conn, queue_name)
    assert jobs.fail(conn, queue_name, job.job_id, 1, "now", retry_after=0).outcome == "retry"
    [again] = jobs.claim(conn, queue_name)
    assert (again.job_id, again.attempt) == (job.job_id, 2)


def test_retry_after_does_not_extend_past_max_attempts(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue(conn, queue_name, {})
    [job] = jobs.claim(conn, queue_name)
    result = jobs.fail(conn, queue_name, job.job_id, 1, "e", retry_after=5)
    assert result.outcome == "dead"


def test_permanent_dead_letters_on_first_attempt(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=10)
    job_id = jobs.enqueue(conn, queue_name, {"bad": "input"})
    assert [j.job_id for j in jobs.claim(conn, queue_name)] == [job_id]
    result = jobs.fail(conn, queue_name, job_id, 1, "ValueError: bad input", permanent=True)
    assert (result.outcome, result.attempt, result.next_attempt_at) == ("dead", 1, None)
    [letter] = jobs.dead_letters(conn, queue_name)
    assert (letter.reason, letter.attempts, letter.last_error) == (
        "permanent",
        1,
        "ValueError: bad input",
    )
    assert jobs.claim(conn, queue_name) == []


def test_huge_attempt_numbers_cap_at_retry_max(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(
        conn,
        queue_name,
        max_attempts=1000,
        retry_base=1,
        retry_factor=100,
        retry_max=30,
        jitter="none",
    )
    job_id = jobs.enqueue(conn, queue_name, {})
    conn.execute(
        sql.SQL("update pgmq.{} set read_ct = 900 where msg_id = %s").format(
            sql.Identifier(f"q_{queue_name}")
        ),
        (job_id,),
    )
    [job] = jobs.claim(conn, queue_name)
    assert job.attempt == 901
    before = db_now(conn)
    result = jobs.fail(conn, queue_name, job_id, 901, "e")
    assert result.next_attempt_at is not None
    assert abs((result.next_attempt_at - before).total_seconds() - 30) < 1
