"""Through PgBouncer in transaction pooling mode: the client API, the CLI and workers.

Server connections are shared between clients transaction by transaction (a pool of 3 for
up to 8 clients here), so anything that relies on session state (server-side prepared
statements, LISTEN, session SETs) would break. Every test counts: N jobs in, N completed,
each exactly once.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import pgmq_jobs.client as jobs
from apps.harness import (
    CLI,
    archived_ids,
    create_ledger,
    ledger,
    remaining,
    running_worker,
    worker_env,
)
from pgbouncer_fixture import PgBouncer, available
from support import wait_for

Connection = psycopg.Connection[Any]

pytestmark = pytest.mark.skipif(not available(), reason="pgbouncer is not installed")


@pytest.fixture(scope="module")
def bouncer(cluster_dsn: str) -> Iterator[PgBouncer]:
    with PgBouncer(cluster_dsn, pool_mode="transaction", pool_size=3) as pgb:
        yield pgb


@pytest.fixture(scope="module")
def pooled_dsn(bouncer: PgBouncer, db_dsn: str) -> str:
    """The test database through PgBouncer."""
    create_ledger(db_dsn)
    return bouncer.dsn(str(conninfo_to_dict(db_dsn)["dbname"]))


def pooled(dsn: str, **kwargs: Any) -> Connection:
    """A connection as callers behind a transaction pooler must make it."""
    return psycopg.connect(dsn, prepare_threshold=None, connect_timeout=5, **kwargs)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30)


def test_it_really_is_transaction_pooling(bouncer: PgBouncer, pooled_dsn: str) -> None:
    with pooled(bouncer.dsn("pgbouncer"), autocommit=True) as admin:
        config = {row[0]: row[1] for row in admin.execute("show config").fetchall()}
    assert (config["pool_mode"], config["default_pool_size"]) == ("transaction", "3")


def test_client_api_under_concurrency_loses_nothing(
    pooled_dsn: str, conn: Connection, queue_name: str
) -> None:
    """8 producer and 8 consumer threads share 3 server connections; every statement is
    repeated far beyond psycopg's default prepare threshold (5)."""
    producers, per_producer, consumers = 8, 60, 8
    with pooled(pooled_dsn, autocommit=True) as setup:
        jobs.create_queue(setup, queue_name)
    errors: list[BaseException] = []
    produced: list[int] = []
    consumed: list[int] = []
    lock = threading.Lock()
    done_producing = threading.Event()

    def produce(p: int) -> None:
        try:
            with pooled(pooled_dsn) as c:
                for i in range(per_producer):
                    # Transactional enqueue: a rolled-back one must leave nothing behind.
                    with c.transaction():
                        job_id = jobs.enqueue(c, queue_name, {"p": p, "i": i})
                    with lock:
                        produced.append(job_id)
                    if i % 10 == 0:
                        with c.transaction():
                            jobs.enqueue(c, queue_name, {"p": p, "i": i, "rolled_back": True})
                            raise psycopg.Rollback()
        except BaseException as exc:
            errors.append(exc)

    def consume() -> None:
        try:
            with pooled(pooled_dsn, autocommit=True) as c:
                while True:
                    batch = jobs.claim(c, queue_name, 5)
                    if not batch:
                        if done_producing.is_set() and not jobs.claim(c, queue_name, 1):
                            return
                        done_producing.wait(0.01)  # nothing ready yet: give producers a turn
                        continue
                    assert all("rolled_back" not in j.payload for j in batch)
                    assert jobs.complete(c, queue_name, batch) == len(batch)
                    with lock:
                        consumed.extend(j.job_id for j in batch)
        except BaseException as exc:
            errors.append(exc)
            done_producing.set()

    producer_threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    consumer_threads = [threading.Thread(target=consume) for _ in range(consumers)]
    for t in producer_threads + consumer_threads:
        t.start()
    for t in producer_threads:
        t.join(timeout=60)
    done_producing.set()
    for t in consumer_threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert len(produced) == producers * per_producer
    counts = Counter(consumed)
    assert set(counts) == set(produced) and set(counts.values()) == {1}
    assert archived_ids(conn, queue_name) == set(produced)
    assert remaining(conn, queue_name) == 0


