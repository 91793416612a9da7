"""The worker: claim jobs, run their handlers, report the outcomes.

``def`` handlers run in a small thread pool; ``async def`` handlers are awaited on one event
loop in a thread of its own (:mod:`pgmq_jobs.async_runner`), started only when the worker
has such handlers. One worker can run both kinds, each with up to ``concurrency`` at a time.

One control thread (the caller of :meth:`Worker.run`) owns the only connection for
``claim``/``complete``/``fail``/``extend``/``heartbeat``; an optional listener thread owns a
second one for ``LISTEN``. That is the whole connection budget: two per process.
(:class:`WorkerGroup` serves queues spread over several databases: one such worker per
database, so two connections per database.)

The control loop, each time something happens (a handler finished, a NOTIFY, a timer):

1. reports pending outcomes: every completion of a queue in one ``complete`` call with
   arrays, each failure with ``fail`` (exception type, message and traceback);
2. extends the lease of handlers that ran past half their visibility timeout;
3. beats (``heartbeat``) every few seconds;
4. claims as many jobs as there are free handler threads, from queues that may hold ready
   jobs (after a NOTIFY, a poll tick, a retry falling due, or a full batch).

Timeouts: a thread cannot be killed. When a handler outlives its timeout the worker reports
the failure (``TimeoutError: …``), sets ``ctx.cancelled``, gives the slot to a fresh thread
and ignores the late result. An ``async def`` handler is reported the same way and its task
is cancelled (at its deadline, by a timer on the loop; should a handler block the loop, the
control thread reports it all the same). Should a late ``complete`` ever reach the database
it would be stale: the delivery's attempt number (its fencing token) no longer matches.
A delivery whose lease cannot be extended (``extend`` returns null: it was redelivered or
settled elsewhere) is no longer ours: ``ctx.cancelled`` tells its handler so.

Faults: when the database goes away the loop reconnects with capped exponential backoff
while handlers keep running. Outcomes that could not be reported are kept and reported
after reconnecting, as long as they are plausible (until one more visibility timeout after
the lease ran out); after that the job will be (or was) redelivered, so nothing is lost.
A report that reached the database but whose answer was lost is sent again; the fence makes
the duplicate a no-op (counted as stale), so no outcome is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import json
import logging
import os
import queue as queue_module
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from types import FrameType
from typing import Any

import psycopg

from pgmq_jobs.async_runner import EventLoopThread
from pgmq_jobs.outcomes import Permanent, Retry, error_text, timeout_text
from pgmq_jobs.registry import Handler, JobContext, Registry
from pgmq_jobs.tracing import job_span, record_failure
from pgmq_jobs.versions import check_compatible, read_schema_info
from pgmq_jobs.wakeup import Listener, backoff_delay

log = logging.getLogger("pgmq_jobs.worker")

Connection = psycopg.Connection[Any]
INFINITY = float("inf")

CLAIM_SQL = (
    "select job_id, attempt, max_attempts, payload, enqueued_at,"
    " extract(epoch from visible_until - clock_timestamp())::float8, pg_column_size(payload)"
    " from pgmq_jobs.claim(%s, %s, visibility_timeout => %s, worker => %s)"
)
COMPLETE_SQL = "select pgmq_jobs.complete(%s, %s::bigint[], %s::int[], %s::float8[])"
WAIT_SQL = "select pgmq_jobs.wait_for_jobs(%s, %s::text[], %s)"
WAITING_RECHECKS = (0.02, 0.1, 0.5)
"""Seconds after marking itself waiting at which a worker claims again (see _mark_waiting)."""
FAIL_BATCH_SQL = (
    "select job_id, outcome, extract(epoch from next_attempt_at - clock_timestamp())::float8"
    " from pgmq_jobs.fail_batch(%s, %s::bigint[], %s::int[], %s::text[], %s::interval[],"
    " %s::boolean[])"
)
FAIL_SQL = (
    "select outcome, extract(epoch from next_attempt_at - clock_timestamp())::float8"
    " from pgmq_jobs.fail(%s, %s, %s, %s, retry_after => %s, permanent => %s)"
)
EXTEND_SQL = "select pgmq_jobs.extend(%s, %s, %s, %s)"
RELEASE_SQL = "select pgmq_jobs.release(%s, %s::bigint[], %s::int[])"
HEARTBEAT_SQL = (
    "select pgmq_jobs.heartbeat(worker_id => %s, queues => %s, host => %s, pid => %s,"
    " jobs_done => %s, jobs_failed => %s, in_flight => %s, heartbeat_interval => %s,"
    " stopping => %s)"
)

CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)

AUTO_PREFETCH_SECONDS = 0.05
"""Automatic prefetch: hold at most this much work (at the measured handler pace) per thread."""
AUTO_PREFETCH_BYTES = 16 << 20
"""... and at most about this many bytes of payloads (at their measured average size)."""
AUTO_PREFETCH_MAX = 300
"""Automatic prefetch never exceeds this (or ``concurrency``, when that is larger)."""


@dataclass
class WorkerOptions:
    """How a worker runs; every field has a sensible default but ``queues``."""

    queues: list[str]
    concurrency: int = 10
    # Jobs claimed ahead of a free handler thread. They wait in the pool's queue, their
    # leases extended like running jobs, so the next claim's round trip overlaps with work
    # instead of leaving the threads idle. None: automatic, as many as concurrency, more for
    # fast handlers (see Worker._prefetch).
    prefetch: int | None = None
    poll_interval: float = 1.0
    listen: bool = True
    listen_dsn: str | None = None
    timeout: float | None = None  # default handler timeout (seconds) where a handler has none
    grace: float = 30.0
    heartbeat_interval: float = 5.0
    drain: bool = False
    max_seconds: float | None = None
    max_jobs: int | None = None
    prepared: bool = False  # server-side prepared statements (not behind transaction pooling)
    reconnect_cap: float = 5.0
    extend_fraction: float = 0.5
    worker_id: str | None = None

    def check(self) -> None:
        """Reject nonsense with a message naming the option."""
        if not self.queues:
            raise ValueError("give at least one queue")
        if self.concurrency < 1 or self.concurrency > 1000:
            raise ValueError(f"concurrency must be 1..1000, got {self.concurrency}")
        if self.prefetch is not None and not 0 <= self.prefetch <= 1000:
            raise ValueError(f"prefetch must be 0..1000, got {self.prefetch}")
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {self.poll_interval}")
        if not 0 < self.extend_fraction < 1:
            raise ValueError(f"extend_fraction must be in (0, 1), got {self.extend_fraction}")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValueError(f"max_jobs must be positive, got {self.max_jobs}")


@dataclass
class Summary:
    """What a run did. ``failed`` counts failed attempts reported (retried or dead),
    ``dead`` those that went to the dead-letter queue, ``released`` prefetched jobs given
    back unstarted at a stop, ``stale`` outcomes the database ignored because the delivery
    had been superseded (or was already reported)."""

    claimed: int = 0
    released: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0
    stale: int = 0
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "seconds": round(self.seconds, 3)})


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
    thread: PoolThread | None = None


@dataclass(eq=False)
class Report:
    """An outcome waiting to be reported: release when ``released`` (never started),
    else complete when ``error`` is None, else fail."""

    delivery: Delivery
    error: str | None = None
    retry_after: timedelta | None = None
    permanent: bool = False
    duration_ms: float | None = None
    released: bool = False

    def plausible(self, now: float) -> bool:
        """Still worth reporting: within one more lease after the lease ran out."""
        return now <= self.delivery.lease_until + self.delivery.lease


# ---------------------------------------------------------------- handler threads


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


# ---------------------------------------------------------------- the worker


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs the handlers of ``registry`` for ``options.queues`` until stopped or drained."""

    def __init__(self, dsn: str, registry: Registry, options: WorkerOptions) -> None:
        options.check()
        self.dsn = dsn
        self.options = options
        self.handlers = registry.for_queues(list(options.queues))
        self.worker_id = options.worker_id or default_worker_id()
        self.summary = Summary()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_requested = threading.Event()
        self._reports: list[Report] = []
        self._pace: float | None = None  # handler seconds per job, moving average
        self._payload_bytes: float | None = None  # payload size, moving average
        self._active: dict[tuple[str, int, int], Delivery] = {}
        self._ready: set[str] = set(options.queues)
        self._wakes: dict[str, int] = dict.fromkeys(options.queues, 0)
        # Queues this worker is marked waiting for (enqueues then NOTIFY; see wait_for_jobs).
        self._waiting: set[str] = set()
        self._order: deque[str] = deque(options.queues)
        # (when, queue, a retry of ours?): a queue to look at again at that time.
        self._timers: list[tuple[float, str, bool]] = []
        self._conn: Connection | None = None
        self._failures = 0
        self._reconnect_at = 0.0
        self._claiming = True
        self._grace_end: float | None = None
        self._started = time.monotonic()
        self._next_poll = INFINITY
        self._next_beat = 0.0
        self._pool: HandlerPool | None = None
        self._event_loop: EventLoopThread[Delivery] | None = None
        self._listener: Listener | None = None
        self._schema_checked = False

    # ------------------------------------------------------------ public API

    def run(self) -> Summary:
        """Work until stopped (or drained, in drain mode); returns what was done."""
        self._start()
        try:
            while not self._done():
                self._wake.clear()
                self._step()
                if not self._done():
                    self._wake.wait(self._wait_time())
            self._finish()
        except BaseException:
            self._beat_quietly(stopping=True)
            raise
        finally:
            self._close()
        self.summary.seconds = time.monotonic() - self._started
        return self.summary

    def stop(self) -> None:
        """Stop claiming; in-flight jobs finish within the grace period (thread-safe)."""
        self._stop_requested.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second signal exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    @property
    def in_flight(self) -> int:
        return len(self._active)

    # ------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        self._started = time.monotonic()
        self._next_poll = self._started + self.options.poll_interval
        if any(not h.is_async for h in self.handlers.values()):
            self._pool = HandlerPool(self.options.concurrency, self._execute)
        if any(h.is_async for h in self.handlers.values()):
            self._event_loop = EventLoopThread(
                self.options.concurrency,
                self._execute_async,
                name=f"pgmq-jobs-event-loop-{self.worker_id}",
            )
            self._event_loop.start()
        if self.options.listen:
            listen_dsn = self.options.listen_dsn or self.dsn
            self._listener = Listener(
                listen_dsn,
                self.options.queues,
                self._on_wake,
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
        for delivery in list(self._active.values()):
            log.warning(
                "job %d (attempt %d) of %s still running at exit; it will be redelivered "
                "after its visibility timeout",
                delivery.job_id,
                delivery.attempt,
                delivery.queue,
            )
        try:
            conn = self._connection()
            self._flush(conn)
            self._beat(conn, stopping=True)
        except psycopg.Error as exc:
            log.warning("could not report at exit (%s); unreported jobs will be redelivered", exc)

    def _beat_quietly(self, *, stopping: bool) -> None:
        """A last heartbeat on the way out after an error, if the connection still works."""
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._beat(self._conn, stopping=stopping)

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        if self._pool is not None:
            self._pool.shutdown()
        if self._event_loop is not None:
            self._event_loop.shutdown()
        self._drop_connection()

    # ------------------------------------------------------------ the loop

    def _step(self) -> None:
        now = time.monotonic()
        self._expire_overdue(now)
        self._fire_timers(now)
        self._poll_if_due(now)
        self._check_limits(now)
        if self._conn is None and now < self._reconnect_at:
            return
        try:
            conn = self._connection()
            self._flush(conn)
            self._extend_due(conn, now)
            if now >= self._next_beat:
                self._beat(conn)
            if self._claiming:
                self._claim(conn)
        except CONNECTION_ERRORS as exc:
            self._connection_lost(exc)

    def _done(self) -> bool:
        now = time.monotonic()
        if self._grace_end is not None and now >= self._grace_end:
            return True
        if self._claiming:
            return self.options.drain and self._conn is not None and self._idle()
        return not self._active and not self._reports

    def _idle(self) -> bool:
        """Nothing running, unreported or ready, and no retry of ours falling due within the
        time budget: a drain waits for the retries it scheduled rather than leave them (but
        not for the wake-up rechecks of an emptied queue)."""
        now, budget_end = time.monotonic(), self._budget_end()
        with self._lock:
            due = any(
                when <= now or (retry and when <= budget_end) for when, _, retry in self._timers
            )
            return not (self._active or self._reports or self._ready or due)

    def _wait_time(self) -> float:
        now = time.monotonic()
        if self._conn is None:
            wake_at = [self._reconnect_at]
        elif self._reports or (self._claiming and self._ready and self._free() > 0):
            return 0.0
        else:
            wake_at = [self._next_beat, *(d.extend_at for d in self._snapshot())]
        wake_at += [self._next_poll, *(d.deadline or INFINITY for d in self._snapshot())]
        wake_at += [self._timers[0][0] if self._timers else INFINITY]
        wake_at += [self._grace_end or INFINITY, self._budget_end()]
        return min(max(min(wake_at) - now, 0.0), self.options.poll_interval)

    # ------------------------------------------------------------ wake-ups and limits

    def _on_wake(self, queue: str | None) -> None:
        queues = [queue] if queue else self.options.queues
        with self._lock:
            self._ready.update(queues)
            for name in queues:
                self._wakes[name] += 1
        self._wake.set()

    def _poll_if_due(self, now: float) -> None:
        if now >= self._next_poll:
            self._next_poll = now + self.options.poll_interval
            self._on_wake(None)

    def _fire_timers(self, now: float) -> None:
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                self._ready.add(heapq.heappop(self._timers)[1])

    def _add_timer(self, delay: float, queue: str, *, retry: bool = False) -> None:
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + max(delay, 0.0), queue, retry))

    def _budget_end(self) -> float:
        if self.options.max_seconds is None:
            return INFINITY
        return self._started + self.options.max_seconds

    def _check_limits(self, now: float) -> None:
        if not self._claiming:
            return
        if self._stop_requested.is_set():
            self._stop_claiming(now, "stop requested", give_back=True)
        elif now >= self._budget_end():
            why = f"time budget of {self.options.max_seconds:g}s spent"
            self._stop_claiming(now, why, give_back=True)
        elif self.options.max_jobs is not None and self.summary.claimed >= self.options.max_jobs:
            self._stop_claiming(now, f"claimed {self.options.max_jobs} jobs", give_back=False)

    def _stop_claiming(self, now: float, why: str, *, give_back: bool) -> None:
        """Claim nothing more; with ``give_back``, prefetched jobs no handler has started are
        released to the queue (attempt not used up) instead of run."""
        self._claiming = False
        self._grace_end = now + self.options.grace
        if give_back:
            unstarted = [
                *(self._pool.take_queued() if self._pool is not None else ()),
                *(self._event_loop.take_queued() if self._event_loop is not None else ()),
            ]
            for delivery in unstarted:
                self._settle(Report(delivery, released=True))
            if unstarted:
                log.info("%s: giving back %d prefetched job(s)", why, len(unstarted))
        if self._active:
            log.info("%s: finishing %d job(s) in flight", why, len(self._active))

    # ------------------------------------------------------------ connection

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=5,
                prepare_threshold=0 if self.options.prepared else None,
                application_name=f"pgmq-jobs worker {os.getpid()}",
            )
            if not self._schema_checked:
                self._check_schema(self._conn)
            if self._failures:
                log.info("database connection restored")
            self._failures = 0
            self._on_wake(None)
        return self._conn

    def _check_schema(self, conn: Connection) -> None:
        """The database's release against this package's, once, at the first connection:
        a newer compatible schema is a warning; anything else raises VersionError."""
        warning = check_compatible(read_schema_info(conn), who="this worker")
        if warning is not None:
            log.warning("%s", warning)
        self._schema_checked = True

    def _connection_lost(self, exc: Exception) -> None:
        self._failures += 1
        delay = backoff_delay(self._failures, cap=self.options.reconnect_cap)
        self._reconnect_at = time.monotonic() + delay
        self._drop_connection()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("database unavailable (%s); reconnecting in %.2fs", reason, delay)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    # ------------------------------------------------------------ claiming

    def _prefetch(self) -> int:
        """``--prefetch``, or automatic: at least ``concurrency``, and for fast handlers as
        many as the threads get through in AUTO_PREFETCH_SECONDS, within AUTO_PREFETCH_BYTES
        of payloads and AUTO_PREFETCH_MAX. Larger claims (and completions) mean fewer round
        trips per job, while a slow queue is never hoarded by one worker."""
        if self.options.prefetch is not None:
            return self.options.prefetch
        concurrency = self.options.concurrency
        if not self._pace:
            return concurrency
        fast = min(
            concurrency * AUTO_PREFETCH_SECONDS / self._pace,
            AUTO_PREFETCH_BYTES / max(self._payload_bytes or 0.0, 1.0),
            AUTO_PREFETCH_MAX,
        )
        return max(concurrency, int(fast))

    def _measure_pace(self, reports: list[Report]) -> None:
        durations = [r.duration_ms for r in reports if r.duration_ms is not None]
        if durations:
            self._pace = _moving_average(self._pace, sum(durations) / len(durations) / 1000)

    def _measure_payloads(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            size = sum(row[-1] for row in rows) / len(rows)
            self._payload_bytes = _moving_average(self._payload_bytes, size)

    def _free(self) -> int:
        free = self.options.concurrency + self._prefetch() - len(self._active)
        if self.options.max_jobs is not None:
            free = min(free, self.options.max_jobs - self.summary.claimed)
        return free

    def _claim(self, conn: Connection) -> None:
        self._order.rotate(-1)
        for queue in list(self._order):
            free = self._free()
            if free <= 0:
                return
            with self._lock:
                if queue not in self._ready:
                    continue
                wakes = self._wakes[queue]
            rows = self._claim_rows(conn, queue, free)
            for row in rows:
                self._start_delivery(queue, row)
            self._measure_payloads(rows)
            if len(rows) < free:
                self._mark_drained(queue, wakes)
            self._mark_waiting(conn, queue, claimed=len(rows), asked=free)

    def _mark_waiting(self, conn: Connection, queue: str, *, claimed: int, asked: int) -> None:
        """Ask producers for wake-ups while idle on ``queue``; stop asking under load.

        After a claim that drained the queue (fewer jobs than asked for) the worker marks
        itself waiting and claims again at once and
        shortly after: a producer whose transaction checked for waiting workers before the mark
        took effect sent no NOTIFY, and its job is picked up by those claims (or, for a very
        long transaction, by the poll). A full claim means the queue keeps it busy: it unmarks,
        and producers skip the NOTIFY, which serialises their commits."""
        if not self.options.listen:
            return
        if claimed < asked and queue not in self._waiting:
            conn.execute(WAIT_SQL, (self.worker_id, [queue], True))
            self._waiting.add(queue)
            self._on_wake(queue)
            for delay in WAITING_RECHECKS:
                self._add_timer(delay, queue)
        elif claimed >= asked and queue in self._waiting:
            conn.execute(WAIT_SQL, (self.worker_id, [queue], False))
            self._waiting.discard(queue)

    def _mark_drained(self, queue: str, wakes: int) -> None:
        """Nothing more is ready in ``queue``, unless a wake-up came in during the claim."""
        with self._lock:
            if self._wakes[queue] == wakes:
                self._ready.discard(queue)

    def _claim_rows(self, conn: Connection, queue: str, qty: int) -> list[tuple[Any, ...]]:
        handler = self.handlers[queue]
        vt = (
            None
            if handler.visibility_timeout is None
            else timedelta(seconds=handler.visibility_timeout)
        )
        return conn.execute(CLAIM_SQL, (queue, qty, vt, self.worker_id)).fetchall()

    def _start_delivery(self, queue: str, row: tuple[Any, ...]) -> None:
        job_id, attempt, max_attempts, payload, enqueued_at, lease, _ = row
        now = time.monotonic()
        lease = max(float(lease), 0.001)
        context = JobContext(queue, job_id, attempt, max_attempts, enqueued_at, self.worker_id)
        delivery = Delivery(
            queue,
            job_id,
            attempt,
            payload,
            self.handlers[queue],
            context,
            lease=lease,
            lease_until=now + lease,
            extend_at=now + lease * self.options.extend_fraction,
        )
        with self._lock:
            self._active[(queue, job_id, attempt)] = delivery
        self.summary.claimed += 1
        if delivery.handler.is_async:
            assert self._event_loop is not None
            self._event_loop.submit(delivery)
        else:
            assert self._pool is not None
            self._pool.submit(delivery)

    def _snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self._active.values())

    # ------------------------------------------------------------ running handlers

    def _execute(self, delivery: Delivery, thread: PoolThread) -> None:
        """Run one handler in a pool thread and settle its outcome."""
        delivery.thread = thread
        timeout = delivery.handler.timeout or self.options.timeout
        if timeout is not None:
            delivery.deadline = delivery.context.deadline = time.monotonic() + timeout
        report = self._run_handler(delivery)
        if not self._settle(report):
            _log_late_result(delivery)

    async def _execute_async(self, delivery: Delivery) -> None:
        """Await one ``async def`` handler on the event loop and settle its outcome; at its
        timeout it is reported as a sync handler is, and cancelled."""
        timeout = delivery.handler.timeout or self.options.timeout
        timer: asyncio.TimerHandle | None = None
        if timeout is not None:
            delivery.deadline = delivery.context.deadline = time.monotonic() + timeout
            timer = asyncio.get_running_loop().call_later(timeout, self._time_out, delivery)
        try:
            report = await self._run_async_handler(delivery)
        finally:
            if timer is not None:
                timer.cancel()
        if not self._settle(report):
            _log_late_result(delivery)

    @staticmethod
    def _run_handler(delivery: Delivery) -> Report:
        started = time.perf_counter()
        with job_span(delivery.queue, delivery.job_id, delivery.attempt) as span:
            try:
                result = delivery.handler.func(delivery.payload, delivery.context)
                if result is not None and inspect.isawaitable(result):
                    _refuse_awaitable(delivery.handler, result)
            except BaseException as exc:  # every failure is reported, even SystemExit
                record_failure(span, exc)
                report = _failure(delivery, exc)
            else:
                report = Report(delivery)
        # The handler's processing time: reported with a completion (queue_stats), and the
        # pace of the automatic prefetch, failed or not.
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    @staticmethod
    async def _run_async_handler(delivery: Delivery) -> Report:
        started = time.perf_counter()
        with job_span(delivery.queue, delivery.job_id, delivery.attempt) as span:
            try:
                await delivery.handler.func(delivery.payload, delivery.context)
            except BaseException as exc:  # CancelledError too: its outcome is a timeout's
                record_failure(span, exc)
                report = _failure(delivery, exc)
            else:
                report = Report(delivery)
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    def _settle(self, report: Report) -> bool:
        """Record the first outcome of a delivery; False if it was already settled."""
        delivery = report.delivery
        with self._lock:
            if delivery.settled:
                return False
            delivery.settled = True
            self._active.pop((delivery.queue, delivery.job_id, delivery.attempt), None)
            self._reports.append(report)
        self._wake.set()
        return True

    def _expire_overdue(self, now: float) -> None:
        for delivery in self._snapshot():
            if delivery.deadline is not None and now >= delivery.deadline:
                self._time_out(delivery)

    def _time_out(self, delivery: Delivery) -> None:
        """Report ``delivery`` as timed out (unless it is settled already), set its
        ``ctx.cancelled`` and free its slot: a fresh thread for a sync handler, a cancelled
        task for an async one. Thread-safe: the control thread and the event loop call it."""
        timeout = delivery.handler.timeout or self.options.timeout or 0.0
        if not self._settle(
            Report(delivery, timeout_text(timeout, delivery.job_id, delivery.attempt))
        ):
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
            if self._event_loop is not None:
                self._event_loop.cancel(delivery)
        elif delivery.thread is not None and self._pool is not None:
            self._pool.replace(delivery.thread)

    # ------------------------------------------------------------ reporting

    def _flush(self, conn: Connection) -> None:
        with self._lock:
            pending, self._reports = self._reports, []
        now = time.monotonic()
        pending = [r for r in pending if self._keep(r, now)]
        self._measure_pace(pending)
        try:
            released = [r for r in pending if r.released]
            self._report_by_queue(conn, pending, released, RELEASE_SQL, "released")
            completed = [r for r in pending if r.error is None and not r.released]
            self._report_by_queue(conn, pending, completed, COMPLETE_SQL, "completed", timed=True)
            self._report_failures(conn, pending)
        except CONNECTION_ERRORS:
            with self._lock:
                self._reports[:0] = pending
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

    def _report_by_queue(
        self,
        conn: Connection,
        pending: list[Report],
        reports: list[Report],
        sql: str,
        counter: str,
        *,
        timed: bool = False,
    ) -> None:
        """One ``release`` or ``complete`` call (``sql``) per queue for ``reports``: what it
        applied counts in ``summary.<counter>``, the rest as stale; reported entries leave
        ``pending``. ``timed``: the handlers' durations go along."""
        for queue, batch in _by_queue(reports).items():
            params = [
                queue,
                _array(r.delivery.job_id for r in batch),
                _array(r.delivery.attempt for r in batch),
            ]
            if timed:
                params.append(_array(r.duration_ms for r in batch))
            row = conn.execute(sql, params).fetchone()
            applied = int(row[0]) if row else 0
            setattr(self.summary, counter, getattr(self.summary, counter) + applied)
            self.summary.stale += len(batch) - applied
            _remove(pending, batch)

    def _report_failures(self, conn: Connection, pending: list[Report]) -> None:
        """One ``fail_batch`` call per queue; should it fail (a report it cannot take), the
        queue's failures go one by one so that the others are still recorded."""
        failed = [r for r in pending if r.error is not None]
        for queue, batch in _by_queue(failed).items():
            try:
                rows = conn.execute(
                    FAIL_BATCH_SQL,
                    (
                        queue,
                        _array(r.delivery.job_id for r in batch),
                        _array(r.delivery.attempt for r in batch),
                        [r.error for r in batch],
                        [r.retry_after for r in batch],
                        [r.permanent for r in batch],
                    ),
                ).fetchall()
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as exc:
                log.warning(
                    "could not report %d failures of %s at once (%s)", len(batch), queue, exc
                )
                for report in batch:
                    self._report_failure(conn, report)
            else:
                outcomes = {job_id: (outcome, delay) for job_id, outcome, delay in rows}
                for report in batch:
                    self._count_failure(report.delivery, *outcomes[report.delivery.job_id])
            _remove(pending, batch)

    def _report_failure(self, conn: Connection, report: Report) -> None:
        d = report.delivery
        params = (d.queue, d.job_id, d.attempt, report.error, report.retry_after, report.permanent)
        try:
            row = conn.execute(FAIL_SQL, params).fetchone()
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error as exc:
            log.error("could not report the failure of job %d of %s: %s", d.job_id, d.queue, exc)
            return
        outcome, delay = row if row else ("stale", None)
        self._count_failure(d, outcome, delay)

    def _count_failure(self, d: Delivery, outcome: str, delay: float | None) -> None:
        if outcome == "stale":
            self.summary.stale += 1
            return
        self.summary.failed += 1
        if outcome == "dead":
            self.summary.dead += 1
            log.info("job %d of %s moved to the dead-letter queue", d.job_id, d.queue)
        elif delay is not None:
            self._add_timer(delay, d.queue, retry=True)
            log.info(
                "job %d of %s attempt %d failed; retry in %.2fs",
                d.job_id,
                d.queue,
                d.attempt,
                delay,
            )

    # ------------------------------------------------------------ liveness

    def _extend_due(self, conn: Connection, now: float) -> None:
        for d in self._snapshot():
            if now < d.extend_at or d.settled:
                continue
            row = conn.execute(
                EXTEND_SQL, (d.queue, d.job_id, d.attempt, timedelta(seconds=d.lease))
            ).fetchone()
            if row is None or row[0] is None:
                d.extend_at = INFINITY
                d.context.cancelled.set()
                log.warning(
                    "job %d (attempt %d) of %s is no longer ours", d.job_id, d.attempt, d.queue
                )
                continue
            d.lease_until = time.monotonic() + d.lease
            d.extend_at = now + d.lease * self.options.extend_fraction

    def _beat(self, conn: Connection, *, stopping: bool = False) -> None:
        self._next_beat = time.monotonic() + self.options.heartbeat_interval
        params = (
            self.worker_id,
            list(self.options.queues),
            socket.gethostname(),
            os.getpid(),
            self.summary.completed,
            self.summary.failed,
            len(self._active),
            timedelta(seconds=self.options.heartbeat_interval),
            stopping,
        )
        try:
            conn.execute(HEARTBEAT_SQL, params)
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error as exc:
            log.warning("heartbeat failed: %s", exc)


