"""What the dashboard reads and does, over a small connection pool.

Every statement comes from :mod:`pgmq_jobs.api` (no SQL is written here). Page loads run in
read-only transactions with a statement timeout and read only the public views and
functions: ``queue_stats``, ``alerts``, ``queue_history``, ``workers``, ``schedules``,
``audit``, ``queues``, ``dead_letters()``, ``failing_jobs()``, ``list_jobs()`` and ``job()``.
Actions call ``replay()``, ``purge_dead_letters()``, ``cancel()`` and ``reschedule()``, which
write the audit trail themselves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from pgmq_jobs.api import sync as api
from pgmq_jobs.api.types import JobInfo
from pgmq_jobs.web.dashboard.errors import group

JOB_STATES = ("waiting", "delayed", "in_flight", "retrying")
"""The states the queue page lists jobs in (``list_jobs``)."""

DEAD_ORDERS = ("newest", "oldest")
"""The orders of the queue page's dead letters; the first is the default."""

GROUPED = 500
"""The error groups count the last errors of this many of the newest dead letters and of the
failing jobs (``failing_jobs``, the most recently failed first)."""

QUEUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,46}")
"""Queue names as ``pgmq_jobs`` accepts them; anything else is a 404 before any query."""

APPLICATION_NAME = "pgmq-jobs dashboard"

log = logging.getLogger("pgmq_jobs.dashboard")


@dataclass(frozen=True, slots=True)
class Range:
    """A chart range: ``buckets`` buckets of ``step``."""

    key: str
    label: str
    step: timedelta
    buckets: int


RANGES = {
    "1h": Range("1h", "last hour", timedelta(minutes=1), 60),
    "24h": Range("24h", "last day", timedelta(minutes=15), 96),
}


@dataclass
class History:
    """``queue_history`` rows of one queue and range, in time order."""

    start: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)


def next_run(expr: str, after: datetime) -> datetime | None:
    """The next fire time of a cron expression by ``plpy/pgmq_jobs_plpy/cron.py`` run as plain
    Python (what ``schedules.next_run_at`` uses inside the database); None if unavailable."""
    try:
        from pgmq_jobs.ops.plpython import load_plain

        runs = load_plain("cron").next_runs(expr, 1, after)
    except Exception as exc:  # an unsupported expression or a missing module: show nothing
        log.debug("no next run for %r: %s", expr, exc)
        return None
    return runs[0] if runs else None


