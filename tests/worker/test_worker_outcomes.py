"""Handler outcomes through a real worker process: return, Retry(after), Permanent, Snooze, any
other exception, a timeout, lease extension for a job longer than its visibility timeout, and
a job cancelled while it runs."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest

import pgmq_jobs
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


def test_snooze_brings_the_job_back_without_using_an_attempt(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    job_id = jobs.enqueue(conn, queue_name, {"action": "snooze", "snoozes": 2, "after": 0.3})
    with running_worker(db_dsn, [queue_name], "--poll-interval", "30") as proc:
        wait_for(lambda: job_id in archived_ids(conn, queue_name), timeout=20, what="the job")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    # Three runs, every one attempt 1 (max_attempts 1: a counted snooze would have
    # dead-lettered it), each after the snooze's delay; the worker woke for them on its own.
    starts = ledger(conn, queue_name, "start")
    assert [row[1] for row in starts] == [1, 1, 1]
    times = ledger_times(conn, queue_name, job_id)
    assert all(later - earlier >= timedelta(seconds=0.25) for earlier, later in pairwise(times))
    [row] = queue_rows(conn, queue_name, "a")
    assert row["read_ct"] == 1 and not row["headers"].get("errors")
    assert jobs.dead_letters(conn, queue_name) == []
    assert "snoozed" in err


def test_a_job_cancelled_while_it_runs_sees_ctx_cancelled(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {"action": "await_cancel", "wait": 30})
    # A 1 s lease: the worker extends it every half second, and the first extend after the
    # cancel comes back null.
    env = worker_env(db_dsn, [queue_name], LEDGER_VT="1")
    with running_worker(db_dsn, [queue_name], env=env):
        wait_for(lambda: ledger(conn, queue_name, "start"), timeout=15, what="the start")
        assert jobs.cancel(conn, queue_name, [job_id]) == 1
        wait_for(lambda: ledger(conn, queue_name, "cancelled"), timeout=15, what="ctx.cancelled")
    assert jobs.job(conn, queue_name, job_id).state == "cancelled"
    assert ledger(conn, queue_name, "done") == []


def test_failures_log_where_people_look(
    db_dsn: str, conn: Connection, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """In process, against the database: a failed attempt is a WARNING and a dead letter an
    ERROR, with the exception and structured fields; the traceback comes at DEBUG."""
    jobs.create_queue(conn, queue_name, max_attempts=2, retry_base=0.001, jitter="none")
    job_id = jobs.enqueue(conn, queue_name, {})

    def broken(payload: dict[str, Any], ctx: Any) -> None:
        raise ConnectionRefusedError("payment gateway down")

    app = pgmq_jobs.Registry()
    app.add(queue_name, broken)
    options = pgmq_jobs.WorkerOptions(
        [queue_name], drain=True, max_seconds=20, listen=False, worker_id="w-caplog"
    )
    caplog.set_level(logging.DEBUG, logger="pgmq_jobs.worker")
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert (summary.failed, summary.dead) == (2, 1)
    mine = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    [warning] = [r for r in mine if r.levelno == logging.WARNING]
    [error] = [r for r in mine if r.levelno == logging.ERROR]
    for record, attempt in ((warning, 1), (error, 2)):
        assert "ConnectionRefusedError: payment gateway down" in record.getMessage()
        assert (record.queue, record.attempt, record.worker) == (queue_name, attempt, "w-caplog")
        assert (record.error_type, record.error_message) == (
            "ConnectionRefusedError",
            "payment gateway down",
        )
    debug = [r for r in mine if r.levelno == logging.DEBUG]
    assert len(debug) == 2 and all("Traceback" in r.getMessage() for r in debug)


def test_the_worker_logs_json_lines(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    job_id = jobs.enqueue(conn, queue_name, {"action": "fail"})
    with running_worker(db_dsn, [queue_name], "--log-format", "json", "--drain") as proc:
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    [dead] = [line for line in lines if line.get("outcome") == "dead"]
    assert dead["level"] == "ERROR" and dead["logger"] == "pgmq_jobs.worker"
    assert (dead["queue"], dead["job_id"], dead["attempt"]) == (queue_name, job_id, 1)
    assert dead["error_type"] == "ValueError"
    assert dead["error_message"] == f"job {job_id} failed on purpose"
    assert "dead-letter" in dead["message"] and dead["time"]
