"""An in-memory :class:`~pgmq_jobs.worker.api.WorkerApi`: queues of jobs with PGMQ's rules
as the worker sees them (a claim hides a job for its lease and counts an attempt; every
outcome is fenced by the attempt), and a record of every call, for the fast tier."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgmq_jobs.api.types import SchemaInfo
from pgmq_jobs.ops.versions import PACKAGE_VERSION
from pgmq_jobs.worker.api import Beat, Claimed, Failed


@dataclass
class FakeJob:
    job_id: int
    payload: dict[str, Any]
    attempt: int = 0  # deliveries so far (PGMQ read_ct)
    visible_at: float = 0.0
    state: str = "waiting"  # waiting | in_flight | completed | dead | cancelled
    errors: list[str] = field(default_factory=list)
    trace_context: dict[str, str] | None = None  # the producer's (enqueue's trace_context)


class FakeApi:
    """Jobs per queue, leases of ``lease`` seconds, ``max_attempts`` attempts, retries
    after ``retry_delay``. ``errors``: exceptions to raise, one per call, from the named
    method on (e.g. ``{"claim": [psycopg.OperationalError("gone")]}``)."""

    def __init__(self, lease: float = 30.0, max_attempts: int = 3, retry_delay: float = 0.0):
        self.lease = lease
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.lock = threading.RLock()
        self.jobs: dict[str, dict[int, FakeJob]] = {}
        self.next_id = 1
        self.conn_open = False
        self.connects = 0
        self.errors: dict[str, list[Exception]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.extended = threading.Condition(self.lock)

    # ------------------------------------------------------------ test set-up and reading

    def add_jobs(
        self,
        queue: str,
        payloads: Sequence[dict[str, Any]],
        trace_context: dict[str, str] | None = None,
    ) -> list[int]:
        with self.lock:
            ids = []
            for payload in payloads:
                job = FakeJob(self.next_id, payload, trace_context=trace_context)
                self.jobs.setdefault(queue, {})[job.job_id] = job
                ids.append(job.job_id)
                self.next_id += 1
            return ids

    def job(self, queue: str, job_id: int) -> FakeJob:
        return self.jobs[queue][job_id]

    def cancel(self, queue: str, job_id: int) -> None:
        with self.lock:
            self.jobs[queue][job_id].state = "cancelled"

    def called(self, name: str) -> list[Any]:
        """The arguments of every call of ``name``, in order."""
        with self.lock:
            return [args for call, args in self.calls if call == name]

    def states(self, queue: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs.get(queue, {}).values():
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts

    # ------------------------------------------------------------ plumbing

    def _enter(self, name: str, args: Any) -> None:
        if not self.conn_open:
            raise psycopg.InterfaceError("the connection is closed")
        pending = self.errors.get(name)
        if pending:
            error = pending.pop(0)
            if isinstance(error, psycopg.OperationalError):
                self.conn_open = False
            raise error
        self.calls.append((name, args))

    def _open(self, queue: str, job_id: int, attempt: int) -> FakeJob | None:
        job = self.jobs.get(queue, {}).get(job_id)
        if job is None or job.state != "in_flight" or job.attempt != attempt:
            return None
        return job

    # ------------------------------------------------------------ WorkerApi

    @property
    def connected(self) -> bool:
        return self.conn_open

    def connect(self) -> None:
        with self.lock:
            pending = self.errors.get("connect")
            if pending:
                raise pending.pop(0)
            self.conn_open = True
            self.connects += 1

    def close(self) -> None:
        self.conn_open = False

    def schema_info(self) -> SchemaInfo | None:
        return SchemaInfo(PACKAGE_VERSION, PACKAGE_VERSION)

    def claim(
        self, queue: str, qty: int, visibility_timeout: float | None, worker_id: str
    ) -> list[Claimed]:
        with self.lock:
            self._enter("claim", (queue, qty))
            now = time.monotonic()
            lease = visibility_timeout or self.lease
            rows = []
            for job in self.jobs.get(queue, {}).values():
                if len(rows) >= qty:
                    break
                if job.state == "waiting" and job.visible_at <= now:
                    job.state, job.attempt = "in_flight", job.attempt + 1
                    job.visible_at = now + lease
                    rows.append(
                        Claimed(
                            job.job_id,
                            job.attempt,
                            self.max_attempts,
                            job.payload,
                            datetime.now(UTC),
                            lease,
                            len(repr(job.payload)),
                        )
                    )
            return rows

    def complete(
        self,
        queue: str,
        deliveries: Sequence[tuple[int, int]],
        durations_ms: Sequence[float | None],
    ) -> int:
        with self.lock:
            self._enter("complete", (queue, list(deliveries)))
            applied = 0
            for job_id, attempt in deliveries:
                job = self._open(queue, job_id, attempt)
                if job is not None:
                    job.state = "completed"
                    applied += 1
            return applied

    def release(self, queue: str, deliveries: Sequence[tuple[int, int]]) -> int:
        with self.lock:
            self._enter("release", (queue, list(deliveries)))
            applied = 0
            for job_id, attempt in deliveries:
                job = self._open(queue, job_id, attempt)
                if job is not None:
                    job.state, job.attempt, job.visible_at = "waiting", job.attempt - 1, 0.0
                    applied += 1
            return applied

    def _fail(
        self,
        queue: str,
        job_id: int,
        attempt: int,
        error: str | None,
        retry_after: timedelta | None,
        permanent: bool,
    ) -> Failed:
        job = self._open(queue, job_id, attempt)
        if job is None:
            return Failed(job_id, "stale", None)
        job.errors.append(error or "")
        if permanent or job.attempt >= self.max_attempts:
            job.state = "dead"
            return Failed(job_id, "dead", None)
        delay = self.retry_delay if retry_after is None else retry_after.total_seconds()
        job.state, job.visible_at = "waiting", time.monotonic() + delay
        return Failed(job_id, "retry", delay)

    def fail_batch(
        self,
        queue: str,
        deliveries: Sequence[tuple[int, int]],
        errors: Sequence[str | None],
        retry_after: Sequence[timedelta | None],
        permanent: Sequence[bool],
    ) -> list[Failed]:
        with self.lock:
            self._enter("fail_batch", (queue, list(deliveries)))
            return [
                self._fail(queue, job_id, attempt, error, after, perm)
                for (job_id, attempt), error, after, perm in zip(
                    deliveries, errors, retry_after, permanent, strict=True
                )
            ]

    def fail(
        self,
        queue: str,
        job_id: int,
        attempt: int,
        error: str | None,
        retry_after: timedelta | None,
        permanent: bool,
    ) -> Failed:
        with self.lock:
            self._enter("fail", (queue, job_id, attempt))
            return self._fail(queue, job_id, attempt, error, retry_after, permanent)

    def extend(
        self, queue: str, deliveries: Sequence[tuple[int, int]], leases: Sequence[float]
    ) -> list[tuple[int, int, bool]]:
        with self.lock:
            self._enter("extend", (queue, list(deliveries)))
            now = time.monotonic()
            rows = []
            for (job_id, attempt), lease in zip(deliveries, leases, strict=True):
                job = self._open(queue, job_id, attempt)
                if job is not None:
                    job.visible_at = now + lease
                rows.append((job_id, attempt, job is not None))
            self.extended.notify_all()
            return rows

    def snooze(self, queue: str, job_id: int, attempt: int, by: timedelta) -> bool:
        with self.lock:
            self._enter("snooze", (queue, job_id, attempt, by))
            job = self._open(queue, job_id, attempt)
            if job is None:
                return False
            job.state, job.attempt = "waiting", job.attempt - 1
            job.visible_at = time.monotonic() + by.total_seconds()
            return True

    def heartbeat(self, beat: Beat) -> None:
        with self.lock:
            self._enter("heartbeat", beat)

    def wait_for_jobs(self, worker_id: str, queues: Sequence[str], waiting: bool) -> None:
        with self.lock:
            self._enter("wait_for_jobs", (list(queues), waiting))

    def trace_contexts(self, queue: str, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        with self.lock:
            self._enter("trace_contexts", (queue, list(job_ids)))
            jobs = self.jobs.get(queue, {})
            return {
                job_id: dict(context)
                for job_id in job_ids
                if job_id in jobs and (context := jobs[job_id].trace_context) is not None
            }
