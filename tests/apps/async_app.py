"""Test app with ``async def`` handlers: the ledger app's twin, awaited on the worker's loop.

An ``async def`` handler is registered for the queues in $ASYNC_QUEUES and the ledger app's
``def`` handler for those in $LEDGER_QUEUES, so one worker can run both kinds. Each
execution is recorded in the ``ledger`` table of $LEDGER_DSN (see ``ledger_app``) through
an ``AsyncConnection``, with the same events and the same steering payload:

- ``sleep``: seconds to ``await asyncio.sleep`` before finishing;
- ``action``: ``fail`` (ValueError), ``retry`` (Retry, after payload["after"] if given, else
  the queue's backoff), ``permanent`` (Permanent), ``flaky`` (ValueError while
  attempt <= payload["fail_times"]).

A handler cancelled while it sleeps (its timeout) records the event ``cancelled`` and lets
the cancellation through; with ``ignore_cancel`` it records it and carries on, to ``done``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg

import pgmq_jobs
from apps.ledger_app import run as run_sync
from pgmq_jobs.registry import JobContext

_conn: psycopg.AsyncConnection[Any] | None = None
_conn_lock: asyncio.Lock | None = None


async def _connection() -> psycopg.AsyncConnection[Any]:
    global _conn, _conn_lock
    if _conn_lock is None:
        _conn_lock = asyncio.Lock()
    async with _conn_lock:
        if _conn is None or _conn.closed:
            _conn = await psycopg.AsyncConnection.connect(
                os.environ["LEDGER_DSN"], autocommit=True, connect_timeout=3
            )
        return _conn


async def _insert(ctx: JobContext, event: str) -> None:
    conn = await _connection()
    await conn.execute(
        "insert into ledger (queue, job_id, attempt, event, pid) values (%s, %s, %s, %s, %s)",
        (ctx.queue, ctx.job_id, ctx.attempt, event, os.getpid()),
    )


async def record(ctx: JobContext, event: str) -> None:
    """Insert a ledger row; shielded, so a cancellation never cuts a statement in half."""
    await asyncio.shield(_insert(ctx, event))


async def run(payload: dict[str, Any], ctx: JobContext) -> None:
    await record(ctx, "start")
    action = payload.get("action")
    if payload.get("sleep"):
        try:
            await asyncio.sleep(float(payload["sleep"]))
        except asyncio.CancelledError:
            await record(ctx, "cancelled")
            if not payload.get("ignore_cancel"):
                raise
            await asyncio.sleep(float(payload.get("after_cancel", 0)))
    if action == "fail":
        raise ValueError(f"job {ctx.job_id} failed on purpose")
    if action == "retry":
        after = float(payload["after"]) if "after" in payload else None
        raise pgmq_jobs.Retry("come back later", after=after)
    if action == "permanent":
        raise pgmq_jobs.Permanent("this payload can never work")
    if action == "flaky" and ctx.attempt <= int(payload.get("fail_times", 1)):
        raise ValueError(f"flaky failure on attempt {ctx.attempt}")
    await record(ctx, "done")


def _build() -> pgmq_jobs.Registry:
    registry = pgmq_jobs.Registry()
    timeout = os.environ.get("LEDGER_TIMEOUT")
    limits = {"timeout": float(timeout) if timeout else None}
    for queue in filter(None, os.environ.get("ASYNC_QUEUES", "").split(",")):
        registry.add(queue, run, **limits)
    for queue in filter(None, os.environ.get("LEDGER_QUEUES", "").split(",")):
        registry.add(queue, run_sync, **limits)
    return registry


app = _build()