def test_cli_through_pgbouncer(pooled_dsn: str, conn: Connection, queue_name: str) -> None:
    created = cli("queues", "create", queue_name, "--max-attempts", "2", "--dsn", pooled_dsn)
    assert created.returncode == 0, created.stderr
    ids = []
    for i in range(12):  # beyond the prepare threshold, were the CLI to reuse a connection
        out = cli("enqueue", queue_name, json.dumps({"i": i}), "--dsn", pooled_dsn)
        assert out.returncode == 0, out.stderr
        ids.append(int(out.stdout))
    listed = cli("queues", "--json", "--dsn", pooled_dsn)
    assert listed.returncode == 0, listed.stderr
    assert queue_name in {q["queue"] for q in json.loads(listed.stdout)}

    # A dead letter to list and replay through the pooler.
    [job] = jobs.claim(conn, queue_name, 1)
    assert jobs.fail(conn, queue_name, job.job_id, job.attempt, "no", permanent=True).outcome == (
        "dead"
    )
    dead = cli("dlq", "list", queue_name, "--json", "--dsn", pooled_dsn)
    assert dead.returncode == 0, dead.stderr
    [letter] = json.loads(dead.stdout)
    assert letter["job_id"] == job.job_id and letter["reason"] == "permanent"
    replayed = cli("dlq", "replay", queue_name, "--all", "--dsn", pooled_dsn)
    assert replayed.returncode == 0 and "replayed 1" in replayed.stdout, replayed.stderr
    assert json.loads(cli("dlq", "list", queue_name, "--json", "--dsn", pooled_dsn).stdout) == []

    # Everything enqueued is there exactly once: 11 waiting plus the replayed one.
    claimed = jobs.claim(conn, queue_name, 100)
    assert len(claimed) == len(ids)
    assert sorted(j.payload["i"] for j in claimed) == list(range(12))


def test_workers_through_pgbouncer_complete_every_job_once(
    pooled_dsn: str, db_dsn: str, conn: Connection, queue_name: str
) -> None:
    """Two workers on one queue: one polling through PgBouncer (--no-listen), one through
    PgBouncer with LISTEN on a direct connection (--listen-dsn). N jobs, each done once."""
    n = 240
    jobs.create_queue(conn, queue_name)
    env = worker_env(db_dsn, [queue_name])  # the ledger writes go straight to the server
    polling = ("--no-listen", "--poll-interval", "0.1", "--concurrency", "4")
    listening = ("--listen-dsn", db_dsn, "--poll-interval", "5", "--concurrency", "4")
    with (
        running_worker(pooled_dsn, [queue_name], *polling, env=env) as poller,
        running_worker(pooled_dsn, [queue_name], *listening, env=env) as listener,
    ):
        wait_for(
            lambda: conn.execute(
                "select count(*) = 2 from pgmq_jobs.workers where pid in (%s, %s)",
                (poller.pid, listener.pid),
            ).fetchone()[0],  # type: ignore[index]
            timeout=20,
            what="both workers' heartbeats",
        )
        ids: list[int] = []
        with pooled(pooled_dsn, autocommit=True) as producer:
            for start in range(0, n, 20):
                batch = [{"i": i, "sleep": 0.01} for i in range(start, start + 20)]
                ids += jobs.enqueue_batch(producer, queue_name, batch)
        wait_for(lambda: archived_ids(conn, queue_name) == set(ids), timeout=60, what="all N jobs")
        for proc in (poller, listener):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    done = Counter(row[0] for row in ledger(conn, queue_name, "done"))
    assert set(done) == set(ids) and set(done.values()) == {1}
    starts = Counter(row[0] for row in ledger(conn, queue_name, "start"))
    assert set(starts.values()) == {1}
    assert remaining(conn, queue_name) == 0
    # Both took part: the poller through the pool, the listener woken over its direct LISTEN.
    assert {row[3] for row in ledger(conn, queue_name, "done")} == {poller.pid, listener.pid}
