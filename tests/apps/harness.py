"""Helpers for tests that run real ``pgmq-jobs worker`` processes with the ledger app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from apps.ledger_app import LEDGER_DDL

CLI = str(Path(sys.executable).with_name("pgmq-jobs"))
TESTS_DIR = Path(__file__).resolve().parent.parent

Connection = psycopg.Connection[Any]


def create_ledger(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)


def worker_env(dsn: str, queues: Sequence[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    env.update(
        PYTHONPATH=str(TESTS_DIR),
        LEDGER_DSN=dsn,
        LEDGER_QUEUES=",".join(queues),
        **extra,
    )
    return env


def start_worker(
    dsn: str,
    queues: Sequence[str],
    *args: str,
    env: dict[str, str] | None = None,
    stdout: Any = subprocess.PIPE,
    app: str = "apps.ledger_app:app",
) -> subprocess.Popen[str]:
    """``pgmq-jobs worker`` for ``queues`` with the ledger app (or ``app``), as a child
    process."""
    argv = [CLI, "worker", "--dsn", dsn, "--app", app]
    for queue in queues:
        argv += ["--queue", queue]
    return subprocess.Popen(
        [*argv, *args],
        env=env or worker_env(dsn, queues),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def running_worker(
    dsn: str,
    queues: Sequence[str],
    *args: str,
    env: dict[str, str] | None = None,
    app: str = "apps.ledger_app:app",
) -> Iterator[subprocess.Popen[str]]:
    """A worker that is SIGKILLed at the end of the block if it is still running."""
    proc = start_worker(dsn, queues, *args, env=env, app=app)
    try:
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


def ledger(conn: Connection, queue: str, event: str | None = None) -> list[tuple[Any, ...]]:
    """(job_id, attempt, event, pid) rows of ``queue``, oldest first."""
    return conn.execute(
        "select job_id, attempt, event, pid from ledger where queue = %s"
        " and (%s::text is null or event = %s) order by at",
        (queue, event, event),
    ).fetchall()


def done_ids(conn: Connection, queue: str) -> set[int]:
    return {row[0] for row in ledger(conn, queue, "done")}


def archived_ids(conn: Connection, queue: str) -> set[int]:
    """Jobs completed through ``pgmq_jobs.complete`` (the queue keeps completions)."""
    rows = conn.execute(
        psycopg.sql.SQL("select msg_id from pgmq.{}").format(psycopg.sql.Identifier(f"a_{queue}"))
    ).fetchall()
    return {row[0] for row in rows}


def remaining(conn: Connection, queue: str) -> int:
    row = conn.execute(
        psycopg.sql.SQL("select count(*) from pgmq.{}").format(psycopg.sql.Identifier(f"q_{queue}"))
    ).fetchone()
    assert row is not None
    return int(row[0])
