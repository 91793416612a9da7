"""The SQL API on a ``psycopg.AsyncConnection``: every operation of :mod:`pgmq_jobs.api.calls`,
awaitable, with the connection as its first argument. Nothing here commits: each call runs in
whatever transaction the caller has open (with an autocommit connection, its own)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg.rows import dict_row, tuple_row

from pgmq_jobs.api import calls
from pgmq_jobs.api.calls import Call

P = ParamSpec("P")
R = TypeVar("R")
Connection = psycopg.AsyncConnection[Any]


async def run(conn: Connection, call: Call[R]) -> R:
    """Send one call on ``conn`` and read its result."""
    factory: Any = dict_row if call.dicts else tuple_row
    async with conn.cursor(row_factory=factory) as cur:
        await cur.execute(call.query, call.params)
        return call.read(await cur.fetchall() if cur.description is not None else [])


def _face(op: Callable[P, Call[R]]) -> Callable[Concatenate[Connection, P], Awaitable[R]]:
    async def bound(conn: Connection, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await run(conn, op(*args, **kwargs))

    bound.__name__ = bound.__qualname__ = op.__name__
    bound.__doc__ = op.__doc__
    bound.__module__ = __name__
    return bound


create_queue = _face(calls.create_queue)
configure_queue = _face(calls.configure_queue)
drop_queue = _face(calls.drop_queue)
queues = _face(calls.queues)
enqueue = _face(calls.enqueue)
enqueue_batch = _face(calls.enqueue_batch)
claim = _face(calls.claim)
complete = _face(calls.complete)
fail = _face(calls.fail)
fail_batch = _face(calls.fail_batch)
extend = _face(calls.extend)
release = _face(calls.release)
dead_letters = _face(calls.dead_letters)
replay = _face(calls.replay)
purge_dead_letters = _face(calls.purge_dead_letters)
failing_jobs = _face(calls.failing_jobs)
sweep = _face(calls.sweep)
process = _face(calls.process)
schedule = _face(calls.schedule)
unschedule = _face(calls.unschedule)
schedules = _face(calls.schedules)
audit = _face(calls.audit)
schema_info = _face(calls.schema_info)
job = _face(calls.job)
cancel = _face(calls.cancel)
reschedule = _face(calls.reschedule)
snooze = _face(calls.snooze)
list_jobs = _face(calls.list_jobs)
interval = _face(calls.interval)
timestamp = _face(calls.timestamp)
time_from_now = _face(calls.time_from_now)
queue_stats = _face(calls.queue_stats)
workers = _face(calls.workers)
worker_counts = _face(calls.worker_counts)
alerts = _face(calls.alerts)
alert_thresholds = _face(calls.alert_thresholds)
set_alert_threshold = _face(calls.set_alert_threshold)
outcome_totals = _face(calls.outcome_totals)
current_minute = _face(calls.current_minute)
local_statement_timeout = _face(calls.local_statement_timeout)
queue_stat = _face(calls.queue_stat)
queue_history = _face(calls.queue_history)
