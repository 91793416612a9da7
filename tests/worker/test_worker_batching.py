"""The worker in process: how much it claims at a time, and cooperative cancellation."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
import pytest

import pgmq_jobs
import pgmq_jobs.client as jobs
import pgmq_jobs.worker.options as worker_options
from pgmq_jobs.registry import JobContext
from pgmq_jobs.worker.api import Claimed, DatabaseApi, Failed

Connection = psycopg.Connection[Any]


class SpyApi(DatabaseApi):
    """The worker's real database api, noting how many jobs each claim asked for, how many
    failures each ``fail_batch`` carried and how many went one by one (``fail``)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.asked: list[int] = []
        self.bursts: list[int] = []
        self.singles = 0

    def claim(self, queue: str, qty: int, vt: float | None, worker_id: str) -> list[Claimed]:
        self.asked.append(qty)
        return super().claim(queue, qty, vt, worker_id)

    def fail_batch(self, queue: str, deliveries: Any, *args: Any) -> list[Failed]:
        self.bursts.append(len(deliveries))
        return super().fail_batch(queue, deliveries, *args)

    def fail(self, queue: str, job_id: int, *args: Any) -> Failed:
        self.singles += 1
        return super().fail(queue, job_id, *args)


def drain(
    db_dsn: str, registry: pgmq_jobs.Registry, queue: str, concurrency: int
) -> tuple[pgmq_jobs.Summary, SpyApi]:
    options = pgmq_jobs.WorkerOptions(
        [queue], concurrency=concurrency, drain=True, max_seconds=60, listen=False
    )
    api = SpyApi(db_dsn)
    return pgmq_jobs.Worker(db_dsn, registry, options, api=api).run(), api


def test_fast_handlers_are_claimed_in_large_batches(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(600)])
    app = pgmq_jobs.Registry()
    app.add(queue_name, lambda payload, ctx: None)
    summary, worker = drain(db_dsn, app, queue_name, concurrency=2)
    assert summary.completed == 600
    # The first claim knows nothing of the pace: threads plus as many again. Once no-op
    # handlers are measured, the claims grow well beyond that (automatic prefetch).
    assert worker.asked[0] == 4
    assert max(worker.asked) > 50, worker.asked


def test_large_payloads_bound_the_prefetch(
    db_dsn: str, conn: Connection, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10 kB payloads (random, so not compressed) against a 100 kB budget: about 10 ahead.
    monkeypatch.setattr(worker_options, "AUTO_PREFETCH_BYTES", 100_000)
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"blob": os.urandom(5000).hex()} for _ in range(200)])
    app = pgmq_jobs.Registry()
    app.add(queue_name, lambda payload, ctx: None)
    summary, worker = drain(db_dsn, app, queue_name, concurrency=2)
    assert summary.completed == 200
    assert max(worker.asked) <= 2 + 11, worker.asked
    assert max(worker.asked) > 4, worker.asked  # still more than the threads: the pace allows


def test_slow_handlers_are_not_hoarded(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(12)])
    app = pgmq_jobs.Registry()
    app.add(queue_name, lambda payload, ctx: threading.Event().wait(0.1))
    summary, worker = drain(db_dsn, app, queue_name, concurrency=2)
    assert summary.completed == 12
    # 100 ms per job: 50 ms of work per thread is less than a job, so the prefetch stays
    # at the thread count and another worker would get the rest of the queue.
    assert max(worker.asked) <= 4, worker.asked


def test_a_timed_out_handler_sees_ctx_cancelled(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    job_id = jobs.enqueue(conn, queue_name, {})
    seen = threading.Event()

    def cooperative(payload: dict[str, Any], ctx: JobContext) -> None:
        if ctx.cancelled.wait(30):
            seen.set()

    app = pgmq_jobs.Registry()
    app.add(queue_name, cooperative, timeout=0.3)
    options = pgmq_jobs.WorkerOptions([queue_name], drain=True, max_seconds=20, listen=False)
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert (summary.failed, summary.dead) == (1, 1)
    assert seen.wait(5), "the handler never saw ctx.cancelled"
    [dead] = jobs.dead_letters(conn, queue_name)
    assert dead.job_id == job_id and "TimeoutError" in (dead.last_error or "")


def _fail_once_drain(
    dsn: str, conn: Connection, queue: str, n: int
) -> tuple[pgmq_jobs.Summary, SpyApi]:
    jobs.create_queue(conn, queue, retry_base=0.001, jitter="none")
    jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(n)])

    def fail_once(payload: dict[str, Any], ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError(f"job {payload['i']} fails once\x00\udcff")

    app = pgmq_jobs.Registry()
    app.add(queue, fail_once)
    options = pgmq_jobs.WorkerOptions([queue], drain=True, max_seconds=60, listen=False)
    api = SpyApi(dsn)
    return pgmq_jobs.Worker(dsn, app, options, api=api).run(), api


def test_a_burst_of_failures_is_reported_in_one_call(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    summary, worker = _fail_once_drain(db_dsn, conn, queue_name, 300)
    assert (summary.completed, summary.failed, summary.stale) == (300, 300, 0)
    assert worker.singles == 0
    assert sum(worker.bursts) == 300 and max(worker.bursts) > 20, worker.bursts
    # Every failure is on record, its NUL and lone surrogate escaped rather than refused.
    [row] = conn.execute(
        "select count(*) filter (where message ->> 'i' = '7'), count(*) from pgmq.a_" + queue_name
    ).fetchall()
    assert row == (1, 300)
    errors = conn.execute(
        "select headers -> 'errors' -> 0 ->> 'error' from pgmq.a_" + queue_name
    ).fetchall()
    assert all("fails once\\x00\\udcff" in e for (e,) in errors), errors[:1]


def test_failures_go_one_by_one_where_fail_batch_is_missing(fresh_db: Any, queue_name: str) -> None:
    """A worker newer than the database's SQL (fail_batch not installed yet) still reports."""
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "drop function pgmq_jobs.fail_batch(text, bigint[], integer[], text[], interval[],"
            " boolean[])"
        )
        summary, worker = _fail_once_drain(dsn, conn, queue_name, 40)
        assert (summary.completed, summary.failed) == (40, 40)
        assert worker.singles == 40
