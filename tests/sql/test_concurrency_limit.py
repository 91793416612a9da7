"""Queue concurrency: configure_queue(queue, concurrency => n)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def in_flight(conn: Connection, queue: str) -> int:
    row = conn.execute("select pgmq_jobs._in_flight(%s)", (queue,)).fetchone()
    assert row is not None
    return int(row[0])


def test_claim_returns_fewer_at_the_limit(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, concurrency=3)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(10)])
    first = jobs.claim(conn, queue_name, 2)
    assert len(first) == 2
    assert len(jobs.claim(conn, queue_name, 10)) == 1
    assert jobs.claim(conn, queue_name, 10) == []
    jobs.complete(conn, queue_name, first)
    assert len(jobs.claim(conn, queue_name, 10)) == 2


def test_failed_and_timed_out_deliveries_free_their_slot(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, concurrency=1, retry_base=600, retry_max=600)
    jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}])
    [job] = jobs.claim(conn, queue_name)
    assert jobs.claim(conn, queue_name) == []
    jobs.fail(conn, queue_name, job.job_id, 1, "later")  # waiting to retry: not in flight
    [other] = jobs.claim(conn, queue_name)
    assert other.job_id != job.job_id


def test_null_removes_the_limit_and_zero_pauses(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, concurrency=1)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(6)])
    assert len(jobs.claim(conn, queue_name, 5)) == 1
    conn.execute("select pgmq_jobs.configure_queue(%s, concurrency => null)", (queue_name,))
    assert len(jobs.claim(conn, queue_name, 2)) == 2
    jobs.configure_queue(conn, queue_name, concurrency=0)
    assert jobs.claim(conn, queue_name, 5) == []
    jobs.configure_queue(conn, queue_name, max_attempts=4)  # other changes keep the limit
    assert [q["concurrency"] for q in jobs.queues(conn) if q["queue"] == queue_name] == [0]


def test_concurrent_claimers_never_exceed_the_limit(connect: Any, queue_name: str) -> None:
    admin: Connection = connect(autocommit=True)
    limit = 5
    jobs.create_queue(admin, queue_name, concurrency=limit, visibility_timeout=600)
    jobs.enqueue_batch(admin, queue_name, [{"i": i} for i in range(400)])
    claimers: list[Connection] = [connect(autocommit=True) for _ in range(6)]
    barrier = threading.Barrier(len(claimers))
    peak: list[int] = []
    errors: list[BaseException] = []
    completed: list[int] = []
    lock = threading.Lock()

    def run(c: Connection) -> None:
        try:
            barrier.wait()
            for _ in range(60):
                batch = jobs.claim(c, queue_name, 3)
                with lock:
                    peak.append(in_flight(admin, queue_name))
                if batch:
                    jobs.complete(c, queue_name, batch)
                    with lock:
                        completed.extend(j.job_id for j in batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in claimers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert max(peak) <= limit
    assert len(completed) == len(set(completed)) > 0
