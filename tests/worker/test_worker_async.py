"""``async def`` handlers: awaited on the worker's event loop, exactly once per delivery, with
the outcomes, timeouts and cancellation of a ``def`` handler.

The outcome tests run a real ``pgmq-jobs worker`` with ``apps.async_app`` and are
parametrized over both kinds of handler (the async app registers the ledger app's ``def``
handler for the "sync" case), so each asserts that the two behave alike. Cases that need to
reach inside a running worker (stealing its delivery, blocking its loop, a stop with jobs
prefetched) run a :class:`pgmq_jobs.Worker` in the test process against the same database.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgmq_jobs
import pgmq_jobs.client as jobs
from apps.harness import archived_ids, create_ledger, ledger, running_worker, start_worker
from apps.harness import worker_env as ledger_worker_env
from pgmq_jobs.registry import JobContext
from support import db_now, make_visible, queue_rows, wait_for

Connection = psycopg.Connection[Any]
APP = "apps.async_app:app"
KINDS = ["sync", "async"]


@pytest.fixture(scope="module", autouse=True)
def _ledger(db_dsn: str) -> None:
    create_ledger(db_dsn)


def worker_env(kind: str, dsn: str, queues: list[str], **extra: str) -> dict[str, str]:
    """The environment of ``apps.async_app`` with ``kind`` handlers for ``queues``."""
    if kind == "sync":
        return ledger_worker_env(dsn, queues, **extra)
    return ledger_worker_env(dsn, [], ASYNC_QUEUES=",".join(queues), **extra)


def drain(dsn: str, env: dict[str, str], queues: list[str], *args: str) -> dict[str, Any]:
    """``pgmq-jobs worker --drain`` with the async app, to its end; its JSON summary."""
    drain_args = ("--drain", "--max-seconds", "30", "--no-listen", *args)
    proc = start_worker(dsn, queues, *drain_args, env=env, app=APP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "was never awaited" not in err
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def dead_letter_of(conn: Connection, queue: str) -> Callable[[], Any]:
    return lambda: next(iter(jobs.dead_letters(conn, queue)), None)


def failure_row(conn: Connection, queue: str) -> Callable[[], list[dict[str, Any]]]:
    """The queue's rows that carry a reported failure."""
    return lambda: [r for r in queue_rows(conn, queue) if (r["headers"] or {}).get("errors")]


# ---------------------------------------------------------------- runs, awaited, once


def test_an_async_handler_runs_awaited_exactly_once_per_delivery(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    # The regression test of the silent job loss: a coroutine that was never awaited left
    # no ledger rows while its jobs were completed and archived.
    jobs.create_queue(conn, queue_name)
    ids = jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(200)])
    env = worker_env("async", db_dsn, [queue_name])
    summary = drain(db_dsn, env, [queue_name], "--concurrency", "4")
    assert (summary["completed"], summary["failed"], summary["stale"]) == (200, 0, 0)
    rows = ledger(conn, queue_name)
    # Each job started and finished once, in its first (and only) delivery: the handler
    # ran to its end, past the awaits between the two ledger rows.
    assert Counter((job_id, attempt, event) for job_id, attempt, event, _ in rows) == {
        (job_id, 1, event): 1 for job_id in ids for event in ("start", "done")
    }
    # Completed means the coroutine ran: every archived job has its "done" row.
    assert archived_ids(conn, queue_name) == set(ids)


def test_one_worker_runs_sync_and_async_handlers(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    sync_queue, async_queue = f"{queue_name}_s", f"{queue_name}_a"
    for queue in (sync_queue, async_queue):
        jobs.create_queue(conn, queue)
        jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(20)])
    env = ledger_worker_env(db_dsn, [sync_queue], ASYNC_QUEUES=async_queue)
    summary = drain(db_dsn, env, [sync_queue, async_queue])
    assert summary["completed"] == 40
    for queue in (sync_queue, async_queue):
        assert len(ledger(conn, queue, "done")) == 20
        assert len(archived_ids(conn, queue)) == 20


# ---------------------------------------------------------------- outcomes, as a def's


