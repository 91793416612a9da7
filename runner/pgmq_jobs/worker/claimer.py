"""The claimer: how many jobs to ask for (prefetch), the claims themselves, and the
worker's waiting marks (which ask producers for wake-ups while it is idle on a queue).

While OpenTelemetry traces (:func:`pgmq_jobs.tracing.active`), each claimed batch's trace
contexts are read in one more call and handed to the handlers' spans; otherwise that call
is never made."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg

from pgmq_jobs import tracing
from pgmq_jobs.registry import Handler, JobContext
from pgmq_jobs.worker import options as tuning
from pgmq_jobs.worker.api import Claimed, WorkerApi
from pgmq_jobs.worker.options import WorkerOptions
from pgmq_jobs.worker.state import Delivery, Report, State

log = logging.getLogger("pgmq_jobs.worker")


def moving_average(last: float | None, value: float) -> float:
    """Exponentially weighted: the latest measurement counts for a fifth."""
    return value if last is None else 0.8 * last + 0.2 * value


class Claimer:
    """Claims as many jobs as there are free handler slots (plus the prefetch) from the
    queues that may hold ready jobs, and hands each to ``submit``."""

    def __init__(
        self,
        state: State,
        options: WorkerOptions,
        handlers: dict[str, Handler],
        api: WorkerApi,
        worker_id: str,
        submit: Callable[[Delivery], None],
    ) -> None:
        self.state = state
        self.options = options
        self.handlers = handlers
        self.api = api
        self.worker_id = worker_id
        self.submit = submit
        self.pace: float | None = None  # handler seconds per job, moving average
        self.payload_bytes: float | None = None  # payload size, moving average
        # Queues this worker is marked waiting for (enqueues then NOTIFY; see wait_for_jobs).
        self.waiting: set[str] = set()
        self.order: deque[str] = deque(options.queues)
        self.trace_contexts_failed = False  # logged once

    # ------------------------------------------------------------ prefetch

    def prefetch(self) -> int:
        """``--prefetch``, or automatic: at least ``concurrency``, and for fast handlers as
        many as the slots get through in AUTO_PREFETCH_SECONDS, within AUTO_PREFETCH_BYTES
        of payloads and AUTO_PREFETCH_MAX. Larger claims (and completions) mean fewer round
        trips per job, while a slow queue is never hoarded by one worker."""
        if self.options.prefetch is not None:
            return self.options.prefetch
        concurrency = self.options.concurrency
        if not self.pace:
            return concurrency
        fast = min(
            concurrency * tuning.AUTO_PREFETCH_SECONDS / self.pace,
            tuning.AUTO_PREFETCH_BYTES / max(self.payload_bytes or 0.0, 1.0),
            tuning.AUTO_PREFETCH_MAX,
        )
        return max(concurrency, int(fast))

    def measure_pace(self, reports: list[Report]) -> None:
        durations = [r.duration_ms for r in reports if r.duration_ms is not None]
        if durations:
            self.pace = moving_average(self.pace, sum(durations) / len(durations) / 1000)

    def measure_payloads(self, rows: list[Claimed]) -> None:
        if rows:
            size = sum(row.payload_bytes for row in rows) / len(rows)
            self.payload_bytes = moving_average(self.payload_bytes, size)

    def free(self) -> int:
        """How many jobs to claim now: free slots plus the prefetch, within max_jobs."""
        free = self.options.concurrency + self.prefetch() - len(self.state.active)
        if self.options.max_jobs is not None:
            free = min(free, self.options.max_jobs - self.state.summary.claimed)
        return free

    def wants_to_claim(self) -> bool:
        return bool(self.state.ready) and self.free() > 0

    # ------------------------------------------------------------ claiming

    def claim(self) -> None:
        """One round over the ready queues, starting with the next one each time."""
        self.order.rotate(-1)
        for queue in list(self.order):
            free = self.free()
            if free <= 0:
                return
            with self.state.lock:
                if queue not in self.state.ready:
                    continue
                wakes = self.state.wakes[queue]
            rows = self.claim_rows(queue, free)
            contexts = self.trace_contexts(queue, rows) if rows and tracing.active() else {}
            for row in rows:
                self.start(queue, row, contexts.get(row.job_id))
            self.measure_payloads(rows)
            if len(rows) < free:
                self.mark_drained(queue, wakes)
            self.mark_waiting(queue, claimed=len(rows), asked=free)

    def claim_rows(self, queue: str, qty: int) -> list[Claimed]:
        handler = self.handlers[queue]
        return self.api.claim(queue, qty, handler.visibility_timeout, self.worker_id)

    def trace_contexts(self, queue: str, rows: list[Claimed]) -> dict[int, dict[str, Any]]:
        """The claimed jobs' trace contexts by job id. The jobs are claimed already: should
        the call fail they run all the same, in traces of their own (a lost connection then
        shows in the next call, which the loop handles)."""
        try:
            return self.api.trace_contexts(queue, [row.job_id for row in rows])
        except psycopg.Error as exc:
            if not self.trace_contexts_failed:
                self.trace_contexts_failed = True
                log.warning(
                    "could not read the trace contexts of jobs of %s (%s: %s); their spans"
                    " start new traces",
                    queue,
                    type(exc).__name__,
                    exc,
                )
            return {}

    def start(self, queue: str, row: Claimed, trace_context: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        lease = max(float(row.lease), 0.001)
        context = JobContext(
            queue, row.job_id, row.attempt, row.max_attempts, row.enqueued_at, self.worker_id
        )
        delivery = Delivery(
            queue,
            row.job_id,
            row.attempt,
            row.payload,
            self.handlers[queue],
            context,
            lease=lease,
            lease_until=now + lease,
            extend_at=now + lease * self.options.extend_fraction,
            trace_context=trace_context,
        )
        self.state.add(delivery)
        self.state.summary.claimed += 1
        self.submit(delivery)

    def mark_drained(self, queue: str, wakes: int) -> None:
        """Nothing more is ready in ``queue``, unless a wake-up came in during the claim."""
        with self.state.lock:
            if self.state.wakes[queue] == wakes:
                self.state.ready.discard(queue)

    def mark_waiting(self, queue: str, *, claimed: int, asked: int) -> None:
        """Ask producers for wake-ups while idle on ``queue``; stop asking under load.

        After a claim that drained the queue (fewer jobs than asked for) the worker marks
        itself waiting and claims again at once and shortly after: a producer whose
        transaction checked for waiting workers before the mark took effect sent no NOTIFY,
        and its job is picked up by those claims (or, for a very long transaction, by the
        poll). A full claim means the queue keeps it busy: it unmarks, and producers skip
        the NOTIFY, which serialises their commits."""
        if not self.options.listen:
            return
        if claimed < asked and queue not in self.waiting:
            self.api.wait_for_jobs(self.worker_id, [queue], True)
            self.waiting.add(queue)
            self.state.on_wake(queue)
            for delay in tuning.WAITING_RECHECKS:
                self.state.add_timer(delay, queue)
        elif claimed >= asked and queue in self.waiting:
            self.api.wait_for_jobs(self.worker_id, [queue], False)
            self.waiting.discard(queue)
