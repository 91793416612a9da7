"""``make bench``: pgmq-jobs side by side with raw PGMQ and the peers, in one run, on one
throwaway cluster with default durability.

    python -m bench.run [--quick] [--only SCENARIO ...] [--systems NAME ...]

Writes bench/results/<date>[-quick].json, the table in BENCHMARKS.md and a PNG chart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench import deep as deep_mod
from bench import peers, report, scenarios
from bench import priorities as priorities_mod
from bench import upgrade as upgrade_mod
from bench.common import elapsed, loadavg, progress
from bench.scenarios import Plan
from bench.systems import node_sys, pgqueuer_sys, procrastinate_sys
from bench.systems import pgmq_jobs as pgmq_jobs_sys
from bench.systems import raw_pgmq as raw_sys
from bench.systems.base import ROOT, System

SCENARIOS = [
    "enqueue",
    "processing",
    "latency",
    "failure",
    "deep",
    "issue11",
    "priorities",
    "upgrade",
]
SYSTEM_KEYS = ["pgmq_jobs", "raw_pgmq", "procrastinate", "pgqueuer", "pgboss", "graphile"]
CLUSTER_DIR = ROOT / ".pgmq-jobs" / "bench-cluster"

# Default durability; more memory and WAL room than initdb's defaults so that a million
# rows fit and checkpoints do not land in the middle of a measurement; pg_stat_statements
# for the profile.
CLUSTER_SETTINGS: dict[str, str | int | bool] = {
    "fsync": True,
    "synchronous_commit": "on",
    "full_page_writes": True,
    "shared_buffers": "512MB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "track_io_timing": True,
    "pg_stat_statements.track": "top",  # top-level statements: the profile reads no more
}
SHOW = [
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "work_mem",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "shared_preload_libraries",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small counts: under two minutes")
    p.add_argument("--only", nargs="+", choices=SCENARIOS, default=None, metavar="SCENARIO")
    p.add_argument("--systems", nargs="+", choices=SYSTEM_KEYS, default=None, metavar="NAME")
    p.add_argument("--no-report", action="store_true", help="skip BENCHMARKS.md and the chart")
    p.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    return p.parse_args(argv)


def start_cluster() -> Any:
    from pgmq_jobs.ops.cluster import EmbeddedCluster

    settings = dict(CLUSTER_SETTINGS)
    cluster = EmbeddedCluster(CLUSTER_DIR, settings=settings, quiet=True)
    cluster.stop()
    shutil.rmtree(cluster.data_dir, ignore_errors=True)
    preload = ["pg_stat_statements"]
    if cluster.has_pg_cron():
        preload.insert(0, "pg_cron")
    cluster.settings["shared_preload_libraries"] = ",".join(preload)
    cluster.settings["cron.database_name"] = "bench_pgmq_jobs"
    cluster.start()
    return cluster


def show_settings(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name: str(conn.execute(f"show {name}").fetchone()[0]) for name in SHOW}  # type: ignore[index]


def machine() -> dict[str, Any]:
    import os

    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GB"
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "node": shutil.which("node") and _node_version(),
        "kernel": platform.release(),
        "loadavg_start": loadavg(),
    }


def _node_version() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def source_state() -> dict[str, Any]:
    """The commit measured, and whether runner/ or sql/ had uncommitted changes."""
    import subprocess

    def git(*argv: str) -> str:
        try:
            return subprocess.run(
                ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    dirty = git("status", "--porcelain", "--", "runner", "sql")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": dirty.splitlines()}


def build_systems(keys: list[str]) -> list[System]:
    systems: list[System] = []
    if "pgmq_jobs" in keys:
        systems.append(pgmq_jobs_sys.system())
    if "raw_pgmq" in keys:
        systems.append(raw_sys.system())
    if {"procrastinate", "pgqueuer"} & set(keys):
        progress("peers: PyPI packages in bench/.peers/venv")
        python, versions, errors = peers.python_peers(progress)
        if "procrastinate" in keys:
            systems.append(
                procrastinate_sys.system(
                    python, versions.get("procrastinate", ""), errors.get("procrastinate")
                )
            )
        if "pgqueuer" in keys:
            systems.append(
                pgqueuer_sys.system(python, versions.get("pgqueuer", ""), errors.get("pgqueuer"))
            )
    if {"pgboss", "graphile"} & set(keys):
        progress("peers: npm packages in bench/.peers/node")
        modules, versions, errors = peers.node_peers(progress)
        if "pgboss" in keys:
            systems.append(
                node_sys.pgboss(modules, versions.get("pg-boss", ""), errors.get("pg-boss"))
            )
        if "graphile" in keys:
            systems.append(
                node_sys.graphile(
                    modules, versions.get("graphile-worker", ""), errors.get("graphile-worker")
                )
            )
    return systems


def guarded(results: dict[str, Any], key: str, label: str, fn: Callable[[], Any]) -> None:
    """Run one measurement; a failure is recorded with its error and the bench goes on."""
    try:
        results[key] = fn()
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        results[key] = {"error": message[:1500]}
        progress(f"  {label}: FAILED ({message[:300]})")
        tb = traceback.format_exc()
        (ROOT / ".pgmq-jobs" / "bench-logs").mkdir(parents=True, exist_ok=True)
        with open(ROOT / ".pgmq-jobs" / "bench-logs" / "errors.log", "a") as fh:
            fh.write(f"--- {label}\n{tb}\n")


def top_statements(dsn: str, limit: int = 8) -> list[dict[str, Any]]:
    """pg_stat_statements of one database: the statements with the most total time."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
        rows = conn.execute(
            "select left(regexp_replace(query, '\\s+', ' ', 'g'), 160), calls,"
            " round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3),"
            " shared_blks_hit + shared_blks_read"
            " from pg_stat_statements s join pg_database d on d.oid = s.dbid"
            " where d.datname = current_database() and s.toplevel"
            " order by total_exec_time desc limit %s",
            (limit,),
        ).fetchall()
    return [
        {
            "query": r[0],
            "calls": r[1],
            "total_ms": float(r[2]),
            "mean_ms": float(r[3]),
            "blocks": r[4],
        }
        for r in rows
    ]


