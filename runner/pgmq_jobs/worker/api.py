"""The worker's port to the database: :class:`WorkerApi`, the calls its parts make, and
:class:`DatabaseApi`, which makes them on one psycopg connection with the statements of
:mod:`pgmq_jobs.api.calls`.

The parts never see a connection or a statement: a fake with the same methods runs the
worker's loop without a database (``tests/fast``). Errors follow psycopg's: one of
:data:`CONNECTION_ERRORS` means the connection is gone (the loop reconnects and keeps
what it could not report); any other ``psycopg.Error`` is the database refusing a call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import psycopg

from pgmq_jobs.api import calls
from pgmq_jobs.api.sync import run
from pgmq_jobs.api.types import SchemaInfo

CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class Claimed(NamedTuple):
    """A claimed job as the worker needs it: its lease in seconds (from now) and the size
    of its payload (for the automatic prefetch)."""

    job_id: int
    attempt: int
    max_attempts: int
    payload: dict[str, Any]
    enqueued_at: datetime
    lease: float
    payload_bytes: int


class Failed(NamedTuple):
    """What ``fail`` did to one delivery: ``retry`` (in ``delay`` seconds), ``dead`` or
    ``stale``."""

    job_id: int
    outcome: str
    delay: float | None


@dataclass(frozen=True)
class Beat:
    """One heartbeat."""

    worker_id: str
    queues: Sequence[str]
    host: str
    pid: int
    jobs_done: int
    jobs_failed: int
    in_flight: int
    interval: float
    stopping: bool = False


class WorkerApi(Protocol):
    """The calls the worker makes, on one connection it (re)opens with :meth:`connect`."""

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def schema_info(self) -> SchemaInfo | None: ...

    def claim(
        self, queue: str, qty: int, visibility_timeout: float | None, worker_id: str
    ) -> list[Claimed]: ...

    def complete(
        self,
        queue: str,
        deliveries: Sequence[tuple[int, int]],
        durations_ms: Sequence[float | None],
    ) -> int: ...

    def release(self, queue: str, deliveries: Sequence[tuple[int, int]]) -> int: ...

    def fail_batch(
        self,
        queue: str,
        deliveries: Sequence[tuple[int, int]],
        errors: Sequence[str | None],
        retry_after: Sequence[timedelta | None],
        permanent: Sequence[bool],
    ) -> list[Failed]: ...

    def fail(
        self,
        queue: str,
        job_id: int,
        attempt: int,
        error: str | None,
        retry_after: timedelta | None,
        permanent: bool,
    ) -> Failed: ...

    def extend(
        self, queue: str, deliveries: Sequence[tuple[int, int]], leases: Sequence[float]
    ) -> list[tuple[int, int, bool]]:
        """Extend each delivery by its lease (seconds); (job_id, attempt, still ours)."""
        ...

    def snooze(self, queue: str, job_id: int, attempt: int, by: timedelta) -> bool:
        """True when the delivery was snoozed, False when it was stale."""
        ...

    def heartbeat(self, beat: Beat) -> None: ...

    def wait_for_jobs(self, worker_id: str, queues: Sequence[str], waiting: bool) -> None: ...

    def trace_contexts(self, queue: str, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The producers' trace contexts of claimed jobs, by job id (jobs without one are
        left out); asked only while OpenTelemetry traces."""
        ...


def _pairs(deliveries: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    return [d[0] for d in deliveries], [d[1] for d in deliveries]


class DatabaseApi:
    """:class:`WorkerApi` on a psycopg connection (autocommit: every call commits itself)."""

    def __init__(self, dsn: str, *, prepared: bool = False) -> None:
        self.dsn = dsn
        self.prepared = prepared
        self.conn: psycopg.Connection[Any] | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def connect(self) -> None:
        self.close()
        self.conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=5,
            prepare_threshold=0 if self.prepared else None,
            application_name=f"pgmq-jobs worker {os.getpid()}",
        )

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _conn(self) -> psycopg.Connection[Any]:
        if self.conn is None:
            raise psycopg.InterfaceError("the worker's connection is closed")
        return self.conn

    def schema_info(self) -> SchemaInfo | None:
        from pgmq_jobs.ops.versions import read_schema_info

        return read_schema_info(self._conn())

    def claim(
        self, queue: str, qty: int, visibility_timeout: float | None, worker_id: str
    ) -> list[Claimed]:
        vt = None if visibility_timeout is None else timedelta(seconds=visibility_timeout)
        rows = run(self._conn(), calls.worker_claim(queue, qty, vt, worker_id))
        return [Claimed._make(row) for row in rows]

    def complete(
        self,
        queue: str,
        deliveries: Sequence[tuple[int, int]],
        durations_ms: Sequence[float | None],
    ) -> int:
        ids, attempts = _pairs(deliveries)
        return run(self._conn(), calls.worker_complete(queue, ids, attempts, durations_ms))

    def release(self, queue: str, deliveries: Sequence[tuple[int, int]]) -> int:
        ids, attempts = _pairs(deliveries)
        return run(self._conn(), calls.worker_release(queue, ids, attempts))

    def fail_batch(
        self,
        queue: str,
        deliveries: Sequence[tuple[int, int]],
        errors: Sequence[str | None],
        retry_after: Sequence[timedelta | None],
        permanent: Sequence[bool],
    ) -> list[Failed]:
        ids, attempts = _pairs(deliveries)
        call = calls.worker_fail_batch(queue, ids, attempts, errors, retry_after, permanent)
        return [Failed._make(row) for row in run(self._conn(), call)]

    def fail(
        self,
        queue: str,
        job_id: int,
        attempt: int,
        error: str | None,
        retry_after: timedelta | None,
        permanent: bool,
    ) -> Failed:
        call = calls.worker_fail(queue, job_id, attempt, error, retry_after, permanent)
        row = run(self._conn(), call)
        return Failed(job_id, *row) if row else Failed(job_id, "stale", None)

    def extend(
        self, queue: str, deliveries: Sequence[tuple[int, int]], leases: Sequence[float]
    ) -> list[tuple[int, int, bool]]:
        ids, attempts = _pairs(deliveries)
        rows = run(self._conn(), calls.extend_batch(queue, ids, attempts, leases))
        return [(int(job_id), int(attempt), until is not None) for job_id, attempt, until in rows]

    def snooze(self, queue: str, job_id: int, attempt: int, by: timedelta) -> bool:
        return run(self._conn(), calls.snooze(queue, job_id, attempt, by)) is not None

    def heartbeat(self, beat: Beat) -> None:
        call = calls.heartbeat(
            beat.worker_id,
            beat.queues,
            host=beat.host,
            pid=beat.pid,
            jobs_done=beat.jobs_done,
            jobs_failed=beat.jobs_failed,
            in_flight=beat.in_flight,
            heartbeat_interval=timedelta(seconds=beat.interval),
            stopping=beat.stopping,
        )
        run(self._conn(), call)

    def wait_for_jobs(self, worker_id: str, queues: Sequence[str], waiting: bool) -> None:
        run(self._conn(), calls.wait_for_jobs(worker_id, queues, waiting))

    def trace_contexts(self, queue: str, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        rows = run(self._conn(), calls.worker_trace_contexts(queue, job_ids))
        return {int(job_id): context for job_id, context in rows}
