"""The upgrade of a deep 0.1.0 database to this release, under a steady claimer.

A database built from the shipped 0.1.0 migration holds ``plan.deep_n`` jobs in one queue
(a tenth of them delayed, a thousand in flight) and a small second queue. A claimer thread
claims and completes one job at a time from the deep queue through the whole run, noting the
duration of every claim and of every claim-and-complete round; `pgmq_jobs.ops.install.install`
then upgrades the database (its transaction, then the concurrent build of the queue's priority
index). Reported: the upgrade's wall time, and the longest claim and round that overlapped it
(what the upgrade's locks cost a worker) beside the claims' median before it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from bench.common import progress
from bench.deep import fill_jobs, settle
from bench.scenarios import Plan
from pgmq_jobs.ops.install import install
from pgmq_jobs.ops.paths import pgmq_sql_path, repo_root

RELEASED_0_1_0 = "supabase/migrations/20261123000000_pgmq_jobs.sql"


def build_0_1_0(dsn: str) -> None:
    root = repo_root()
    assert root is not None, "the upgrade bench runs from a source checkout"
    with psycopg.connect(dsn) as conn:
        conn.execute(pgmq_sql_path().read_text(encoding="utf-8"))  # type: ignore[arg-type]
        conn.execute((root / RELEASED_0_1_0).read_text(encoding="utf-8"))  # type: ignore[arg-type]


class Claimer(threading.Thread):
    """Claims and completes one job at a time; records (start, claim seconds, claim and
    complete seconds) per round."""

    def __init__(self, dsn: str, queue: str) -> None:
        super().__init__(name="claimer", daemon=True)
        self.dsn, self.queue = dsn, queue
        self.claims: list[tuple[float, float]] = []
        self.rounds: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def wait_for(self, condition: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    row = conn.execute(
                        "select job_id, attempt from pgmq_jobs.claim(%s)", (self.queue,)
                    ).fetchone()
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                    continue
                self.claims.append((t0, time.perf_counter() - t0))
                if row is not None:
                    conn.execute(
                        "select pgmq_jobs.complete(%s, array[%s]::bigint[], array[%s])",
                        (self.queue, row[0], row[1]),
                    )
                self.rounds.append((t0, time.perf_counter() - t0))


def upgrade(cluster: Any, plan: Plan) -> dict[str, Any]:
    dsn = cluster.create_database("bench_upgrade")
    build_0_1_0(dsn)
    n = plan.deep_n
    delayed = n // 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pgmq_jobs.create_queue('big', visibility_timeout => '1 hour')")
        conn.execute("select pgmq_jobs.create_queue('small')")
        progress(f"  upgrade: filling a 0.1.0 database with {n:,} jobs")
        fill_seconds = fill_jobs(conn, "big", n - delayed) + fill_jobs(
            conn, "big", delayed, "1 hour"
        )
        fill_jobs(conn, "small", 1_000)
        conn.execute("select count(*) from pgmq_jobs.claim('big', 1000)")
        settle(conn, "pgmq.q_big")
        size = conn.execute("select pg_size_pretty(pg_total_relation_size('pgmq.q_big'))")
        table_size = str(size.fetchone()[0])  # type: ignore[index]
    claimer = Claimer(dsn, "big")
    claimer.start()
    claimer.wait_for(lambda: len(claimer.claims) >= 300)  # a baseline before the upgrade
    t0 = time.perf_counter()
    report = install(dsn)
    t1 = time.perf_counter()
    claimer.wait_for(lambda: sum(start > t1 for start, _ in claimer.claims) >= 100)
    claimer.stop.set()
    claimer.join(timeout=30)
    before = sorted(d for start, d in claimer.claims if start + d < t0)
    overlapping = [d for start, d in claimer.claims if start < t1 and start + d > t0]
    rounds = [d for start, d in claimer.rounds if start < t1 and start + d > t0]
    with psycopg.connect(dsn) as conn:
        version = conn.execute("select version from pgmq_jobs.schema_info()").fetchone()
        remaining = conn.execute("select count(*) from pgmq.q_big").fetchone()
    return {
        "jobs": n,
        "delayed": delayed,
        "in_flight": 1_000,
        "table_size": table_size,
        "fill_seconds": round(fill_seconds, 1),
        "action": report.action,
        "steps": report.steps,
        "version": version[0] if version else None,
        "upgrade_seconds": round(t1 - t0, 3),
        "claims_before": len(before),
        "claim_ms_median_before": round(1000 * before[len(before) // 2], 2) if before else None,
        "claims_during": len(overlapping),
        "claim_ms_max_during": round(1000 * max(overlapping), 1) if overlapping else None,
        "round_ms_max_during": round(1000 * max(rounds), 1) if rounds else None,
        "indexes_built_after": report.indexes_built,
        "claim_errors": claimer.errors[:3],
        "jobs_left": remaining[0] if remaining else None,
    }
