"""Fencing: an outcome for a superseded delivery is `stale` and changes nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import queue_rows, wait_for

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def _redelivered(conn: Connection, queue: str) -> tuple[jobs.Job, jobs.Job]:
    """A job claimed by a worker that stalls past its timeout, then claimed again."""
    jobs.create_queue(conn, queue, visibility_timeout=0.2, max_attempts=5, retry_base=60)
    jobs.enqueue(conn, queue, {"work": 1})
    [stalled] = jobs.claim(conn, queue, worker="stalled")
    [current] = wait_for(lambda: jobs.claim(conn, queue, worker="current"), what="redelivery")
    assert current.job_id == stalled.job_id and current.attempt == stalled.attempt + 1
    return stalled, current


def test_stale_complete_changes_nothing_and_holder_completes(
    conn: Connection, queue_name: str
) -> None:
    stalled, current = _redelivered(conn, queue_name)
    before = queue_rows(conn, queue_name)
    assert jobs.complete(conn, queue_name, [stalled]) == 0
    assert queue_rows(conn, queue_name) == before
    assert jobs.complete(conn, queue_name, [current]) == 1
    assert [r["msg_id"] for r in queue_rows(conn, queue_name, "a")] == [current.job_id]


def test_stale_fail_changes_nothing_and_holder_outcome_wins(
    conn: Connection, queue_name: str
) -> None:
    stalled, current = _redelivered(conn, queue_name)
    before = queue_rows(conn, queue_name)
    result = jobs.fail(conn, queue_name, stalled.job_id, stalled.attempt, "late", permanent=True)
    assert (result.outcome, result.attempt, result.next_attempt_at) == (
        "stale",
        stalled.attempt,
        None,
    )
    assert queue_rows(conn, queue_name) == before
    assert jobs.dead_letters(conn, queue_name) == []
    assert jobs.complete(conn, queue_name, [current]) == 1


def test_stale_extend_returns_null_and_holder_can_extend(conn: Connection, queue_name: str) -> None:
    stalled, current = _redelivered(conn, queue_name)
    before = queue_rows(conn, queue_name)
    assert jobs.extend(conn, queue_name, stalled.job_id, stalled.attempt, 3600) is None
    assert queue_rows(conn, queue_name) == before
    until = jobs.extend(conn, queue_name, current.job_id, current.attempt, 3600)
    assert until is not None and until > current.visible_until
    [row] = queue_rows(conn, queue_name)
    assert row["vt"] == until


def test_holder_fail_then_late_outcomes_are_stale(conn: Connection, queue_name: str) -> None:
    stalled, current = _redelivered(conn, queue_name)
    assert jobs.fail(conn, queue_name, current.job_id, current.attempt, "x").outcome == "retry"
    before = queue_rows(conn, queue_name)
    # The same delivery cannot be failed twice, completed or extended after failing.
    assert jobs.fail(conn, queue_name, current.job_id, current.attempt, "again").outcome == "stale"
    assert jobs.complete(conn, queue_name, [current]) == 0
    assert jobs.extend(conn, queue_name, current.job_id, current.attempt, 60) is None
    assert jobs.complete(conn, queue_name, [stalled]) == 0
    assert queue_rows(conn, queue_name) == before


def test_outcomes_after_completion_are_stale(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue(conn, queue_name, {})
    [job] = jobs.claim(conn, queue_name)
    assert jobs.complete(conn, queue_name, [job, job]) == 1  # a duplicate pair counts once
    assert jobs.complete(conn, queue_name, [job]) == 0
    assert jobs.fail(conn, queue_name, job.job_id, job.attempt, "late").outcome == "stale"
    assert jobs.extend(conn, queue_name, job.job_id, job.attempt, 10) is None
    assert jobs.dead_letters(conn, queue_name) == []


def test_complete_counts_only_current_pairs_in_a_mixed_batch(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(3)])
    claimed = jobs.claim(conn, queue_name, 3)
    pairs = [(j.job_id, j.attempt) for j in claimed]
    pairs[1] = (pairs[1][0], pairs[1][1] + 1)  # a wrong attempt for the second job
    assert jobs.complete(conn, queue_name, pairs) == 2
    assert [r["msg_id"] for r in queue_rows(conn, queue_name)] == [claimed[1].job_id]
