"""The worker's loop: timers, limits and shutdown, around the parts that do the work.

One control thread (the caller of :meth:`Worker.run`) owns the only job connection (through
the :class:`~pgmq_jobs.worker.api.WorkerApi`); an optional listener thread owns a second
one for ``LISTEN``. That is the whole connection budget: two per process.

Each time something happens (a handler finished, a NOTIFY, a timer) the loop:

1. reports pending outcomes (:class:`~pgmq_jobs.worker.reporter.Reporter`);
2. extends the leases of handlers that ran past half their visibility timeout;
3. beats (:class:`~pgmq_jobs.worker.heartbeat.Heartbeat`) every few seconds;
4. claims as many jobs as there are free handler slots
   (:class:`~pgmq_jobs.worker.claimer.Claimer`), from queues that may hold ready jobs
   (after a NOTIFY, a poll tick, a retry falling due, or a full batch), and hands them to
   the :class:`~pgmq_jobs.worker.executor.Executor`.

When the database goes away the loop reconnects with capped exponential backoff while
handlers keep running. A stop (signal, ``stop()``, the time budget) claims nothing more,
gives back prefetched jobs no handler has started and lets the running ones finish within
the grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from types import FrameType

import psycopg

from pgmq_jobs.registry import Registry
from pgmq_jobs.worker.api import CONNECTION_ERRORS, DatabaseApi, WorkerApi
from pgmq_jobs.worker.claimer import Claimer
from pgmq_jobs.worker.executor import Executor
from pgmq_jobs.worker.heartbeat import Connection, Heartbeat
from pgmq_jobs.worker.options import INFINITY, Summary, WorkerOptions, default_worker_id
from pgmq_jobs.worker.reporter import Reporter
from pgmq_jobs.worker.state import Report, State
from pgmq_jobs.worker.wakeup import Listener

log = logging.getLogger("pgmq_jobs.worker")


class Worker:
    """Runs the handlers of ``registry`` for ``options.queues`` until stopped or drained.

    ``api``: how the worker reaches the database; by default a :class:`DatabaseApi` on
    ``dsn``. A fake one runs the loop without a database."""

    def __init__(
        self,
        dsn: str,
        registry: Registry,
        options: WorkerOptions,
        *,
        api: WorkerApi | None = None,
    ) -> None:
        options.check()
        self.dsn = dsn
        self.options = options
        self.handlers = registry.for_queues(list(options.queues))
        self.worker_id = options.worker_id or default_worker_id()
        self.api: WorkerApi = api or DatabaseApi(dsn, prepared=options.prepared)
        self.state = State(options.queues)
        self.executor = Executor(self.state, options, self.handlers, self.worker_id)
        self.claimer = Claimer(
            self.state, options, self.handlers, self.api, self.worker_id, self.executor.submit
        )
        self.reporter = Reporter(
            self.state, options, self.api, self.worker_id, self.claimer.measure_pace
        )
        self.heartbeat = Heartbeat(self.state, options, self.api, self.worker_id)
        self.connection = Connection(self.api, options, lambda: self.state.on_wake(None))
        self._stop_requested = threading.Event()
        self._claiming = True
        self._grace_end: float | None = None
        self._started = time.monotonic()
        self._next_poll = INFINITY
        self._listener: Listener | None = None

    # ------------------------------------------------------------ public API

    @property
    def summary(self) -> Summary:
        return self.state.summary

    @property
    def claiming(self) -> bool:
        """Still claiming: no stop, budget or job limit reached yet."""
        return self._claiming

    @property
    def in_flight(self) -> int:
        return len(self.state.active)

    def run(self) -> Summary:
        """Work until stopped (or drained, in drain mode); returns what was done."""
        self._start()
        try:
            while not self._done():
                self.state.wake.clear()
                self.step()
                if not self._done():
                    self.state.wake.wait(self._wait_time())
            self._finish()
        except BaseException:
            self._beat_quietly()
            raise
        finally:
            self._close()
        self.summary.seconds = time.monotonic() - self._started
        return self.summary

    def stop(self) -> None:
        """Stop claiming; in-flight jobs finish within the grace period (thread-safe)."""
        self._stop_requested.set()
        self.state.wake.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second signal exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # ------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        self._started = time.monotonic()
        self._next_poll = self._started + self.options.poll_interval
        self.executor.start()
        if self.options.listen:
            listen_dsn = self.options.listen_dsn or self.dsn
            self._listener = Listener(
                listen_dsn,
                self.options.queues,
                self.state.on_wake,
                reconnect_cap=self.options.reconnect_cap,
            )
            self._listener.start()
        log.info(
            "worker %s: queues %s, concurrency %d, %s",
            self.worker_id,
            ", ".join(self.options.queues),
            self.options.concurrency,
            "LISTEN + poll" if self.options.listen else "poll only",
        )

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_requested.is_set():
            os._exit(128 + signum)
        self.stop()

    def _finish(self) -> None:
        """Last report flush and the stopping heartbeat, if the database is reachable."""
        for delivery in self.state.snapshot():
            log.warning(
                "job %d (attempt %d) of %s still running at exit; it will be redelivered "
                "after its visibility timeout",
                delivery.job_id,
                delivery.attempt,
                delivery.queue,
            )
        try:
            self.connection.ensure()
            self.reporter.flush()
            self.heartbeat.beat(stopping=True)
        except psycopg.Error as exc:
            log.warning("could not report at exit (%s); unreported jobs will be redelivered", exc)

    def _beat_quietly(self) -> None:
        """A last heartbeat on the way out after an error, if the connection still works."""
        if self.api.connected:
            with contextlib.suppress(psycopg.Error):
                self.heartbeat.beat(stopping=True)

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self.executor.shutdown()
        self.api.close()

    # ------------------------------------------------------------ the loop

    def step(self) -> None:
        """One turn of the loop (see the module's docstring)."""
        now = time.monotonic()
        self.executor.expire_overdue(now)
        self.state.fire_timers(now)
        self._poll_if_due(now)
        self._check_limits(now)
        if self.connection.waiting(now):
            return
        try:
            self.connection.ensure()
            self.reporter.flush()
            self.reporter.extend_due(now)
            if self.heartbeat.due(now):
                self.heartbeat.beat()
            if self._claiming:
                self.claimer.claim()
        except CONNECTION_ERRORS as exc:
            self.connection.lost(exc)

    def _done(self) -> bool:
        now = time.monotonic()
        if self._grace_end is not None and now >= self._grace_end:
            return True
        if self._claiming:
            return self.options.drain and self.connection.up and self._idle()
        return not self.state.active and not self.state.reports

    def _idle(self) -> bool:
        """Nothing running, unreported or ready, and no retry of ours falling due within the
        time budget: a drain waits for the retries it scheduled rather than leave them (but
        not for the wake-up rechecks of an emptied queue)."""
        state = self.state
        due = state.retry_due(time.monotonic(), self._budget_end())
        with state.lock:
            return not (state.active or state.reports or state.ready or due)

    def _wait_time(self) -> float:
        now = time.monotonic()
        deliveries = self.state.snapshot()
        if not self.connection.up:
            wake_at = [self.connection.reconnect_at]
        elif self.state.reports or (self._claiming and self.claimer.wants_to_claim()):
            return 0.0
        else:
            wake_at = [self.heartbeat.next_beat, *(d.extend_at for d in deliveries)]
        wake_at += [self._next_poll, *(d.deadline or INFINITY for d in deliveries)]
        wake_at += [self.state.next_timer() or INFINITY]
        wake_at += [self._grace_end or INFINITY, self._budget_end()]
        return min(max(min(wake_at) - now, 0.0), self.options.poll_interval)

    # ------------------------------------------------------------ wake-ups and limits

    def _poll_if_due(self, now: float) -> None:
        if now >= self._next_poll:
            self._next_poll = now + self.options.poll_interval
            self.state.on_wake(None)

    def _budget_end(self) -> float:
        if self.options.max_seconds is None:
            return INFINITY
        return self._started + self.options.max_seconds

    def _check_limits(self, now: float) -> None:
        if not self._claiming:
            return
        max_jobs = self.options.max_jobs
        if self._stop_requested.is_set():
            self._stop_claiming(now, "stop requested", give_back=True)
        elif now >= self._budget_end():
            why = f"time budget of {self.options.max_seconds:g}s spent"
            self._stop_claiming(now, why, give_back=True)
        elif max_jobs is not None and self.summary.claimed >= max_jobs:
            self._stop_claiming(now, f"claimed {max_jobs} jobs", give_back=False)

    def _stop_claiming(self, now: float, why: str, *, give_back: bool) -> None:
        """Claim nothing more; with ``give_back``, prefetched jobs no handler has started are
        released to the queue (attempt not used up) instead of run."""
        self._claiming = False
        self._grace_end = now + self.options.grace
        if give_back:
            unstarted = self.executor.take_unstarted()
            for delivery in unstarted:
                self.state.settle(Report(delivery, released=True))
            if unstarted:
                log.info("%s: giving back %d prefetched job(s)", why, len(unstarted))
        if self.state.active:
            log.info("%s: finishing %d job(s) in flight", why, len(self.state.active))


def run_worker(dsn: str, registry: Registry, options: WorkerOptions) -> Summary:
    """Run a worker in this thread with signal handling (as the CLI does)."""
    worker = Worker(dsn, registry, options)
    if threading.current_thread() is threading.main_thread():
        worker.install_signal_handlers()
    return worker.run()
