"""The reporter: sends the settled outcomes in batches and extends the leases of long jobs.

Each flush sends, per queue, every release in one ``release`` call, every completion in one
``complete`` call (with the handlers' durations), every failure in one ``fail_batch`` call
(falling back to ``fail`` one by one should the batch be refused) and each snooze with
``snooze``. Leases that reached their extend time go together too: one statement per queue.

Faults: outcomes that could not be sent because the connection went away are kept and sent
after reconnecting, as long as they are plausible (until one more visibility timeout after
the lease ran out); after that the job will be (or was) redelivered, so nothing is lost. A
report that reached the database but whose answer was lost is sent again; the fence makes
the duplicate a no-op (counted as stale), so no outcome is applied twice.

Logs: a failed attempt is a WARNING and a dead letter an ERROR, each with the exception's
type and message and, as structured ``extra`` fields, ``queue``, ``job_id``, ``attempt``,
``worker``, ``error_type`` and ``error_message`` (``outcome`` too); the traceback follows at
DEBUG.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import psycopg

from pgmq_jobs.worker.api import CONNECTION_ERRORS, Failed, WorkerApi
from pgmq_jobs.worker.options import INFINITY, WorkerOptions
from pgmq_jobs.worker.state import Delivery, Report, State, by_queue

log = logging.getLogger("pgmq_jobs.worker")


class Reporter:
    """Reports what ``state`` holds through ``api``; ``on_flush`` sees every batch sent
    (the claimer measures the handlers' pace with it)."""

    def __init__(
        self,
        state: State,
        options: WorkerOptions,
        api: WorkerApi,
        worker_id: str,
        on_flush: Callable[[list[Report]], None],
    ) -> None:
        self.state = state
        self.options = options
        self.api = api
        self.worker_id = worker_id
        self.on_flush = on_flush

    # ------------------------------------------------------------ outcomes

    def flush(self) -> None:
        pending = self.state.take_reports()
        now = time.monotonic()
        pending = [r for r in pending if self._keep(r, now)]
        self.on_flush(pending)
        try:
            self._send_counted(pending, "released")
            self._send_counted(pending, "completed")
            self._send_failures(pending)
            self._send_snoozes(pending)
        except CONNECTION_ERRORS:
            self.state.put_back(pending)
            raise

    @staticmethod
    def _keep(report: Report, now: float) -> bool:
        if report.plausible(now):
            return True
        d = report.delivery
        log.warning(
            "outcome of job %d (attempt %d) of %s could not be reported in time; the job is "
            "redelivered after its visibility timeout",
            d.job_id,
            d.attempt,
            d.queue,
        )
        return False

    def _send_counted(self, pending: list[Report], kind: str) -> None:
        """One ``release`` or ``complete`` call per queue for the ``kind`` reports: what it
        applied counts in ``summary.<kind>``, the rest as stale; reported entries leave
        ``pending``."""
        summary = self.state.summary
        for queue, batch in by_queue(r for r in pending if r.kind == kind).items():
            deliveries = [(r.delivery.job_id, r.delivery.attempt) for r in batch]
            if kind == "completed":
                durations = [r.duration_ms for r in batch]
                applied = self.api.complete(queue, deliveries, durations)
            else:
                applied = self.api.release(queue, deliveries)
            setattr(summary, kind, getattr(summary, kind) + applied)
            summary.stale += len(batch) - applied
            _remove(pending, batch)

    def _send_failures(self, pending: list[Report]) -> None:
        """One ``fail_batch`` call per queue; should it fail (a report it cannot take), the
        queue's failures go one by one so that the others are still recorded."""
        for queue, batch in by_queue(r for r in pending if r.kind == "failed").items():
            try:
                rows = self.api.fail_batch(
                    queue,
                    [(r.delivery.job_id, r.delivery.attempt) for r in batch],
                    [r.error for r in batch],
                    [r.retry_after for r in batch],
                    [r.permanent for r in batch],
                )
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as exc:
                log.warning(
                    "could not report %d failures of %s at once (%s)", len(batch), queue, exc
                )
                for report in batch:
                    self._send_failure(report)
            else:
                outcomes = {row.job_id: row for row in rows}
                for report in batch:
                    self._count_failure(report, outcomes[report.delivery.job_id])
            _remove(pending, batch)

    def _send_failure(self, report: Report) -> None:
        d = report.delivery
        try:
            result = self.api.fail(
                d.queue, d.job_id, d.attempt, report.error, report.retry_after, report.permanent
            )
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error as exc:
            log.error("could not report the failure of job %d of %s: %s", d.job_id, d.queue, exc)
            return
        self._count_failure(report, result)

    def _count_failure(self, report: Report, result: Failed) -> None:
        summary = self.state.summary
        d = report.delivery
        if result.outcome == "stale":
            summary.stale += 1
            return
        summary.failed += 1
        if result.outcome == "dead":
            summary.dead += 1
        if result.delay is not None and result.outcome != "dead":
            self.state.add_timer(result.delay, d.queue, retry=True)
        self._log_failure(report, result)

    def _log_failure(self, report: Report, result: Failed) -> None:
        d = report.delivery
        extra: dict[str, Any] = {
            "queue": d.queue,
            "job_id": d.job_id,
            "attempt": d.attempt,
            "worker": self.worker_id,
            "error_type": report.error_type or "Exception",
            "error_message": report.error_message or "",
            "outcome": result.outcome,
        }
        if result.outcome == "dead":
            summary_line = "moved to the dead-letter queue"
            level = logging.ERROR
        else:
            summary_line = (
                f"retry in {result.delay:.2f}s" if result.delay is not None else "will be retried"
            )
            level = logging.WARNING
        log.log(
            level,
            "job %d of %s attempt %d failed: %s: %s; %s",
            d.job_id,
            d.queue,
            d.attempt,
            extra["error_type"],
            extra["error_message"],
            summary_line,
            extra=extra,
        )
        if report.exception is not None and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "traceback of job %d of %s attempt %d:\n%s",
                d.job_id,
                d.queue,
                d.attempt,
                "".join(traceback.format_exception(report.exception)).rstrip(),
                extra=extra,
            )

    def _send_snoozes(self, pending: list[Report]) -> None:
        summary = self.state.summary
        for report in [r for r in pending if r.kind == "snoozed"]:
            d = report.delivery
            assert report.snooze is not None
            try:
                snoozed = self.api.snooze(d.queue, d.job_id, d.attempt, report.snooze)
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as exc:
                log.error("could not snooze job %d of %s: %s", d.job_id, d.queue, exc)
                _remove(pending, [report])
                continue
            if snoozed:
                summary.snoozed += 1
                self.state.add_timer(report.snooze.total_seconds(), d.queue, retry=True)
                log.info(
                    "job %d of %s attempt %d snoozed for %gs",
                    d.job_id,
                    d.queue,
                    d.attempt,
                    report.snooze.total_seconds(),
                    extra={"queue": d.queue, "job_id": d.job_id, "attempt": d.attempt},
                )
            else:
                summary.stale += 1
            _remove(pending, [report])

    # ------------------------------------------------------------ leases

    def extend_due(self, now: float) -> None:
        """Extend, one statement per queue, the leases that reached their extend time; a
        delivery whose lease cannot be extended (stale: redelivered, settled elsewhere or
        cancelled) is no longer ours, and ``ctx.cancelled`` tells its handler so."""
        due = [d for d in self.state.snapshot() if now >= d.extend_at and not d.settled]
        for queue, batch in _deliveries_by_queue(due).items():
            rows = self.api.extend(
                queue, [(d.job_id, d.attempt) for d in batch], [d.lease for d in batch]
            )
            ours = {(job_id, attempt) for job_id, attempt, ok in rows if ok}
            extended = time.monotonic()
            for d in batch:
                if (d.job_id, d.attempt) in ours:
                    d.lease_until = extended + d.lease
                    d.extend_at = now + d.lease * self.options.extend_fraction
                    continue
                d.extend_at = INFINITY
                d.context.cancelled.set()
                log.warning(
                    "job %d (attempt %d) of %s is no longer ours", d.job_id, d.attempt, d.queue
                )


def _deliveries_by_queue(deliveries: list[Delivery]) -> dict[str, list[Delivery]]:
    grouped: dict[str, list[Delivery]] = {}
    for d in deliveries:
        grouped.setdefault(d.queue, []).append(d)
    return grouped


def _remove(items: list[Report], gone: list[Report]) -> None:
    drop = {id(r) for r in gone}
    items[:] = [r for r in items if id(r) not in drop]
