"""What the dashboard reads and does, over a small connection pool.

Page loads run in read-only transactions (``BEGIN READ ONLY`` and a statement timeout) and
read only the public views and functions: ``queue_stats``, ``alerts``, ``queue_history``,
``workers``, ``schedules``, ``audit``, ``queues`` and ``dead_letters()``. Actions call
``replay()`` and ``purge_dead_letters()``, which write the audit trail themselves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pgmq_jobs import client

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
        from pgmq_jobs.plpython import load_plain

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
        self._purge_ids: bool | None = None

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def read(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """A cursor in a read-only transaction (rolled back at the end)."""
        with self.pool.connection(timeout=5) as conn:
            conn.read_only = True
            try:
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(
                        "select set_config('statement_timeout', %s, true)",
                        (str(self.statement_timeout_ms),),
                    )
                    yield cur
            finally:
                conn.rollback()

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a read-write transaction, committed when the block succeeds."""
        with self.pool.connection(timeout=5) as conn:
            conn.read_only = False
            try:
                with conn.transaction():
                    conn.execute(
                        "select set_config('statement_timeout', %s, true)",
                        (str(self.statement_timeout_ms),),
                    )
                    yield conn
            finally:
                conn.read_only = True

    # ------------------------------------------------------------ pages

    def overview(self) -> dict[str, Any]:
        with self.read() as cur:
            stats = list(cur.execute("select * from pgmq_jobs.queue_stats order by queue"))
            alerts = list(
                cur.execute("select * from pgmq_jobs.alerts order by queue nulls first, alert")
            )
            workers = {
                r["status"]: int(r["n"])
                for r in cur.execute(
                    "select status, count(*) as n from pgmq_jobs.workers group by status"
                )
            }
            row = cur.execute(
                "select date_trunc('minute', statement_timestamp()) - interval '59 minutes' as s"
            ).fetchone()
            assert row is not None
            start: datetime = row["s"]
            spark = list(
                cur.execute(
                    "select queue, minute, completed from pgmq_jobs.queue_history"
                    " where minute >= %s order by queue, minute",
                    (start,),
                )
            )
        return {
            "stats": stats,
            "alerts": alerts,
            "workers": workers,
            "spark_start": start,
            "spark": spark,
        }

    def queue(
        self, queue: str, rng: Range, *, error_text: str | None, limit: int
    ) -> dict[str, Any] | None:
        with self.read() as cur:
            stats = cur.execute(
                "select * from pgmq_jobs.queue_stats where queue = %s", (queue,)
            ).fetchone()
            if stats is None:
                return None
            settings = cur.execute(
                "select * from pgmq_jobs.queues where queue = %s", (queue,)
            ).fetchone()
            alerts = list(
                cur.execute(
                    "select * from pgmq_jobs.alerts where queue = %s order by alert", (queue,)
                )
            )
            history = self._history(cur, queue, rng)
            conn = cur.connection
            recent = client.dead_letters(conn, queue, 1000, newer_than=timedelta(hours=1))[-10:]
            recent.reverse()
            letters = client.dead_letters(conn, queue, limit, error_text=error_text or None)
            workers = list(
                cur.execute(
                    "select * from pgmq_jobs.workers where %s = any(queues) and status <> 'gone'"
                    " order by worker_id",
                    (queue,),
                )
            )
            purge_ids = self._purge_takes_ids(cur)
        return {
            "stats": stats,
            "settings": settings or {},
            "alerts": alerts,
            "history": history,
            "recent": recent,
            "letters": letters,
            "workers": workers,
            "purge_ids": purge_ids,
        }

    def _history(self, cur: psycopg.Cursor[dict[str, Any]], queue: str, rng: Range) -> History:
        row = cur.execute(
            "select to_timestamp(floor(extract(epoch from statement_timestamp()) / %(s)s) * %(s)s)"
            " - %(span)s as start",
            {"s": rng.step.total_seconds(), "span": rng.step * (rng.buckets - 1)},
        ).fetchone()
        assert row is not None
        start: datetime = row["start"]
        rows = list(
            cur.execute(
                "select minute, completed, retried, dead, expired, duration_count,"
                " duration_ms_sum, duration_buckets, ready, in_flight, delayed, dead_letters"
                " from pgmq_jobs.queue_history where queue = %s and minute >= %s order by minute",
                (queue, start),
            )
        )
        return History(start, rows)

    def _purge_takes_ids(self, cur: psycopg.Cursor[dict[str, Any]]) -> bool:
        """Whether this database's purge_dead_letters can purge chosen dead letters
        (a ``dead_ids`` argument); without it only all / older-than purges are offered."""
        if self._purge_ids is None:
            row = cur.execute(
                "select exists (select from pg_catalog.pg_proc as p"
                " join pg_catalog.pg_namespace as n on n.oid = p.pronamespace"
                " where n.nspname = 'pgmq_jobs' and p.proname = 'purge_dead_letters'"
                " and 'dead_ids' = any(p.proargnames)) as ok"
            ).fetchone()
            self._purge_ids = bool(row and row["ok"])
        return self._purge_ids

    def workers(self, include_gone: bool) -> list[dict[str, Any]]:
        with self.read() as cur:
            return list(
                cur.execute(
                    "select * from pgmq_jobs.workers where %s or status <> 'gone'"
                    " order by case status when 'stale' then 0 when 'alive' then 1 else 2 end,"
                    " last_seen_at desc",
                    (include_gone,),
                )
            )

    def schedules(self) -> list[dict[str, Any]]:
        """The ``schedules`` view; where the database cannot compute ``next_run_at`` (no
        PL/Python support installed), the same plain-Python cron code computes it here
        (``next_run_source`` says which; pg_cron's clock is UTC)."""
        with self.read() as cur:
            rows = [dict(r) for r in cur.execute("select * from pgmq_jobs.schedules order by name")]
            row = cur.execute("select statement_timestamp() as now").fetchone()
        now: datetime = row["now"] if row else datetime.now(UTC)
        for r in rows:
            r["next_run_source"] = "database" if r["next_run_at"] is not None else None
            if r["next_run_at"] is None and r["active"]:
                r["next_run_at"] = next_run(r["cron"], now)
                r["next_run_source"] = "dashboard" if r["next_run_at"] else None
        return rows

    def audit(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.read() as cur:
            return list(
                cur.execute("select * from pgmq_jobs.audit order by id desc limit %s", (limit,))
            )

    def queue_names(self) -> list[str]:
        with self.read() as cur:
            return [
                r["queue"] for r in cur.execute("select queue from pgmq_jobs.queues order by 1")
            ]

    # ------------------------------------------------------------ actions

    def replay(self, queue: str, dead_ids: Sequence[int] | None) -> int:
        with self.write() as conn:
            return client.replay(conn, queue, dead_ids)

    def purge(
        self, queue: str, *, older_than: timedelta | None, dead_ids: Sequence[int] | None
    ) -> int:
        with self.write() as conn:
            if dead_ids is not None:
                row = conn.execute(
                    "select pgmq_jobs.purge_dead_letters(%s, dead_ids => %s::bigint[])",
                    (queue, list(dead_ids)),
                ).fetchone()
                return int(row[0]) if row else 0
            return client.purge_dead_letters(conn, queue, older_than)
