"""Test app: one handler, registered for the queues in $LEDGER_QUEUES, that records every
execution in the table ``ledger`` of $LEDGER_DSN so that tests can assert exactly what ran.

The payload steers the handler:

- ``sleep``: seconds to sleep before finishing (a slow job), at most $LEDGER_SLEEP_CAP;
- ``action``: ``fail`` (ValueError), ``retry`` (Retry(after=payload["after"]), or with no
  ``after`` the queue's backoff),
  ``permanent`` (Permanent), ``kill`` (SIGKILL its own worker process),
  ``flaky`` (ValueError while attempt <= payload["fail_times"]),
  ``snooze`` (Snooze(after=payload["after"]) while the job has started at most
  payload["snoozes"] times), ``await_cancel`` (wait up to payload["wait"] seconds for
  ``ctx.cancelled``, recording ``cancelled`` when it comes).

Rows: (queue, job_id, attempt, event 'start' | 'done', pid, at). The ledger connection is
the app's own (one per handler thread), not the worker's.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psycopg

import pgmq_jobs
from pgmq_jobs.registry import JobContext

LEDGER_DDL = """
create table if not exists ledger (
    queue text not null,
    job_id bigint not null,
    attempt int not null,
    event text not null,
    pid int not null,
    at timestamptz not null default clock_timestamp()
)
"""

_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["LEDGER_DSN"], autocommit=True, connect_timeout=3)
        _local.conn = conn
    return conn


def record(ctx: JobContext, event: str) -> None:
    """Insert a ledger row, retrying (bounded) while the database is unreachable."""
    deadline = time.monotonic() + 30
    while True:
        try:
            _connection().execute(
                "insert into ledger (queue, job_id, attempt, event, pid)"
                " values (%s, %s, %s, %s, %s)",
                (ctx.queue, ctx.job_id, ctx.attempt, event, os.getpid()),
            )
            return
        except psycopg.OperationalError:
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _starts(ctx: JobContext) -> int:
    """How many times this job has started (its ledger rows), this run included."""
    row = (
        _connection()
        .execute(
            "select count(*) from ledger where queue = %s and job_id = %s and event = 'start'",
            (ctx.queue, ctx.job_id),
        )
        .fetchone()
    )
    return int(row[0]) if row else 0


def run(payload: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    action = payload.get("action")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if payload.get("sleep"):
        time.sleep(min(float(payload["sleep"]), float(os.environ.get("LEDGER_SLEEP_CAP", "inf"))))
    if action == "fail":
        raise ValueError(f"job {ctx.job_id} failed on purpose")
    if action == "retry":
        after = float(payload["after"]) if "after" in payload else None
        raise pgmq_jobs.Retry("come back later", after=after)
    if action == "permanent":
        raise pgmq_jobs.Permanent("this payload can never work")
    if action == "snooze" and _starts(ctx) <= int(payload.get("snoozes", 1)):
        raise pgmq_jobs.Snooze(float(payload.get("after", 0.1)))
    if action == "await_cancel" and ctx.cancelled.wait(float(payload.get("wait", 30))):
        record(ctx, "cancelled")
        return
    if action == "flaky" and ctx.attempt <= int(payload.get("fail_times", 1)):
        raise ValueError(f"flaky failure on attempt {ctx.attempt}")
    record(ctx, "done")


def _build() -> pgmq_jobs.Registry:
    registry = pgmq_jobs.Registry()
    timeout = os.environ.get("LEDGER_TIMEOUT")
    vt = os.environ.get("LEDGER_VT")
    for queue in filter(None, os.environ.get("LEDGER_QUEUES", "").split(",")):
        registry.add(
            queue,
            run,
            timeout=float(timeout) if timeout else None,
            visibility_timeout=float(vt) if vt else None,
        )
    return registry


app = _build()
