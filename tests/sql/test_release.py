"""release: a claimed, unstarted delivery goes back to the queue without using an attempt."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import queue_rows

Connection = psycopg.Connection[Any]

pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def test_released_job_is_claimable_at_once_with_the_same_attempt(
    conn: Connection, queue_name: str
) -> None:
    # One attempt only: were the claim not undone, the next claim would dead-letter the job.
    jobs.create_queue(conn, queue_name, max_attempts=1, visibility_timeout=3600)
    first = jobs.enqueue(conn, queue_name, {"i": 1})
    second = jobs.enqueue(conn, queue_name, {"i": 2})
    claimed = jobs.claim(conn, queue_name, qty=2, worker="stopping")
    assert [j.job_id for j in claimed] == [first, second]
    assert jobs.release(conn, queue_name, [claimed[1]]) == 1
    [again] = jobs.claim(conn, queue_name, qty=2, worker="next")
    assert (again.job_id, again.attempt, again.payload) == (second, 1, {"i": 2})
    assert jobs.dead_letters(conn, queue_name) == []
    assert jobs.complete(conn, queue_name, [claimed[0], again]) == 2


def test_stale_or_finished_deliveries_are_not_released(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=5, visibility_timeout=3600, retry_base=60)
    done_id = jobs.enqueue(conn, queue_name, {"i": "done"})
    failed_id = jobs.enqueue(conn, queue_name, {"i": "failed"})
    [done, failed] = jobs.claim(conn, queue_name, qty=2)
    assert jobs.complete(conn, queue_name, [done]) == 1
    jobs.fail(conn, queue_name, failed.job_id, failed.attempt, "boom")
    before = queue_rows(conn, queue_name)
    # Completed, failed (waiting for its retry), a wrong attempt, a job never issued.
    stale = [(done_id, 1), (failed_id, 1), (failed_id, 2), (failed_id + 100, 1)]
    assert jobs.release(conn, queue_name, stale) == 0
    assert queue_rows(conn, queue_name) == before
    assert jobs.claim(conn, queue_name) == []  # the failed job still waits for its retry


def test_a_released_retry_keeps_its_history_and_attempt(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3, visibility_timeout=3600)
    job_id = jobs.enqueue(conn, queue_name, {"i": 1})
    [first] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job_id, first.attempt, "first failure", retry_after=0)
    [second] = jobs.claim(conn, queue_name, worker="stopping")
    assert second.attempt == 2
    assert jobs.release(conn, queue_name, [second]) == 1
    [again] = jobs.claim(conn, queue_name, worker="next")
    assert again.attempt == 2
    # No "visibility timeout expired" entry: the released delivery never ran.
    [row] = queue_rows(conn, queue_name)
    assert [e["attempt"] for e in row["headers"]["errors"]] == [1]
    assert row["headers"]["worker"] == "next"


def test_release_frees_a_concurrency_slot(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, concurrency=1, visibility_timeout=3600)
    jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}])
    [held] = jobs.claim(conn, queue_name, qty=2)
    assert jobs.claim(conn, queue_name) == []  # the limit: one in flight
    assert jobs.release(conn, queue_name, [held]) == 1
    [again] = jobs.claim(conn, queue_name)
    assert (again.job_id, again.attempt) == (held.job_id, 1)


def test_release_of_an_unknown_queue_is_an_error(conn: Connection) -> None:
    with pytest.raises(psycopg.errors.DatabaseError, match="no_such_queue"):
        jobs.release(conn, "no_such_queue", [(1, 1)])
