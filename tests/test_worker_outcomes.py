"""Handler outcomes through a real worker process: return, Retry(after), Permanent, any other
exception, a timeout, and lease extension for a job longer than its visibility timeout."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from apps.harness import archived_ids, create_ledger, ledger, running_worker, worker_env
from support import db_now, queue_rows, wait_for

Connection = psycopg.Connection[Any]


@pytest.fixture(scope="module", autouse=True)
def _ledger(db_dsn: str) -> None:
    create_ledger(db_dsn)


def ledger_times(conn: Connection, queue: str, job_id: int) -> list[Any]:
    rows = conn.execute(
        "select at from ledger where queue = %s and job_id = %s and event = 'start' order by at",
        (queue, job_id),
    ).fetchall()
    return [r[0] for r in rows]


def dead_letter_of(conn: Connection, queue: str) -> Callable[[], Any]:
    return lambda: next(iter(jobs.dead_letters(conn, queue)), None)


def test_retry_after_sets_the_next_attempt_time(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=2, retry_base=60)
    job_id = jobs.enqueue(conn, queue_name, {"action": "retry", "after": 1.5})
    with running_worker(db_dsn, [queue_name], "--poll-interval", "30"):
        dead = wait_for(dead_letter_of(conn, queue_name), timeout=15, what="both attempts")
    # The retry came after Retry(after=1.5), not the queue's 60 s backoff; the worker woke
    # for it on its own (the poll interval is 30 s).
    first, second = ledger_times(conn, queue_name, job_id)
    assert timedelta(seconds=1.4) <= second - first < timedelta(seconds=5)
    assert (dead.job_id, dead.reason, dead.attempts) == (job_id, "exhausted", 2)
    assert all("Retry: come back later" in e["error"] for e in dead.errors)
    assert all("Traceback" in e["error"] for e in dead.errors)


def test_permanent_goes_to_the_dlq_at_once(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=5)
    job_id = jobs.enqueue(conn, queue_name, {"action": "permanent"})
    with running_worker(db_dsn, [queue_name]):
        dead = wait_for(dead_letter_of(conn, queue_name), timeout=15, what="the dead letter")
    assert (dead.job_id, dead.reason, dead.attempts) == (job_id, "permanent", 1)
    assert "Permanent: this payload can never work" in (dead.last_error or "")
    assert len(ledger(conn, queue_name, "start")) == 1


def test_an_exception_is_reported_with_type_message_and_traceback_then_backed_off(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=5, retry_base=30, jitter="none")
    job_id = jobs.enqueue(conn, queue_name, {"action": "fail"})
    with running_worker(db_dsn, [queue_name]):
        [row] = wait_for(
            lambda: [r for r in queue_rows(conn, queue_name) if (r["headers"] or {}).get("errors")],
            timeout=15,
            what="the failure report",
        )
    [error] = row["headers"]["errors"]
    assert error["attempt"] == 1
    text = error["error"]
    assert text.startswith("Traceback (most recent call last):")
    assert "ledger_app.py" in text and f"ValueError: job {job_id} failed on purpose" in text
    # The queue's backoff (30 s, no jitter) decided the next attempt, not the worker.
    assert timedelta(seconds=25) < row["vt"] - db_now(conn) <= timedelta(seconds=30)


def test_a_timeout_fails_the_job_frees_the_slot_and_ignores_the_late_result(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    slow = jobs.enqueue(conn, queue_name, {"sleep": 3})
    quick = jobs.enqueue(conn, queue_name, {"i": "quick"})
    env = worker_env(db_dsn, [queue_name], LEDGER_TIMEOUT="0.5")
    args = ("--concurrency", "1", "--poll-interval", "0.2")
    with running_worker(db_dsn, [queue_name], *args, env=env):
        dead = wait_for(dead_letter_of(conn, queue_name), timeout=15, what="the timeout")
        # One handler thread: the quick job ran while the timed-out one still slept.
        wait_for(lambda: quick in archived_ids(conn, queue_name), timeout=10, what="quick job")
        assert [r[0] for r in ledger(conn, queue_name, "done")] == [quick]
        # The slow handler finishes later; its result is ignored (still dead, not completed).
        wait_for(lambda: len(ledger(conn, queue_name, "done")) == 2, timeout=10, what="late end")
    assert (dead.job_id, dead.reason) == (slow, "exhausted")
    assert "TimeoutError: handler exceeded its 0.5 s timeout" in (dead.last_error or "")
    assert archived_ids(conn, queue_name) == {quick}


def test_a_job_longer_than_its_visibility_timeout_is_extended_not_redelivered(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, visibility_timeout=1)
    job_id = jobs.enqueue(conn, queue_name, {"sleep": 3.5})
    args = ("--poll-interval", "0.1")
    with running_worker(db_dsn, [queue_name], *args), running_worker(db_dsn, [queue_name], *args):
        wait_for(lambda: job_id in archived_ids(conn, queue_name), timeout=20, what="the job")
    # Two eager workers, a 1 s lease and a 3.5 s job: one delivery, extended, never stolen.
    assert len(ledger(conn, queue_name, "start")) == 1
    [row] = queue_rows(conn, queue_name, "a")
    assert row["read_ct"] == 1