class Database:
    """A lazily opened pool of up to ``max_size`` connections to ``dsn``."""

    def __init__(self, dsn: str, *, statement_timeout: float = 10.0, max_size: int = 4) -> None:
        self.dsn = dsn
        self.statement_timeout_ms = int(statement_timeout * 1000)
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            kwargs={"application_name": APPLICATION_NAME, "connect_timeout": 5},
            check=ConnectionPool.check_connection,
            open=False,
            name="pgmq-jobs-dashboard",
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def read(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a read-only transaction (rolled back at the end)."""
        with self.pool.connection(timeout=5) as conn:
            conn.read_only = True
            try:
                api.local_statement_timeout(conn, self.statement_timeout_ms)
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a read-write transaction, committed when the block succeeds."""
        with self.pool.connection(timeout=5) as conn:
            conn.read_only = False
            try:
                with conn.transaction():
                    api.local_statement_timeout(conn, self.statement_timeout_ms)
                    yield conn
            finally:
                conn.read_only = True

    # ------------------------------------------------------------ pages

    def overview(self) -> dict[str, Any]:
        with self.read() as conn:
            stats = api.queue_stats(conn)
            alerts = sorted(
                api.alerts(conn),
                key=lambda a: (a["queue"] is not None, a["queue"] or "", a["alert"]),
            )
            workers = api.worker_counts(conn)
            start = api.current_minute(conn) - timedelta(minutes=59)
            spark = api.queue_history(conn, start)
        return {
            "stats": stats,
            "alerts": alerts,
            "workers": workers,
            "spark_start": start,
            "spark": spark,
        }

    def queue(
        self,
        queue: str,
        rng: Range,
        *,
        error_text: str | None,
        limit: int,
        state: str,
        order: str = DEAD_ORDERS[0],
    ) -> dict[str, Any] | None:
        with self.read() as conn:
            stats = api.queue_stat(conn, queue)
            if stats is None:
                return None
            settings = next((q for q in api.queues(conn) if q["queue"] == queue), {})
            alerts = sorted(
                (a for a in api.alerts(conn) if a["queue"] == queue), key=lambda a: a["alert"]
            )
            history = self._history(conn, queue, rng)
            recent = api.dead_letters(
                conn, queue, 10, newer_than=timedelta(hours=1), newest_first=True
            )
            letters = api.dead_letters(
                conn, queue, limit, error_text=error_text or None, newest_first=order != "oldest"
            )
            groups = group(
                api.dead_letters(conn, queue, GROUPED, newest_first=True),
                api.failing_jobs(conn, queue, GROUPED),
            )
            jobs = api.list_jobs(conn, queue, state, 100)
        return {
            "stats": stats,
            "settings": settings,
            "alerts": alerts,
            "history": history,
            "recent": recent,
            "letters": letters,
            "groups": groups,
            "jobs": jobs,
        }

    def _history(self, conn: psycopg.Connection[Any], queue: str, rng: Range) -> History:
        minute = api.current_minute(conn)
        step = rng.step.total_seconds()
        bucket = datetime.fromtimestamp((minute.timestamp() // step) * step, tz=minute.tzinfo)
        start = bucket - rng.step * (rng.buckets - 1)
        return History(start, api.queue_history(conn, start, queue))

    def job(self, queue: str, job_id: int) -> tuple[JobInfo | None, bool]:
        """The job, and whether the queue exists."""
        with self.read() as conn:
            if not any(q["queue"] == queue for q in api.queues(conn)):
                return None, False
            return api.job(conn, queue, job_id), True

    def workers(self, include_gone: bool) -> list[dict[str, Any]]:
        with self.read() as conn:
            return api.workers(conn, include_gone)

    def schedules(self) -> list[dict[str, Any]]:
        """The ``schedules`` view; where the database cannot compute ``next_run_at`` (no
        PL/Python support installed), the same plain-Python cron code computes it here
        (``next_run_source`` says which; pg_cron's clock is UTC)."""
        with self.read() as conn:
            rows = [dict(r) for r in api.schedules(conn)]
            now = api.time_from_now(conn, "0 seconds")
        for r in rows:
            r["next_run_source"] = "database" if r["next_run_at"] is not None else None
            if r["next_run_at"] is None and r["active"]:
                r["next_run_at"] = next_run(r["cron"], now)
                r["next_run_source"] = "dashboard" if r["next_run_at"] else None
        return rows

    def audit(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.read() as conn:
            return api.audit(conn, None, limit)

    # ------------------------------------------------------------ actions

    def replay(self, queue: str, dead_ids: Sequence[int] | None) -> int:
        with self.write() as conn:
            return api.replay(conn, queue, dead_ids)

    def purge(
        self, queue: str, *, older_than: timedelta | None, dead_ids: Sequence[int] | None
    ) -> int:
        with self.write() as conn:
            return api.purge_dead_letters(conn, queue, older_than, dead_ids)

    def cancel(self, queue: str, job_ids: Sequence[int]) -> int:
        with self.write() as conn:
            return api.cancel(conn, queue, job_ids)

    def run_now(self, queue: str, job_ids: Sequence[int]) -> int:
        """Reschedule the jobs to the database's now (waiting, delayed and retrying ones)."""
        with self.write() as conn:
            return api.reschedule(conn, queue, job_ids, api.time_from_now(conn, "0 seconds"))
