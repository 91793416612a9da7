"""Python wrappers that run the Node drivers (``pgboss.js``, ``graphile.js``) with node, using
the packages installed into ``bench/.peers/node`` (never vendored)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.systems.base import System

HERE = Path(__file__).resolve().parent


class NodeSystem(System):
    script: str = ""
    node_modules: str = ""

    def driver_argv(self) -> list[str]:
        return [shutil.which("node") or "node", str(HERE / self.script)]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["NODE_PATH"] = self.node_modules
        return env


def _make(
    name: str, key: str, script: str, node_modules: Path, version: str, unavailable: str | None
) -> NodeSystem:
    s = NodeSystem(name=name, key=key, version=version, unavailable=unavailable)
    s.script = script
    s.node_modules = os.fspath(node_modules)
    return s


def pgboss(node_modules: Path, version: str, unavailable: str | None) -> System:
    s = _make("pg-boss", "pgboss", "pgboss.js", node_modules, version, unavailable)
    s.default_concurrency = 1
    s.lat_gap_ms = 600
    s.settings_note = (
        "PgBoss({connectionString}) defaults (pool max 10, supervise/maintenance on); queue "
        "'bench' with retryLimit 4, retryDelay 0; worker: one work() with batchSize = "
        "concurrency (default 1), pollingIntervalSeconds 0.5 (its minimum; default 2 s; no "
        "LISTEN), includeMetadata; completions are pg-boss's own (kept as completed rows). Its "
        "worker waits pollingInterval after every fetch, so one worker does at most batchSize "
        "jobs per 0.5 s; pickup latency is measured with jobs 600 ms apart (not 10 ms) so that "
        "they do not queue up behind that"
    )
    s.remaining_sql = "select count(*) from pgboss.job where name = 'bench' and state < 'completed'"
    s.reset_sql = ["truncate pgboss.job", "truncate pgboss.archive"]
    return s


def graphile(node_modules: Path, version: str, unavailable: str | None) -> System:
    s = _make("graphile-worker", "graphile", "graphile.js", node_modules, version, unavailable)
    s.default_concurrency = 1
    s.settings_note = (
        "makeWorkerUtils addJob / addJobs; run() with concurrency as given (default 1), "
        "LISTEN/NOTIFY, default pollInterval 2 s and pool; finished jobs are deleted"
    )
    s.remaining_sql = "select count(*) from graphile_worker._private_jobs"
    s.reset_sql = ["truncate graphile_worker._private_jobs, graphile_worker._private_job_queues"]
    s.supports_failure = False
    s.failure_note = (
        "graphile-worker retries after exp(min(attempts, 10)) s (about 2.7 s for the first "
        "retry) and has no setting for it, so the end-to-end figure measures that wait"
    )
    return s