def reset_statements(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
        conn.execute("select pg_stat_statements_reset()")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.make(args.quick)
    only = args.only or SCENARIOS
    keys = args.systems or SYSTEM_KEYS
    started = dt.datetime.now(dt.UTC)
    progress(f"pgmq-jobs bench ({'quick' if args.quick else 'full'}): scenarios {', '.join(only)}")
    progress(f"load average now: {loadavg()} (other work on this machine skews the figures)")

    systems = build_systems(keys)
    progress("starting the bench cluster (default durability)")
    cluster = start_cluster()
    settings = show_settings(cluster.dsn())
    progress("cluster: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "command": "make bench-quick" if args.quick else "make bench",
        "machine": machine(),
        "source": source_state(),
        "cluster": settings,
        "plan": plan.__dict__,
        "systems": {},
        "scenarios": only,
    }
    try:
        for system in systems:
            entry: dict[str, Any] = {
                "name": system.name,
                "version": system.version,
                "settings": system.settings_note,
                "database": system.database,
            }
            results["systems"][system.key] = entry
            if system.unavailable:
                entry["error"] = f"not installed: {system.unavailable}"
                progress(f"{system.name}: skipped ({entry['error'][:200]})")
                continue
            dsn = cluster.create_database(system.database)
            progress(f"{system.name} {system.version}: setup in database {system.database}")
            try:
                entry["setup"] = system.call("setup", dsn, timeout=300)
            except Exception as exc:
                entry["error"] = f"setup failed: {exc}"
                progress(f"{system.name}: setup FAILED ({str(exc)[:300]})")
                continue
            reset_statements(dsn)
            plan_steps: list[tuple[str, Callable[[], Any]]] = [
                ("enqueue", lambda s=system, d=dsn: scenarios.enqueue(s, d, plan)),
                ("processing", lambda s=system, d=dsn: scenarios.processing(s, d, plan)),
                ("latency", lambda s=system, d=dsn: scenarios.latency(s, d, plan)),
                ("failure", lambda s=system, d=dsn: scenarios.failure(s, d, plan)),
            ]
            for name, fn in plan_steps:
                if name in only:
                    progress(f"{system.name}: {name}")
                    guarded(entry, name, f"{system.name} {name}", fn)
            try:
                entry["top_statements"] = top_statements(dsn)
            except psycopg.Error as exc:
                entry["top_statements"] = {"error": str(exc)}
            progress(f"{system.name}: done")

        jobs = results["systems"].get("pgmq_jobs", {})
        raw = results["systems"].get("raw_pgmq", {})
        if "error" not in jobs and "error" not in raw and jobs and raw:
            jobs_dsn = cluster.dsn("bench_pgmq_jobs")
            raw_dsn = cluster.dsn("bench_raw_pgmq")
            if "enqueue" in only:
                by_key = {s.key: s for s in systems}
                progress("single-job enqueue: pgmq-jobs and raw PGMQ interleaved call by call")
                guarded(
                    results,
                    "paired_enqueue",
                    "paired_enqueue",
                    lambda: scenarios.paired_enqueue(
                        by_key["pgmq_jobs"], jobs_dsn, by_key["raw_pgmq"], raw_dsn, plan
                    ),
                )
            if "failure" in only:
                progress(
                    "failure cost per SQL call (pgmq-jobs fail vs complete; raw set_vt vs archive)"
                )
                guarded(
                    results,
                    "failure_sql",
                    "failure_sql",
                    lambda: deep_mod.failure_sql(jobs_dsn, raw_dsn, plan),
                )
            if "deep" in only:
                progress(f"deep queues ({plan.deep_n:,} jobs)")
                guarded(results, "deep", "deep", lambda: deep_mod.deep(jobs_dsn, raw_dsn, plan))
            if "issue11" in only:
                deep_claim = (
                    results.get("deep", {}).get("deep", {}).get("pgmq_jobs", {}).get("median")
                    if isinstance(results.get("deep"), dict)
                    else None
                )
                progress("issue 11: dedupe keys, groups, concurrency limits")
                guarded(
                    results,
                    "issue11",
                    "issue11",
                    lambda: deep_mod.issue11(jobs_dsn, plan, deep_claim),
                )
            if "priorities" in only:
                progress("issue 21: claim with priorities, and behind delayed top-priority jobs")
                guarded(
                    results,
                    "priorities",
                    "priorities",
                    lambda: priorities_mod.priorities(jobs_dsn, plan),
                )
        if "upgrade" in only:
            progress(f"upgrade 0.1.0 -> this release of a {plan.deep_n:,}-job database")
            guarded(results, "upgrade", "upgrade", lambda: upgrade_mod.upgrade(cluster, plan))
    finally:
        results["seconds"] = round(elapsed(), 1)
        results["machine"]["loadavg_end"] = loadavg()
        if not args.keep_cluster:
            progress("stopping the bench cluster")
            try:
                cluster.destroy()
            except Exception as exc:
                progress(f"could not stop the cluster: {exc}")

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y-%m-%d")
    path = out_dir / f"{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    progress(f"results: {path.relative_to(ROOT)}")
    if not args.no_report:
        md, png = report.write(results, path)
        chart = png.relative_to(ROOT) if png else "none (matplotlib missing)"
        progress(f"report: {md.relative_to(ROOT)}, chart: {chart}")
    progress(f"done in {elapsed():.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
