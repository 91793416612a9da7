"""PostgreSQL restarted under a running worker: it reconnects and finishes the queue.

Uses its own embedded cluster, so restarting it disturbs no other test.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgmq_jobs.client as jobs
from apps.harness import archived_ids, create_ledger, done_ids, ledger, remaining, running_worker
from pgmq_jobs.ops.cluster import EmbeddedCluster
from pgmq_jobs.ops.install import install
from support import wait_for

FAST = {"fsync": False, "synchronous_commit": False, "full_page_writes": False}


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("restarts an embedded cluster; DATABASE_URL points at a shared server")
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-restart-"))
    os.chmod(base, 0o755)
    cluster = EmbeddedCluster(base / "data", settings=FAST, quiet=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_worker_survives_a_postgres_restart_and_loses_nothing(
    own_cluster: EmbeddedCluster,
) -> None:
    dsn = own_cluster.create_database("restart_test")
    install(dsn)
    create_ledger(dsn)
    queue = "restarted"
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs.create_queue(conn, queue, visibility_timeout=5)
        job_ids = jobs.enqueue_batch(conn, queue, [{"sleep": 0.1} for _ in range(60)])
    args = ("--concurrency", "4", "--poll-interval", "0.2")
    with running_worker(dsn, [queue], *args) as proc:
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(lambda: len(done_ids(conn, queue)) >= 8, timeout=20, what="some progress")
        own_cluster.stop()  # fast shutdown: every connection is cut, in-flight work included
        own_cluster.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(
                lambda: archived_ids(conn, queue) == set(job_ids),
                timeout=40,
                what="every job completed after the restart",
            )
            assert proc.poll() is None, "the worker should have kept running"
            assert remaining(conn, queue) == 0
            assert done_ids(conn, queue) == set(job_ids)
            # Redeliveries are allowed (a lost outcome), losses are not.
            assert {row[0] for row in ledger(conn, queue, "start")} == set(job_ids)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    # The worker saw the outage and came back by itself.
    assert "database unavailable" in err and "database connection restored" in err
