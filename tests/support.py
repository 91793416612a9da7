"""Small helpers shared by the SQL and runner tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

T = TypeVar("T")

TESTS_DIR = Path(__file__).resolve().parent
"""tests/: the helpers (support, dbutil, apps, ...) live here; test modules one level down."""
ROOT = TESTS_DIR.parent
"""The repository."""


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    """The server's clock (clock_timestamp, not the transaction start)."""
    row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def make_visible(conn: psycopg.Connection[Any], queue: str, job_id: int) -> None:
    """Fast-forward the clock for one job: make it visible now (test-only time travel)."""
    conn.execute(
        sql.SQL("update pgmq.{} set vt = clock_timestamp() where msg_id = %s").format(
            sql.Identifier(f"q_{queue}")
        ),
        (job_id,),
    )


def queue_rows(conn: psycopg.Connection[Any], queue: str, table: str = "q") -> list[dict[str, Any]]:
    """Raw PGMQ rows of a queue's table (q, a, or the dead-letter q) for assertions."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "select msg_id, read_ct, vt, message, headers from pgmq.{} order by msg_id"
            ).format(sql.Identifier(f"{table}_{queue}"))
        )
        return list(cur.fetchall())


def drain_command(conn: psycopg.Connection[Any], queue: str, seconds: float) -> str:
    """The DO block that pg_cron's pgmq_jobs_process_<queue> job runs, with a budget of
    ``seconds`` (the job itself uses 55): run it on an autocommit connection."""
    row = conn.execute("select pgmq_jobs._drain_command(%s, %s)", (queue, seconds)).fetchone()
    assert row is not None
    return str(row[0])
