"""The worker in process: how much it claims at a time, and cooperative cancellation."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
import pytest

import pgmq_jobs
import pgmq_jobs.client as jobs
import pgmq_jobs.worker as worker_module
from pgmq_jobs.registry import JobContext

Connection = psycopg.Connection[Any]


class ClaimSpy(pgmq_jobs.Worker):
    """A worker that notes how many jobs it asked for in each claim."""

    asked: list[int]

    def _claim_rows(self, conn: Connection, queue: str, qty: int) -> list[tuple[Any, ...]]:
        self.asked.append(qty)
        return super()._claim_rows(conn, queue, qty)


def drain(db_dsn: str, registry: pgmq_jobs.Registry, queue: str, concurrency: int) -> ClaimSpy:
    options = pgmq_jobs.WorkerOptions(
        [queue], concurrency=concurrency, drain=True, max_seconds=60, listen=False
    )
    worker = ClaimSpy(db_dsn, registry, options)
    worker.asked = []
    worker.run()
    return worker


def test_fast_handlers_are_claimed_in_large_batches(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(600)])
    app = pgmq_jobs.Registry()
    app.add(queue_name, lambda payload, ctx: None)
    worker = drain(db_dsn, app, queue_name, concurrency=2)
    assert worker.summary.completed == 600
    # The first claim knows nothing of the pace: threads plus as many again. Once no-op
    # handlers are measured, the claims grow well beyond that (automatic prefetch).
    assert worker.asked[0] == 4
    assert max(worker.asked) > 50, worker.asked


def test_large_payloads_bound_the_prefetch(
    db_dsn: str, conn: Connection, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10 kB payloads (random, so not compressed) against a 100 kB budget: about 10 ahead.
    monkeypatch.setattr(worker_module, "AUTO_PREFETCH_BYTES", 100_000)
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"blob": os.urandom(5000).hex()} for _ in range(200)])
    app = pgmq_jobs.Registry()
    app.add(queue_name, lambda payload, ctx: None)
    worker = drain(db_dsn, app, queue_name, concurrency=2)
    assert worker.summary.completed == 200
    assert max(worker.asked) <= 2 + 11, worker.asked
    assert max(worker.asked) > 4, worker.asked  # still more than the threads: the pace allows


def test_slow_handlers_are_not_hoarded(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(12)])
    app = pgmq_jobs.Registry()
    app.add(queue_name, lambda payload, ctx: threading.Event().wait(0.1))
    worker = drain(db_dsn, app, queue_name, concurrency=2)
    assert worker.summary.completed == 12
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
