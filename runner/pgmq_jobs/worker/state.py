"""What the worker's parts share: the deliveries in flight, the outcomes waiting to be
reported, the queues that may hold ready jobs and the timers that make them so.

Handler threads and the event loop settle deliveries; the control thread does everything
else. One lock guards what both touch; ``wake`` tells the control thread to look again.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pgmq_jobs.registry import Handler, JobContext
from pgmq_jobs.worker.options import Summary


@dataclass(eq=False)
class Delivery:
    """A claimed job while its handler runs and until its outcome is reported."""

    queue: str
    job_id: int
    attempt: int
    payload: dict[str, Any]
    handler: Handler
    context: JobContext
    lease: float
    lease_until: float
    extend_at: float
    deadline: float | None = None
    settled: bool = False
    slot: Any = None  # the handler thread running it (sync handlers)
    trace_context: dict[str, Any] | None = None  # the producer's, when the worker traces


@dataclass(eq=False)
class Report:
    """An outcome waiting to be reported: release when ``released`` (never started), snooze
    when ``snooze`` is set, else complete when ``error`` is None, else fail.

    A failure keeps its exception's type and message (``error_type``, ``error_message``)
    for the logs, and the exception itself for a traceback at DEBUG."""

    delivery: Delivery
    error: str | None = None
    retry_after: timedelta | None = None
    permanent: bool = False
    duration_ms: float | None = None
    released: bool = False
    snooze: timedelta | None = None
    error_type: str | None = None
    error_message: str | None = None
    exception: BaseException | None = None

    @property
    def kind(self) -> str:
        """``released``, ``snoozed``, ``completed`` or ``failed``."""
        if self.released:
            return "released"
        if self.snooze is not None:
            return "snoozed"
        return "completed" if self.error is None else "failed"

    def plausible(self, now: float) -> bool:
        """Still worth reporting: within one more lease after the lease ran out."""
        return now <= self.delivery.lease_until + self.delivery.lease


class State:
    """The worker's shared state (see the module's docstring)."""

    def __init__(self, queues: Sequence[str]) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.summary = Summary()
        self.active: dict[tuple[str, int, int], Delivery] = {}
        self.reports: list[Report] = []
        self.ready: set[str] = set(queues)
        self.wakes: dict[str, int] = dict.fromkeys(queues, 0)
        # (when, queue, a retry or snooze of ours?): a queue to look at again at that time.
        self.timers: list[tuple[float, str, bool]] = []
        self.queues = list(queues)

    # ------------------------------------------------------------ deliveries

    def add(self, delivery: Delivery) -> None:
        with self.lock:
            self.active[(delivery.queue, delivery.job_id, delivery.attempt)] = delivery

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.active.values())

    def settle(self, report: Report) -> bool:
        """Record the first outcome of a delivery; False if it was already settled."""
        delivery = report.delivery
        with self.lock:
            if delivery.settled:
                return False
            delivery.settled = True
            self.active.pop((delivery.queue, delivery.job_id, delivery.attempt), None)
            self.reports.append(report)
        self.wake.set()
        return True

    def take_reports(self) -> list[Report]:
        with self.lock:
            pending, self.reports = self.reports, []
        return pending

    def put_back(self, reports: list[Report]) -> None:
        """Reports that could not be sent (connection lost): first in line next time."""
        with self.lock:
            self.reports[:0] = reports

    # ------------------------------------------------------------ ready queues and timers

    def on_wake(self, queue: str | None) -> None:
        """A queue (None: every queue) may hold ready jobs (thread-safe)."""
        queues = [queue] if queue else self.queues
        with self.lock:
            self.ready.update(queues)
            for name in queues:
                self.wakes[name] += 1
        self.wake.set()

    def add_timer(self, delay: float, queue: str, *, retry: bool = False) -> None:
        with self.lock:
            heapq.heappush(self.timers, (time.monotonic() + max(delay, 0.0), queue, retry))

    def fire_timers(self, now: float) -> None:
        with self.lock:
            while self.timers and self.timers[0][0] <= now:
                self.ready.add(heapq.heappop(self.timers)[1])

    def next_timer(self) -> float | None:
        return self.timers[0][0] if self.timers else None

    def retry_due(self, now: float, budget_end: float) -> bool:
        """A timer due now, or a retry of ours due within the budget."""
        with self.lock:
            return any(
                when <= now or (retry and when <= budget_end) for when, _, retry in self.timers
            )


def by_queue(reports: Iterable[Report]) -> dict[str, list[Report]]:
    grouped: dict[str, list[Report]] = {}
    for report in reports:
        grouped.setdefault(report.delivery.queue, []).append(report)
    return grouped