@pytest.mark.parametrize("kind", KINDS)
def test_an_exception_fails_the_attempt_with_its_traceback_then_the_backoff(
    db_dsn: str, conn: Connection, queue_name: str, kind: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=5, retry_base=30, jitter="none")
    job_id = jobs.enqueue(conn, queue_name, {"action": "fail"})
    with running_worker(db_dsn, [queue_name], env=worker_env(kind, db_dsn, [queue_name]), app=APP):
        [row] = wait_for(failure_row(conn, queue_name), timeout=15, what="the failure")
    [error] = row["headers"]["errors"]
    assert error["attempt"] == 1
    text = error["error"]
    assert text.startswith("Traceback (most recent call last):")
    app_file = "async_app.py" if kind == "async" else "ledger_app.py"
    assert app_file in text and f"ValueError: job {job_id} failed on purpose" in text
    assert timedelta(seconds=25) < row["vt"] - db_now(conn) <= timedelta(seconds=30)
    assert len(ledger(conn, queue_name, "start")) == 1
    assert not ledger(conn, queue_name, "done")


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_sets_the_next_attempt_time(
    db_dsn: str, conn: Connection, queue_name: str, kind: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=2, retry_base=60)
    job_id = jobs.enqueue(conn, queue_name, {"action": "retry", "after": 1.5})
    env = worker_env(kind, db_dsn, [queue_name])
    with running_worker(db_dsn, [queue_name], "--poll-interval", "30", env=env, app=APP):
        dead = wait_for(dead_letter_of(conn, queue_name), timeout=15, what="both attempts")
    first, second = [r[0] for r in _start_times(conn, queue_name)]
    assert timedelta(seconds=1.4) <= second - first < timedelta(seconds=5)
    assert (dead.job_id, dead.reason, dead.attempts) == (job_id, "exhausted", 2)
    assert all("Retry: come back later" in e["error"] for e in dead.errors)


@pytest.mark.parametrize("kind", KINDS)
def test_retry_without_after_uses_the_queues_backoff(
    db_dsn: str, conn: Connection, queue_name: str, kind: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3, retry_base=30, jitter="none")
    jobs.enqueue(conn, queue_name, {"action": "retry"})
    with running_worker(db_dsn, [queue_name], env=worker_env(kind, db_dsn, [queue_name]), app=APP):
        [row] = wait_for(failure_row(conn, queue_name), timeout=15, what="the retry")
    [error] = row["headers"]["errors"]
    assert "Retry: come back later" in error["error"]
    # Retry() left the delay to the queue: its first backoff step, 30 s without jitter.
    assert timedelta(seconds=25) < row["vt"] - db_now(conn) <= timedelta(seconds=30)


