"""Test helpers: run a registry's jobs inline, in the test's process and transaction.

::

    from pgmq_jobs import testing

    def test_signup_sends_a_welcome_email(conn):
        signup(conn, "a@example.com")              # enqueues through send_email.defer
        assert [j.payload for j in testing.enqueued(conn, "emails")] == [
            {"to": "a@example.com", "subject": "Welcome"}
        ]
        summary = testing.drain(conn, app)         # runs the ready jobs here, now
        assert (summary.completed, summary.failed) == (1, 0)

:func:`drain` goes through the SQL API only (``claim``, ``complete``, ``fail``, ``snooze``
of :mod:`pgmq_jobs.client`), against the real database, so retries, dead letters, groups,
priorities and the queue's settings behave exactly as with a worker. It commits nothing: on
a connection inside a transaction (psycopg's default, ``autocommit=False``) every job runs
under a savepoint, so a failing handler's own changes on that connection are rolled back while
its failure is recorded, and rolling the test's transaction back afterwards leaves nothing
behind. On an autocommit connection each job is its own transaction.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from pgmq_jobs import client, outcomes
from pgmq_jobs.api.types import Job, JobInfo
from pgmq_jobs.registry import Handler, JobContext, Registry

Connection = psycopg.Connection[Any]

WORKER_ID = "pgmq_jobs.testing.drain"
CLAIM_BATCH = 100


@dataclass(frozen=True, slots=True)
class DrainedError:
    """One failed attempt: where it happened, what the handler raised and what became of the
    job (``retry``, ``dead`` or ``stale``, as ``fail`` reported it)."""

    queue: str
    job_id: int
    attempt: int
    payload: dict[str, Any]
    exception: BaseException
    error: str
    outcome: str

    @property
    def message(self) -> str:
        """``ExceptionType: message``, the last line of :attr:`error`."""
        return f"{type(self.exception).__name__}: {self.exception}"


@dataclass
class DrainSummary:
    """What :func:`drain` did.

    ``completed``: jobs whose handler returned. ``failed``: failed attempts (retried or
    dead), each in ``errors`` with its exception. ``dead``: those of them that went to the
    dead-letter queue (exhausted, or ``Permanent``). ``snoozed``: jobs that raised
    ``Snooze``. ``stale``: outcomes the database ignored (the job was cancelled meanwhile).
    ``jobs``: every ``(queue, job_id)`` run, in order."""

    completed: int = 0
    failed: int = 0
    dead: int = 0
    snoozed: int = 0
    stale: int = 0
    errors: list[DrainedError] = field(default_factory=list)
    jobs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ran(self) -> int:
        """How many jobs a handler ran for."""
        return len(self.jobs)

    def raise_errors(self) -> None:
        """Re-raise the first failed attempt's exception, if any (for a test that expects
        every job to succeed and wants the real traceback)."""
        if self.errors:
            raise self.errors[0].exception


def drain(
    conn: Connection,
    app: Registry,
    queue: str | None = None,
    *,
    max_jobs: int = 10_000,
) -> DrainSummary:
    """Run the ready jobs of ``queue`` (default: every queue ``app`` has a handler for) with
    their handlers, here, until none is ready; returns a :class:`DrainSummary`.

    Each job runs at most once per call: a failed job whose retry is already due, or a
    snoozed one, is left for the next ``drain``. Jobs that handlers enqueue on ``conn`` do
    run. Handlers' timeouts are not enforced (they run inline). ``max_jobs`` guards against a
    handler that enqueues forever."""
    queues = [queue] if queue is not None else app.queues
    handlers = app.for_queues(queues)
    summary = DrainSummary()
    done: set[tuple[str, int]] = set()
    pending = list(queues)
    while pending and summary.ran < max_jobs:
        for name in list(pending):
            room = min(CLAIM_BATCH, max_jobs - summary.ran)
            claimed = client.claim(conn, name, room, worker=WORKER_ID) if room > 0 else []
            fresh = [job for job in claimed if (name, job.job_id) not in done]
            again = [job for job in claimed if (name, job.job_id) in done]
            if again:  # came back within this drain (a due retry, a snooze): not now
                client.release(conn, name, again)
            if not fresh:
                pending.remove(name)
            for job in fresh:
                done.add((name, job.job_id))
                summary.jobs.append((name, job.job_id))
                _run_one(conn, handlers[name], job, summary)
    return summary


ENQUEUED_STATES = ("waiting", "delayed", "parked")


def enqueued(conn: Connection, queue: str, *, limit: int = 1000) -> list[JobInfo]:
    """What a test enqueued: the jobs of ``queue`` that no handler has run yet (waiting,
    delayed, or parked behind their group), in enqueue order, each as ``client.job`` returns
    it (``payload``, ``priority``, ``visible_at``, ``group_key``, ``dedupe_key`` …). Sees the
    test's own uncommitted transaction on ``conn``. Through ``pgmq_jobs.list_jobs``: admin
    only, at most ``limit`` (1..1000) jobs."""
    jobs = client.list_jobs(conn, queue, None, limit)
    return sorted((j for j in jobs if j.state in ENQUEUED_STATES), key=lambda j: j.job_id)


# ---------------------------------------------------------------- one job


def _run_one(conn: Connection, handler: Handler, job: Job, summary: DrainSummary) -> None:
    ctx = JobContext(
        queue=handler.queue,
        job_id=job.job_id,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        enqueued_at=job.enqueued_at,
        worker_id=WORKER_ID,
    )
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        # A savepoint inside the caller's transaction (claim began it), or a transaction of
        # its own on an autocommit connection: the handler's changes and the completion
        # stand or fall together.
        with conn.transaction():
            _call(handler, job.payload, ctx)
            elapsed_ms = (time.perf_counter() - started) * 1000
            counted = client.complete(conn, handler.queue, [job], [elapsed_ms])
    except Exception as exc:
        failure = exc
    if failure is None:
        if counted:
            summary.completed += 1
        else:
            summary.stale += 1
        return
    _report(conn, handler.queue, job, failure, summary)


def _call(handler: Handler, payload: dict[str, Any], ctx: JobContext) -> None:
    result = handler.func(payload, ctx)
    if handler.is_async or inspect.isawaitable(result):
        if not handler.is_async:
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"handler {handler.name} of queue {handler.queue} returned "
                f"{type(result).__name__} instead of running it: register the async def "
                "itself, which the worker awaits"
            )
        _await(result)


def _await(awaitable: Awaitable[Any]) -> Any:
    """Run an ``async def`` handler's coroutine to its end, also from a test that is itself
    running an event loop (then on a loop of its own in a helper thread)."""

    async def main() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}

    def in_thread() -> None:
        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=in_thread, name="pgmq_jobs.testing")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _report(
    conn: Connection, queue: str, job: Job, exc: BaseException, summary: DrainSummary
) -> None:
    """Report the handler's exception as the worker would: Snooze, Retry, Permanent or an
    ordinary failed attempt."""
    snooze = getattr(outcomes, "Snooze", None)
    if snooze is not None and isinstance(exc, snooze):
        until = client.snooze(conn, queue, job.job_id, job.attempt, _after(exc))
        if until is None:
            summary.stale += 1
        else:
            summary.snoozed += 1
        return
    text = outcomes.error_text(exc)
    if isinstance(exc, outcomes.Retry):
        result = client.fail(conn, queue, job.job_id, job.attempt, text, retry_after=exc.after)
    elif isinstance(exc, outcomes.Permanent):
        result = client.fail(conn, queue, job.job_id, job.attempt, text, permanent=True)
    else:
        result = client.fail(conn, queue, job.job_id, job.attempt, text)
    if result.outcome == "stale":
        summary.stale += 1
    else:
        summary.failed += 1
        summary.dead += result.outcome == "dead"
    summary.errors.append(
        DrainedError(queue, job.job_id, job.attempt, job.payload, exc, text, result.outcome)
    )


def _after(exc: BaseException) -> timedelta:
    after = getattr(exc, "after", None)
    if isinstance(after, timedelta):
        return after
    if isinstance(after, int | float) and not isinstance(after, bool):
        return timedelta(seconds=after)
    return timedelta(0)


__all__ = ["DrainSummary", "DrainedError", "drain", "enqueued"]
