"""The executor: runs handlers and settles their outcomes.

``def`` handlers run in a small pool of threads; ``async def`` handlers are awaited on one
event loop in a thread of its own (:mod:`pgmq_jobs.worker.async_runner`), started only when the
worker has such handlers. Each kind runs up to ``concurrency`` at a time; deliveries beyond
that wait unstarted (the prefetch) and can be taken back at a stop.

Timeouts: a thread cannot be killed. When a handler outlives its timeout the executor
settles it as failed (``TimeoutError: …``), sets ``ctx.cancelled``, gives the slot to a fresh
thread and ignores the late result. An ``async def`` handler is settled the same way and its
task cancelled (at its deadline, by a timer on the loop; should a handler block the loop,
the control thread's :meth:`Executor.expire_overdue` settles it all the same).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue as queue_module
import threading
import time
from typing import Any

from pgmq_jobs.outcomes import Permanent, Retry, Snooze, error_text, timeout_text
from pgmq_jobs.registry import Handler
from pgmq_jobs.tracing import job_span, record_failure
from pgmq_jobs.worker.async_runner import EventLoopThread
from pgmq_jobs.worker.options import WorkerOptions
from pgmq_jobs.worker.state import Delivery, Report, State

log = logging.getLogger("pgmq_jobs.worker")


class PoolThread(threading.Thread):
    """One handler thread; ``retired`` once the worker gave up on its current job."""

    def __init__(self, pool: HandlerPool, number: int) -> None:
        super().__init__(name=f"pgmq-jobs-handler-{number}", daemon=True)
        self.pool = pool
        self.retired = False

    def run(self) -> None:
        while True:
            delivery = self.pool.tasks.get()
            if delivery is None:
                return
            self.pool.execute(delivery, self)
            if self.retired:
                return


class HandlerPool:
    """A fixed number of live handler threads; a retired (timed-out) one is replaced."""

    def __init__(self, size: int, execute: Any) -> None:
        self.tasks: queue_module.SimpleQueue[Delivery | None] = queue_module.SimpleQueue()
        self.execute = execute
        self._numbers = iter(range(1, 1 << 30))
        self.threads = [self._spawn() for _ in range(size)]

    def _spawn(self) -> PoolThread:
        thread = PoolThread(self, next(self._numbers))
        thread.start()
        return thread

    def submit(self, delivery: Delivery) -> None:
        self.tasks.put(delivery)

    def replace(self, thread: PoolThread) -> None:
        """Retire ``thread`` (stuck in a handler) and start another in its place."""
        thread.retired = True
        self.threads = [t for t in self.threads if t is not thread]
        self.threads.append(self._spawn())

    def take_queued(self) -> list[Delivery]:
        """Take back the deliveries no thread has started yet (prefetched ones)."""
        taken: list[Delivery] = []
        while True:
            try:
                item = self.tasks.get_nowait()
            except queue_module.Empty:
                return taken
            if item is not None:
                taken.append(item)

    def shutdown(self) -> None:
        for _ in self.threads:
            self.tasks.put(None)


class Executor:
    """Runs the deliveries it is given and settles each one's outcome in ``state``."""

    def __init__(
        self, state: State, options: WorkerOptions, handlers: dict[str, Handler], name: str
    ) -> None:
        self.state = state
        self.options = options
        self.handlers = handlers
        self.name = name
        self.pool: HandlerPool | None = None
        self.event_loop: EventLoopThread[Delivery] | None = None

    def start(self) -> None:
        if any(not h.is_async for h in self.handlers.values()):
            self.pool = HandlerPool(self.options.concurrency, self._execute)
        if any(h.is_async for h in self.handlers.values()):
            self.event_loop = EventLoopThread(
                self.options.concurrency,
                self._execute_async,
                name=f"pgmq-jobs-event-loop-{self.name}",
            )
            self.event_loop.start()

    def submit(self, delivery: Delivery) -> None:
        if delivery.handler.is_async:
            assert self.event_loop is not None
            self.event_loop.submit(delivery)
        else:
            assert self.pool is not None
            self.pool.submit(delivery)

    def take_unstarted(self) -> list[Delivery]:
        """Take back the deliveries no handler has started yet."""
        return [
            *(self.pool.take_queued() if self.pool is not None else ()),
            *(self.event_loop.take_queued() if self.event_loop is not None else ()),
        ]

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        if self.event_loop is not None:
            self.event_loop.shutdown()

    # ------------------------------------------------------------ running handlers

    def timeout_of(self, delivery: Delivery) -> float | None:
        return delivery.handler.timeout or self.options.timeout

    def _execute(self, delivery: Delivery, thread: PoolThread) -> None:
        """Run one handler in a pool thread and settle its outcome."""
        delivery.slot = thread
        timeout = self.timeout_of(delivery)
        if timeout is not None:
            delivery.deadline = delivery.context.deadline = time.monotonic() + timeout
        report = run_handler(delivery)
        if not self.state.settle(report):
            _log_late_result(delivery)

    async def _execute_async(self, delivery: Delivery) -> None:
        """Await one ``async def`` handler on the event loop and settle its outcome; at its
        timeout it is settled as a sync handler is, and cancelled."""
        timeout = self.timeout_of(delivery)
        timer: asyncio.TimerHandle | None = None
        if timeout is not None:
            delivery.deadline = delivery.context.deadline = time.monotonic() + timeout
            timer = asyncio.get_running_loop().call_later(timeout, self.time_out, delivery)
        try:
            report = await run_async_handler(delivery)
        finally:
            if timer is not None:
                timer.cancel()
        if not self.state.settle(report):
            _log_late_result(delivery)

    # ------------------------------------------------------------ timeouts

    def expire_overdue(self, now: float) -> None:
        for delivery in self.state.snapshot():
            if delivery.deadline is not None and now >= delivery.deadline:
                self.time_out(delivery)

    def time_out(self, delivery: Delivery) -> None:
        """Settle ``delivery`` as timed out (unless it is settled already), set its
        ``ctx.cancelled`` and free its slot: a fresh thread for a sync handler, a cancelled
        task for an async one. Thread-safe: the control thread and the event loop call it."""
        timeout = self.timeout_of(delivery) or 0.0
        text = timeout_text(timeout, delivery.job_id, delivery.attempt)
        report = Report(
            delivery,
            text,
            error_type="TimeoutError",
            error_message=text.removeprefix("TimeoutError: "),
        )
        if not self.state.settle(report):
            return
        delivery.context.cancelled.set()
        log.warning(
            "job %d (attempt %d) of %s exceeded its %gs timeout; reported as failed",
            delivery.job_id,
            delivery.attempt,
            delivery.queue,
            timeout,
        )
        if delivery.handler.is_async:
            if self.event_loop is not None:
                self.event_loop.cancel(delivery)
        elif isinstance(delivery.slot, PoolThread) and self.pool is not None:
            self.pool.replace(delivery.slot)