@pytest.mark.parametrize("kind", KINDS)
def test_permanent_goes_to_the_dlq_at_once(
    db_dsn: str, conn: Connection, queue_name: str, kind: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=5)
    job_id = jobs.enqueue(conn, queue_name, {"action": "permanent"})
    with running_worker(db_dsn, [queue_name], env=worker_env(kind, db_dsn, [queue_name]), app=APP):
        dead = wait_for(dead_letter_of(conn, queue_name), timeout=15, what="the dead letter")
    assert (dead.job_id, dead.reason, dead.attempts) == (job_id, "permanent", 1)
    assert "Permanent: this payload can never work" in (dead.last_error or "")
    assert len(ledger(conn, queue_name, "start")) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_timeout_fails_the_job_and_frees_the_slot(
    db_dsn: str, conn: Connection, queue_name: str, kind: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    slow = jobs.enqueue(conn, queue_name, {"sleep": 3})
    quick = jobs.enqueue(conn, queue_name, {"i": "quick"})
    env = worker_env(kind, db_dsn, [queue_name], LEDGER_TIMEOUT="0.5")
    args = ("--concurrency", "1", "--poll-interval", "0.2")
    with running_worker(db_dsn, [queue_name], *args, env=env, app=APP):
        dead = wait_for(dead_letter_of(conn, queue_name), timeout=15, what="the timeout")
        # One slot: the quick job ran once the slow one timed out.
        wait_for(lambda: quick in archived_ids(conn, queue_name), timeout=10, what="quick job")
        if kind == "async":
            # The coroutine was cancelled at its timeout, not left to finish.
            wait_for(lambda: ledger(conn, queue_name, "cancelled"), timeout=10, what="cancel")
        else:
            # A thread cannot be cancelled: it finishes, and its result is ignored.
            wait_for(lambda: len(ledger(conn, queue_name, "done")) == 2, timeout=10, what="end")
    assert (dead.job_id, dead.reason) == (slow, "exhausted")
    assert "TimeoutError: handler exceeded its 0.5 s timeout" in (dead.last_error or "")
    assert archived_ids(conn, queue_name) == {quick}
    if kind == "async":
        assert [r[0] for r in ledger(conn, queue_name, "cancelled")] == [slow]
        assert [r[0] for r in ledger(conn, queue_name, "done")] == [quick]


def test_an_async_handler_that_ignores_its_cancellation_has_its_late_result_ignored(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    slow = jobs.enqueue(conn, queue_name, {"sleep": 30, "ignore_cancel": True, "after_cancel": 1})
    quick = jobs.enqueue(conn, queue_name, {"i": "quick"})
    env = worker_env("async", db_dsn, [queue_name], LEDGER_TIMEOUT="0.5")
    args = ("--concurrency", "1", "--poll-interval", "0.2")
    with running_worker(db_dsn, [queue_name], *args, env=env, app=APP):
        dead = wait_for(dead_letter_of(conn, queue_name), timeout=15, what="the timeout")
        # Its slot went to the quick job although the slow coroutine kept running ...
        wait_for(lambda: quick in archived_ids(conn, queue_name), timeout=10, what="quick job")
        # ... to its end, whose result counts for nothing.
        wait_for(lambda: len(ledger(conn, queue_name, "done")) == 2, timeout=10, what="late end")
    assert (dead.job_id, dead.reason) == (slow, "exhausted")
    assert archived_ids(conn, queue_name) == {quick}


def _start_times(conn: Connection, queue: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select at from ledger where queue = %s and event = 'start' order by at", (queue,)
    ).fetchall()


# ---------------------------------------------------------------- inside a worker


def run_in_thread(worker: pgmq_jobs.Worker) -> tuple[threading.Thread, list[pgmq_jobs.Summary]]:
    result: list[pgmq_jobs.Summary] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    return thread, result


def test_async_handlers_run_concurrently_on_one_event_loop_thread(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(5)])
    barrier = asyncio.Barrier(5)
    threads: set[str] = set()

    async def together(payload: dict[str, Any], ctx: JobContext) -> None:
        threads.add(threading.current_thread().name)
        # Passes only when all five handlers wait at once: tasks, not one after another.
        await asyncio.wait_for(barrier.wait(), 20)

    app = pgmq_jobs.Registry()
    app.add(queue_name, together)
    options = pgmq_jobs.WorkerOptions(
        [queue_name], concurrency=5, drain=True, max_seconds=30, listen=False
    )
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert (summary.completed, summary.failed) == (5, 0)
    [thread_name] = threads
    assert thread_name.startswith("pgmq-jobs-event-loop-")


@pytest.mark.parametrize("kind", KINDS)
def test_a_lost_lease_sets_ctx_cancelled_and_its_outcome_is_stale(
    db_dsn: str, conn: Connection, queue_name: str, kind: str
) -> None:
    jobs.create_queue(conn, queue_name, visibility_timeout=1)
    job_id = jobs.enqueue(conn, queue_name, {})
    started = threading.Event()
    saw_cancelled: list[bool] = []

    def sync_handler(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        saw_cancelled.append(ctx.cancelled.wait(20))

    async def async_handler(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        saw_cancelled.append(await asyncio.to_thread(ctx.cancelled.wait, 20))

    app = pgmq_jobs.Registry()
    app.add(queue_name, async_handler if kind == "async" else sync_handler)
    options = pgmq_jobs.WorkerOptions([queue_name], max_jobs=1, max_seconds=30, listen=False)
    worker = pgmq_jobs.Worker(db_dsn, app, options)
    thread, result = run_in_thread(worker)
    assert started.wait(15), "the handler never started"
    # Someone else takes the delivery (as after an expired lease): the next extend of the
    # worker's lease finds it stale.
    with conn.transaction():
        make_visible(conn, queue_name, job_id)
        [(attempt,)] = conn.execute(
            "select attempt from pgmq_jobs.claim(%s, 1, visibility_timeout => '60 s')",
            (queue_name,),
        ).fetchall()
    assert attempt == 2
    thread.join(30)
    [summary] = result
    assert saw_cancelled == [True]
    # The handler returned: its completion of attempt 1 was fenced off.
    assert (summary.completed, summary.stale) == (0, 1)
    assert archived_ids(conn, queue_name) == set()
    [row] = queue_rows(conn, queue_name)
    assert row["read_ct"] == 2


def test_an_async_timeout_cancels_the_coroutine_and_sets_ctx_cancelled(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    job_id = jobs.enqueue(conn, queue_name, {})
    seen: list[bool] = []

    async def slow(payload: dict[str, Any], ctx: JobContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append(ctx.cancelled.is_set())
            raise

    app = pgmq_jobs.Registry()
    app.add(queue_name, slow, timeout=0.3)
    options = pgmq_jobs.WorkerOptions([queue_name], drain=True, max_seconds=30, listen=False)
    started = time.monotonic()
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert time.monotonic() - started < 20  # the 60 s sleep was cut short
    assert seen == [True]
    assert (summary.completed, summary.failed, summary.dead) == (0, 1, 1)
    [dead] = jobs.dead_letters(conn, queue_name)
    assert dead.job_id == job_id
    assert "TimeoutError: handler exceeded its 0.3 s timeout" in (dead.last_error or "")


def test_an_async_handler_that_blocks_the_loop_still_times_out(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    # time.sleep in an async def holds the loop, so its timer cannot fire: the control
    # thread reports the timeout, as for a def, and the late result is ignored.
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue(conn, queue_name, {})
    finished = threading.Event()

    async def blocking(payload: dict[str, Any], ctx: JobContext) -> None:
        time.sleep(2)
        finished.set()

    app = pgmq_jobs.Registry()
    app.add(queue_name, blocking, timeout=0.3)
    options = pgmq_jobs.WorkerOptions(
        [queue_name], drain=True, max_seconds=30, listen=False, poll_interval=0.1
    )
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert (summary.completed, summary.failed, summary.dead) == (0, 1, 1)
    [dead] = jobs.dead_letters(conn, queue_name)
    assert "TimeoutError: handler exceeded its 0.3 s timeout" in (dead.last_error or "")
    assert finished.wait(10)


def test_a_def_that_returns_a_coroutine_fails_instead_of_completing(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    # A wrapper hides the async def from the registry: the worker must not take the
    # unawaited coroutine for a finished job.
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue(conn, queue_name, {})
    ran: list[int] = []

    async def real(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    def wrapper(payload: dict[str, Any], ctx: JobContext) -> Coroutine[Any, Any, None]:
        return real(payload, ctx)

    app = pgmq_jobs.Registry()
    assert not app.add(queue_name, wrapper).is_async
    options = pgmq_jobs.WorkerOptions([queue_name], drain=True, max_seconds=30, listen=False)
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert (summary.completed, summary.dead) == (0, 1)
    assert ran == []
    [dead] = jobs.dead_letters(conn, queue_name)
    assert "TypeError: handler" in (dead.last_error or "")
    assert "returned coroutine instead of running it" in (dead.last_error or "")


def test_a_stop_gives_back_prefetched_async_jobs_unstarted(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    ids = jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(6)])
    started = threading.Event()
    gate = threading.Event()
    ran: list[int] = []

    async def gated(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(ctx.job_id)
        started.set()
        await asyncio.to_thread(gate.wait, 20)

    app = pgmq_jobs.Registry()
    app.add(queue_name, gated)
    options = pgmq_jobs.WorkerOptions(
        [queue_name], concurrency=1, prefetch=5, max_seconds=30, listen=False
    )
    worker = pgmq_jobs.Worker(db_dsn, app, options)
    thread, result = run_in_thread(worker)
    assert started.wait(15), "no handler started"
    worker.stop()
    # The running handler may finish once the worker has stopped claiming (and so given
    # back what it held); there is no public signal for that, so look at the flag.
    wait_for(lambda: not worker._claiming, timeout=10, what="the stop")
    gate.set()
    thread.join(30)
    [summary] = result
    assert (summary.claimed, summary.completed, summary.released) == (6, 1, 5)
    assert len(ran) == 1 and archived_ids(conn, queue_name) == set(ran)
    # The five given back are ready again, their attempt not used up.
    rows = queue_rows(conn, queue_name)
    assert {r["msg_id"] for r in rows} == set(ids) - set(ran)
    assert all(r["read_ct"] == 0 and r["vt"] <= db_now(conn) for r in rows)