def _failure(delivery: Delivery, exc: BaseException) -> Report:
    """The report of a handler that raised ``exc``: Retry and Permanent choose the outcome,
    anything else is an ordinary failed attempt."""
    if isinstance(exc, Retry):
        return Report(delivery, error_text(exc), retry_after=exc.after)
    if isinstance(exc, Permanent):
        return Report(delivery, error_text(exc), permanent=True)
    return Report(delivery, error_text(exc))


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


def _moving_average(last: float | None, value: float) -> float:
    """Exponentially weighted: the latest measurement counts for a fifth."""
    return value if last is None else 0.8 * last + 0.2 * value


def _array(numbers: Iterable[float | None]) -> str:
    """A PostgreSQL array literal of numbers: several times cheaper to send than a list,
    which the driver adapts element by element."""
    return "{" + ",".join("NULL" if n is None else repr(n) for n in numbers) + "}"


def _by_queue(reports: Iterable[Report]) -> dict[str, list[Report]]:
    grouped: dict[str, list[Report]] = {}
    for report in reports:
        grouped.setdefault(report.delivery.queue, []).append(report)
    return grouped


def _remove(items: list[Report], gone: Iterable[Report]) -> None:
    drop = {id(r) for r in gone}
    items[:] = [r for r in items if id(r) not in drop]


