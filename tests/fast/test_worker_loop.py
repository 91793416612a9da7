"""The worker's loop against a fake api (tests/fast/fake_api.py): no database, milliseconds
each. What is checked here is the loop's logic (how much it claims, what it gives back at a
stop, how it survives a lost connection, how it batches); tests/test_worker*.py check the
same worker against PostgreSQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fake_api import FakeApi

import pgmq_jobs
from pgmq_jobs.registry import JobContext
from pgmq_jobs.worker import Worker, WorkerOptions
from pgmq_jobs.worker import options as tuning
from pgmq_jobs.worker.claimer import Claimer
from pgmq_jobs.worker.state import Report, State

Q = "q"
Handler = Callable[[dict[str, Any], JobContext], Any]


def make_worker(api: FakeApi, handler: Handler, **options: Any) -> Worker:
    app = pgmq_jobs.Registry()
    app.add(Q, handler, timeout=options.pop("handler_timeout", None))
    settings: dict[str, Any] = {
        "drain": True,
        "listen": False,
        "max_seconds": 20,
        "poll_interval": 0.05,
        "reconnect_cap": 0.02,
        **options,
    }
    return Worker("fake://", app, WorkerOptions([Q], **settings), api=api)


def in_thread(worker: Worker) -> tuple[threading.Thread, list[pgmq_jobs.Summary]]:
    done: list[pgmq_jobs.Summary] = []
    thread = threading.Thread(target=lambda: done.append(worker.run()), daemon=True)
    thread.start()
    return thread, done


def noop(payload: dict[str, Any], ctx: JobContext) -> None:
    return None


# ---------------------------------------------------------------- prefetch sizing


def test_the_prefetch_starts_at_the_concurrency_and_grows_for_fast_handlers() -> None:
    options = WorkerOptions([Q], concurrency=4)
    claimer = Claimer(State([Q]), options, {}, FakeApi(), "w", lambda d: None)
    assert claimer.prefetch() == 4  # no pace measured yet
    assert claimer.free() == 8  # the slots and as many again
    fast = [Report(None, duration_ms=0.01) for _ in range(10)]  # type: ignore[arg-type]
    claimer.measure_pace(fast)
    assert claimer.prefetch() == tuning.AUTO_PREFETCH_MAX  # capped
    slow = [Report(None, duration_ms=1000.0) for _ in range(10)]  # type: ignore[arg-type]
    for _ in range(50):
        claimer.measure_pace(slow)
    assert claimer.prefetch() == 4  # a slow queue is not hoarded


def test_large_payloads_bound_the_prefetch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "AUTO_PREFETCH_BYTES", 100_000)
    claimer = Claimer(State([Q]), WorkerOptions([Q], concurrency=2), {}, FakeApi(), "w", print)
    claimer.measure_pace([Report(None, duration_ms=0.01)])  # type: ignore[arg-type]
    claimer.payload_bytes = 10_000.0
    assert claimer.prefetch() == 10


def test_an_explicit_prefetch_and_max_jobs_bound_each_claim(api: FakeApi) -> None:
    api.add_jobs(Q, [{"i": i} for i in range(10)])
    summary = make_worker(api, noop, concurrency=2, prefetch=1, max_jobs=7).run()
    assert summary.completed == 7
    asked = [qty for _, qty in api.called("claim")]
    assert max(asked) <= 3 and sum(asked) >= 7
    assert api.states(Q) == {"completed": 7, "waiting": 3}


def test_fast_handlers_are_claimed_in_growing_batches(api: FakeApi) -> None:
    api.add_jobs(Q, [{"i": i} for i in range(600)])
    summary = make_worker(api, noop, concurrency=2).run()
    assert (summary.claimed, summary.completed, summary.stale) == (600, 600, 0)
    asked = [qty for _, qty in api.called("claim")]
    assert asked[0] == 4, asked  # the first claim knows no pace: slots plus as many again
    assert max(asked) > 50, asked  # no-op handlers, once measured, get larger claims


# ---------------------------------------------------------------- shutdown


def test_a_stop_gives_back_unstarted_jobs_and_finishes_the_running_one(api: FakeApi) -> None:
    api.add_jobs(Q, [{"i": i} for i in range(6)])
    started, proceed = threading.Event(), threading.Event()

    def blocking(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        assert proceed.wait(10)

    worker = make_worker(api, blocking, concurrency=1, prefetch=5, drain=False)
    thread, done = in_thread(worker)
    assert started.wait(10)
    worker.stop()
    # The loop releases the prefetched jobs while the handler still runs...
    waited = threading.Event()
    while not api.called("release") and thread.is_alive():
        waited.wait(0.01)
    assert api.states(Q) == {"in_flight": 1, "waiting": 5}
    proceed.set()
    thread.join(10)
    [summary] = done
    # ... and the running job finishes and is reported before the worker exits.
    assert (summary.claimed, summary.released, summary.completed) == (6, 5, 1)
    assert api.states(Q) == {"completed": 1, "waiting": 5}
    assert all(job.attempt == 0 for job in api.jobs[Q].values() if job.state == "waiting")
    assert api.called("heartbeat")[-1].stopping


def test_a_handler_past_the_grace_period_is_left_for_redelivery(api: FakeApi) -> None:
    api.add_jobs(Q, [{}])
    started, proceed = threading.Event(), threading.Event()

    def stuck(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        proceed.wait(10)

    worker = make_worker(api, stuck, drain=False, grace=0.05)
    thread, done = in_thread(worker)
    assert started.wait(10)
    worker.stop()
    thread.join(10)
    proceed.set()
    [summary] = done
    assert (summary.completed, summary.failed) == (0, 0)
    assert api.states(Q) == {"in_flight": 1}  # its lease runs out; PGMQ redelivers it


# ---------------------------------------------------------------- reconnects


def test_a_lost_connection_is_reopened_and_nothing_is_lost(api: FakeApi) -> None:
    api.add_jobs(Q, [{"i": i} for i in range(20)])
    api.errors = {
        "complete": [psycopg.OperationalError("server closed the connection")],
        "connect": [psycopg.OperationalError("connection refused")],
    }
    summary = make_worker(api, noop, concurrency=2).run()
    assert api.connects == 2  # the first, one refused attempt, then the reconnect
    assert (summary.completed, summary.stale) == (20, 0)
    assert api.states(Q) == {"completed": 20}


def test_a_report_whose_answer_was_lost_is_sent_again_and_counted_stale(
    api: FakeApi,
) -> None:
    """The database applied the completion but the answer never came back: the worker sends
    it again after reconnecting, and the fence makes the duplicate a no-op."""
    api.add_jobs(Q, [{}])
    real_complete = api.complete

    def applied_then_lost(queue: str, deliveries: Any, durations: Any) -> int:
        real_complete(queue, deliveries, durations)
        if len(api.called("complete")) == 1:
            api.conn_open = False
            raise psycopg.OperationalError("connection lost after commit")
        return real_complete(queue, deliveries, durations)

    api.complete = applied_then_lost  # type: ignore[method-assign]
    summary = make_worker(api, noop).run()
    assert (summary.completed, summary.stale) == (0, 1)
    assert api.states(Q) == {"completed": 1} and api.connects == 2


# ---------------------------------------------------------------- batching


def test_completions_are_reported_in_batches(api: FakeApi) -> None:
    api.add_jobs(Q, [{"i": i} for i in range(200)])
    summary = make_worker(api, noop, concurrency=4).run()
    assert summary.completed == 200
    batches = [len(deliveries) for _, deliveries in api.called("complete")]
    assert sum(batches) == 200 and max(batches) > 10, batches


def test_failures_are_reported_in_batches_and_retried(api: FakeApi) -> None:
    api.add_jobs(Q, [{"i": i} for i in range(100)])

    def fail_once(payload: dict[str, Any], ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("first attempts fail")

    summary = make_worker(api, fail_once, concurrency=4).run()
    assert (summary.completed, summary.failed, summary.dead) == (100, 100, 0)
    batches = [len(deliveries) for _, deliveries in api.called("fail_batch")]
    assert sum(batches) == 100 and max(batches) > 10, batches
    assert api.called("fail") == []


def test_a_refused_failure_batch_goes_one_by_one(api: FakeApi) -> None:
    api.add_jobs(Q, [{"i": i} for i in range(5)])
    api.max_attempts = 1
    api.errors = {"fail_batch": [psycopg.errors.UndefinedFunction("no fail_batch")] * 10}

    def failing(payload: dict[str, Any], ctx: JobContext) -> None:
        raise ValueError("no")

    summary = make_worker(api, failing, concurrency=5, prefetch=0).run()
    assert (summary.failed, summary.dead) == (5, 5)
    assert len(api.called("fail")) == 5


def test_leases_are_extended_in_batches(api: FakeApi) -> None:
    """Five long jobs of a 0.1 s lease: their extends go together, one call per round."""
    api.lease = 0.1
    api.add_jobs(Q, [{"i": i} for i in range(5)])
    all_started = threading.Barrier(5)

    def long_job(payload: dict[str, Any], ctx: JobContext) -> None:
        all_started.wait(10)
        with api.extended:  # until three rounds of extends covered every job
            api.extended.wait_for(
                lambda: sum(len(d) for _, d in api.called("extend")) >= 15, timeout=10
            )

    summary = make_worker(api, long_job, concurrency=5).run()
    assert summary.completed == 5
    batches = [len(deliveries) for _, deliveries in api.called("extend")]
    assert max(batches) == 5, batches
    assert len(batches) < sum(batches), batches


# ---------------------------------------------------------------- outcomes and cancellation


def test_a_null_extend_sets_ctx_cancelled(api: FakeApi) -> None:
    api.lease = 0.1
    [job_id] = api.add_jobs(Q, [{}])
    seen = threading.Event()

    def cooperative(payload: dict[str, Any], ctx: JobContext) -> None:
        api.cancel(Q, job_id)  # as pgmq_jobs.cancel would, while the handler runs
        if ctx.cancelled.wait(10):
            seen.set()

    summary = make_worker(api, cooperative).run()
    assert seen.is_set()
    assert (summary.completed, summary.stale) == (0, 1)  # the late complete is stale


def test_snooze_puts_the_job_off_without_an_attempt(api: FakeApi) -> None:
    [job_id] = api.add_jobs(Q, [{}])
    attempts: list[int] = []

    def snoozing(payload: dict[str, Any], ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) <= 2:
            raise pgmq_jobs.Snooze(timedelta(milliseconds=20))

    summary = make_worker(api, snoozing).run()
    assert attempts == [1, 1, 1]
    assert (summary.snoozed, summary.completed, summary.failed) == (2, 1, 0)
    assert api.job(Q, job_id).errors == []
    assert [by for *_, by in api.called("snooze")] == [timedelta(milliseconds=20)] * 2


def test_a_stale_snooze_is_ignored(api: FakeApi) -> None:
    [job_id] = api.add_jobs(Q, [{}])

    def cancelled_then_snoozed(payload: dict[str, Any], ctx: JobContext) -> None:
        api.cancel(Q, job_id)
        raise pgmq_jobs.Snooze(1)

    summary = make_worker(api, cancelled_then_snoozed).run()
    assert (summary.snoozed, summary.stale) == (0, 1)
    assert api.job(Q, job_id).state == "cancelled"


def test_snooze_needs_a_delay() -> None:
    with pytest.raises(TypeError, match="after"):
        pgmq_jobs.Snooze("soon")  # type: ignore[arg-type]
    assert pgmq_jobs.Snooze(-5).after == timedelta(0)


# ---------------------------------------------------------------- logs


def test_a_failed_attempt_logs_a_warning_and_a_dead_letter_an_error(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = api.add_jobs(Q, [{}])
    api.max_attempts = 2

    def broken(payload: dict[str, Any], ctx: JobContext) -> None:
        raise KeyError("customer 42")

    caplog.set_level(logging.DEBUG, logger="pgmq_jobs.worker")
    worker = make_worker(api, broken, worker_id="w-logs")
    summary = worker.run()
    assert (summary.failed, summary.dead) == (2, 1)
    failures = [r for r in caplog.records if getattr(r, "error_type", None) == "KeyError"]
    warning, error = [r for r in failures if r.levelno >= logging.WARNING]
    for record, attempt in ((warning, 1), (error, 2)):
        assert "KeyError: 'customer 42'" in record.getMessage()
        assert (record.queue, record.job_id, record.attempt) == (Q, job_id, attempt)
        assert record.worker == "w-logs"
        assert record.error_message == "'customer 42'"
        assert record.exc_info is None  # no traceback at WARNING or ERROR ...
    assert (warning.levelname, warning.outcome) == ("WARNING", "retry")
    assert (error.levelname, error.outcome) == ("ERROR", "dead")
    assert "dead-letter" in error.getMessage()
    tracebacks = [r for r in failures if r.levelno == logging.DEBUG]
    assert len(tracebacks) == 2  # ... but at DEBUG
    assert "Traceback" in tracebacks[0].getMessage() and "broken" in tracebacks[0].getMessage()


def test_a_timeout_logs_its_type(api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    api.add_jobs(Q, [{}])
    api.max_attempts = 1

    def slow(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.cancelled.wait(10)

    caplog.set_level(logging.INFO, logger="pgmq_jobs.worker")
    summary = make_worker(api, slow, handler_timeout=0.05).run()
    assert summary.dead == 1
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.error_type == "TimeoutError" and "0.05 s timeout" in error.error_message