def run_handler(delivery: Delivery) -> Report:
    """Call a ``def`` handler; its outcome as a report."""
    started = time.perf_counter()
    with job_span(
        delivery.queue, delivery.job_id, delivery.attempt, delivery.trace_context
    ) as span:
        try:
            result = delivery.handler.func(delivery.payload, delivery.context)
            if result is not None and inspect.isawaitable(result):
                _refuse_awaitable(delivery.handler, result)
        except BaseException as exc:  # every failure is reported, even SystemExit
            if not isinstance(exc, Snooze):
                record_failure(span, exc)
            report = outcome_of(delivery, exc)
        else:
            report = Report(delivery)
    # The handler's processing time: reported with a completion (queue_stats), and the
    # pace of the automatic prefetch, failed or not.
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report


async def run_async_handler(delivery: Delivery) -> Report:
    """Await an ``async def`` handler; its outcome as a report."""
    started = time.perf_counter()
    with job_span(
        delivery.queue, delivery.job_id, delivery.attempt, delivery.trace_context
    ) as span:
        try:
            await delivery.handler.func(delivery.payload, delivery.context)
        except BaseException as exc:  # CancelledError too: its outcome is a timeout's
            if not isinstance(exc, Snooze):
                record_failure(span, exc)
            report = outcome_of(delivery, exc)
        else:
            report = Report(delivery)
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report


def outcome_of(delivery: Delivery, exc: BaseException) -> Report:
    """The report of a handler that raised ``exc``: Snooze puts the job off, Retry and
    Permanent choose how it fails, anything else is an ordinary failed attempt."""
    if isinstance(exc, Snooze):
        return Report(delivery, snooze=exc.after)
    report = Report(
        delivery,
        error_text(exc),
        error_type=type(exc).__name__,
        error_message=str(exc),
        exception=exc,
    )
    if isinstance(exc, Retry):
        report.retry_after = exc.after
    elif isinstance(exc, Permanent):
        report.permanent = True
    return report


def _refuse_awaitable(handler: Handler, result: Any) -> None:
    """A ``def`` handler returned an awaitable (a lambda or wrapper around an ``async def``):
    it did not run, so the attempt must not count as done."""
    if inspect.iscoroutine(result):
        result.close()  # no "never awaited" warning: this error says it
    raise TypeError(
        f"handler {handler.name} of queue {handler.queue} returned {type(result).__name__} "
        "instead of running it: register the async def itself, which the worker awaits"
    )


def _log_late_result(delivery: Delivery) -> None:
    log.info(
        "late result of job %d (attempt %d) of %s ignored: it had timed out",
        delivery.job_id,
        delivery.attempt,
        delivery.queue,
    )