def run_worker(dsn: str, registry: Registry, options: WorkerOptions) -> Summary:
    """Run a worker in this thread with signal handling (as the CLI does)."""
    worker = Worker(dsn, registry, options)
    if threading.current_thread() is threading.main_thread():
        worker.install_signal_handlers()
    return worker.run()


# ---------------------------------------------------------------- several databases


@dataclass(frozen=True)
class Database:
    """One database of a sharded deployment: a name (for logs and worker ids), the DSN of
    its job connection and, optionally, a direct DSN for its LISTEN connection."""

    name: str
    dsn: str
    listen_dsn: str | None = None


QUEUES_PRESENT_SQL = (
    "select substr(c.relname, 3) from pg_catalog.pg_class as c"
    " join pg_catalog.pg_namespace as n on n.oid = c.relnamespace"
    " where n.nspname = 'pgmq' and c.relname = any(%s)"
)


def locate_queues(databases: list[Database], queues: list[str]) -> dict[str, list[str]]:
    """Which of ``queues`` each database holds: ``{database name: [queue, …]}``.

    Every queue must exist in exactly one database; otherwise a ValueError names the queue
    and the databases. A database holding none of them maps to an empty list.
    """
    found: dict[str, list[str]] = {}
    for db in databases:
        # The catalog (readable by every role) rather than pgmq_jobs.queues (admin only).
        with psycopg.connect(
            db.dsn, autocommit=True, connect_timeout=5, prepare_threshold=None
        ) as conn:
            rows = conn.execute(QUEUES_PRESENT_SQL, ([f"q_{q}" for q in queues],)).fetchall()
        present = {str(r[0]) for r in rows}
        found[db.name] = [q for q in queues if q in present]
    names = ", ".join(db.name for db in databases)
    for queue in queues:
        where = [name for name, held in found.items() if queue in held]
        if not where:
            raise ValueError(f"queue {queue} exists in none of the databases ({names})")
        if len(where) > 1:
            raise ValueError(
                f"queue {queue} exists in more than one database ({', '.join(where)}): "
                "a worker serves each queue from one database; run one worker per database"
            )
    return found


