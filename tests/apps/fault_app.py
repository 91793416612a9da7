"""Fault-suite app: handlers for the queues in $FAULT_QUEUES that record every execution in the
append-only table ``fault_ledger`` of $FAULT_LEDGER_DSN.

Each execution gets its own id; its rows are inserted on the app's own autocommit connection
(one per handler thread, application_name ``fault-ledger``), never in the worker's
transaction, so an execution whose worker crashes before reporting is still counted. The
insert is idempotent per (execution, event), so retrying it after a lost reply never counts
an execution twice. ``at`` is this process's clock when the event happened (the insert may
land later, e.g. after a database restart).

The payload's ``kind`` steers the handler:

- ``work``: sleep ``sleep`` seconds (at most $FAULT_SLEEP_CAP), then ``done``;
- ``kill``: record ``kill``, then SIGKILL its own worker process (every time);
- ``parse``: ``body`` must be JSON text of an object with an integer ``n``; anything else is
  unparseable: record ``fail`` and raise Permanent (straight to the dead-letter queue);
- ``flaky``: record ``fail`` and raise ValueError while attempt <= ``fail_times``, else
  like ``work``.

Events: ``start``, then ``done`` (returned), ``fail`` (a planned failure) or ``kill``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

import pgmq_jobs
from pgmq_jobs.registry import JobContext

FAULT_LEDGER_DDL = """
create table if not exists fault_ledger (
    exec_id uuid not null,
    queue text not null,
    job_id bigint not null,
    attempt int not null,
    event text not null,
    pid int not null,
    at timestamptz not null,
    primary key (exec_id, event)
)
"""

_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ["FAULT_LEDGER_DSN"],
            autocommit=True,
            connect_timeout=3,
            application_name="fault-ledger",
        )
        _local.conn = conn
    return conn


def record(exec_id: uuid.UUID, ctx: JobContext, event: str) -> None:
    """Insert one ledger row (idempotent), retrying while the database is unreachable."""
    at = datetime.now(UTC)
    deadline = time.monotonic() + 60
    while True:
        try:
            _connection().execute(
                "insert into fault_ledger (exec_id, queue, job_id, attempt, event, pid, at)"
                " values (%s, %s, %s, %s, %s, %s, %s) on conflict do nothing",
                (exec_id, ctx.queue, ctx.job_id, ctx.attempt, event, os.getpid(), at),
            )
            return
        except psycopg.OperationalError:
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _parse(body: Any) -> int:
    value = json.loads(body)
    if not isinstance(value, dict) or not isinstance(value.get("n"), int):
        raise ValueError("body is not an object with an integer n")
    return int(value["n"])


def _sleep(payload: dict[str, Any]) -> None:
    seconds = float(payload.get("sleep", 0))
    cap = float(os.environ.get("FAULT_SLEEP_CAP", "inf"))
    if seconds > 0:
        time.sleep(min(seconds, cap))


def run(payload: dict[str, Any], ctx: JobContext) -> None:
    exec_id = uuid.uuid4()
    record(exec_id, ctx, "start")
    kind = payload.get("kind", "work")
    if kind == "kill":
        record(exec_id, ctx, "kill")
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "parse":
        try:
            _parse(payload.get("body"))
        except (ValueError, TypeError) as exc:
            record(exec_id, ctx, "fail")
            raise pgmq_jobs.Permanent(f"unparseable payload: {exc}") from exc
    if kind == "flaky" and ctx.attempt <= int(payload.get("fail_times", 1)):
        record(exec_id, ctx, "fail")
        raise ValueError(f"flaky failure on attempt {ctx.attempt}")
    _sleep(payload)
    record(exec_id, ctx, "done")


def _build() -> pgmq_jobs.Registry:
    registry = pgmq_jobs.Registry()
    for queue in filter(None, os.environ.get("FAULT_QUEUES", "").split(",")):
        registry.add(queue, run)
    return registry


app = _build()