class WorkerGroup:
    """One :class:`Worker` per database, each in its own thread, stopped together.

    Each queue is bound to the database where it exists (:func:`locate_queues`). Every member
    keeps the single-database budget (one job connection, one LISTEN connection), so a
    process serving D databases holds at most 2·D connections (D with ``listen=False``).
    ``concurrency``, ``max_jobs`` and ``drain`` apply to each database separately; the
    summary adds them up. When one member fails, the others are stopped and its error is
    raised.
    """

    def __init__(self, databases: list[Database], registry: Registry, options: WorkerOptions):
        options.check()
        if len({db.name for db in databases}) != len(databases):
            raise ValueError("database names must be unique")
        placement = locate_queues(databases, list(options.queues))
        base_id = options.worker_id or default_worker_id()
        self.members: list[tuple[Database, Worker]] = []
        for db in databases:
            queues = placement[db.name]
            if not queues:
                log.warning("database %s holds none of the queues; not connecting to it", db.name)
                continue
            member_options = replace(
                options,
                queues=queues,
                worker_id=f"{base_id}@{db.name}",
                listen_dsn=db.listen_dsn,
            )
            self.members.append((db, Worker(db.dsn, registry, member_options)))
        self._stop_requested = threading.Event()
        self._errors: list[BaseException] = []

    def stop(self) -> None:
        """Stop every member gracefully (thread-safe)."""
        self._stop_requested.set()
        for _, worker in self.members:
            worker.stop()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second signal exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_requested.is_set():
            os._exit(128 + signum)
        self.stop()

    def _run_member(self, worker: Worker) -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced by run() in the calling thread
            self._errors.append(exc)
            self.stop()

    def run(self) -> Summary:
        """Run every member until all have stopped; the summed summary."""
        threads = [
            threading.Thread(
                target=self._run_member, args=(worker,), name=f"pgmq-jobs-db-{db.name}"
            )
            for db, worker in self.members
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        total = Summary()
        for _, worker in self.members:
            for name in ("claimed", "released", "completed", "failed", "dead", "stale"):
                setattr(total, name, getattr(total, name) + getattr(worker.summary, name))
            total.seconds = max(total.seconds, worker.summary.seconds)
        return total


def run_worker_group(
    databases: list[Database], registry: Registry, options: WorkerOptions
) -> Summary:
    """Run a :class:`WorkerGroup` in this thread with signal handling (as the CLI does)."""
    group = WorkerGroup(databases, registry, options)
    if threading.current_thread() is threading.main_thread():
        group.install_signal_handlers()
    return group.run()
