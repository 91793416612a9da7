"""The scenarios every system runs (1-5, 7): enqueue, batch enqueue, processing with real
worker processes, pickup latency, the failure path, worker memory and connections."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.common import loadavg, percentile, progress, rates, stats, tree_rss_mb
from bench.systems.base import System

MONITOR_APP = "bench-monitor"


@dataclass
class Plan:
    """How much work each scenario does (``--quick`` shrinks it)."""

    quick: bool
    runs: int
    single_n: int
    paired_n: int  # jobs per run of the alternating single-job enqueue runs (the target)
    producers_n: int
    producers: int
    batch_n: int
    batch_size: int
    process_n: int
    process_runs: int
    process_cap: float
    lat_n: int
    lat_runs: int
    lat_gap_ms: float
    fail_n: int
    deep_n: int
    delayed_n: int
    shallow_n: int
    measure_n: int
    stalled: int
    groups: int
    group_jobs: int
    dedupe_n: int
    limit: int
    cut_after: float  # seconds before a run that cannot finish within the cap is cut short

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                quick=True, runs=1, single_n=200, paired_n=200, producers_n=240, producers=8,
                batch_n=5_000, batch_size=1_000, process_n=1_000, process_runs=1,
                process_cap=4, lat_n=40, lat_runs=1, lat_gap_ms=10, fail_n=200,
                deep_n=50_000, delayed_n=5_000, shallow_n=5_000, measure_n=1_000,
                stalled=1_000, groups=1_000, group_jobs=5, dedupe_n=200, limit=50, cut_after=1.5,
            )  # fmt: skip
        return cls(
            quick=False, runs=3, single_n=1_000, paired_n=1_000, producers_n=2_000, producers=8,
            batch_n=20_000, batch_size=1_000, process_n=20_000, process_runs=3,
            process_cap=12, lat_n=150, lat_runs=3, lat_gap_ms=10, fail_n=5_000,
            deep_n=1_000_000, delayed_n=100_000, shallow_n=20_000, measure_n=5_000,
            stalled=1_000, groups=10_000, group_jobs=100, dedupe_n=1_000, limit=50, cut_after=4,
        )  # fmt: skip


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, application_name=MONITOR_APP)


def analyze(conn: psycopg.Connection[Any]) -> None:
    """ANALYZE the database's own tables (the system catalogs keep their statistics: a
    whole-database ANALYZE spent most of its time on them)."""
    tables = conn.execute(
        "select format('%I.%I', schemaname, relname) from pg_stat_user_tables"
    ).fetchall()
    if tables:
        conn.execute("analyze " + ", ".join(t[0] for t in tables))  # type: ignore[arg-type]


def reset(system: System, dsn: str) -> None:
    with connect(dsn) as conn:
        for stmt in system.reset_sql:
            conn.execute(stmt)  # type: ignore[arg-type]
        analyze(conn)


def remaining(conn: psycopg.Connection[Any], system: System) -> int:
    row = conn.execute(system.remaining_sql).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


# ---------------------------------------------------------------- 1, 2: enqueue


def enqueue(system: System, dsn: str, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    reset(system, dsn)
    a = system.call("enqueue", dsn, n=plan.single_n, producers=1, runs=plan.runs)
    out["single"] = {"n": plan.single_n, "jobs_per_s": rates(plan.single_n, a["runs"])}
    b = system.call("enqueue", dsn, n=plan.producers_n, producers=plan.producers, runs=plan.runs)
    out["producers"] = {
        "n": plan.producers_n,
        "producers": plan.producers,
        "jobs_per_s": rates(plan.producers_n, b["runs"]),
    }
    reset(system, dsn)
    c = system.call("batch", dsn, n=plan.batch_n, batch=plan.batch_size, runs=plan.runs)
    out["batch"] = {
        "n": plan.batch_n,
        "batch_size": plan.batch_size,
        "jobs_per_s": rates(plan.batch_n, c["runs"]),
    }
    reset(system, dsn)
    return out


def paired_enqueue(
    ours: System, ours_dsn: str, raw: System, raw_dsn: str, plan: Plan
) -> dict[str, Any]:
    """Single-job enqueue of pgmq-jobs and raw PGMQ interleaved call by call in one process,
    one connection to each system's database, the same driver code as their own runs
    (``sender``). The systems' own runs lie minutes apart, and the WAL flush that is most of
    a one-job transaction drifts over seconds on a shared disk; back-to-back runs showed an
    order effect too (whichever ran second was about 15 % slower). Calls alternate and which
    system goes first alternates as well (ABBA); the ratio per block of ``paired_n`` jobs
    each is raw time / pgmq-jobs time, i.e. pgmq-jobs' rate relative to raw PGMQ."""
    from bench.systems import pgmq_jobs as ours_driver
    from bench.systems import raw_pgmq as raw_driver

    blocks = 2 if plan.quick else 6
    n = plan.paired_n
    reset(raw, raw_dsn)
    reset(ours, ours_dsn)
    send = {"ours": ours_driver.sender(ours_dsn), "raw": raw_driver.sender(raw_dsn)}
    for key in send:
        for seq in range(50):  # warm-up: connections, prepared statements, caches
            send[key](-seq - 1)
    per_call: dict[str, list[float]] = {"ours": [], "raw": []}
    rates: dict[str, list[float]] = {"ours": [], "raw": []}
    for _ in range(blocks):
        spent, calls = _interleaved(send, [(seq,) for seq in range(n)])
        for key in rates:
            rates[key].append(n / spent[key])
            per_call[key] += calls[key]
    reset(raw, raw_dsn)
    reset(ours, ours_dsn)
    return {
        "n": n,
        "pairs": blocks,
        "pgmq_jobs": stats(rates["ours"], digits=1),
        "raw_pgmq": stats(rates["raw"], digits=1),
        "call_ms_p50": {k: round(percentile(v, 50), 3) for k, v in per_call.items()},
        "ratio": stats([o / r for o, r in zip(rates["ours"], rates["raw"], strict=True)], digits=3),
        "batch": _paired_batches(ours, ours_dsn, raw, raw_dsn, plan, blocks),
        # 8 producers: four driver processes per block, too slow for a smoke run.
        "producers": None
        if plan.quick
        else _paired_producers(ours, ours_dsn, raw, raw_dsn, plan, blocks // 2),
    }


def _interleaved(
    send: dict[str, Any], steps: list[tuple[Any, ...]]
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """``send[key](*step)`` of both systems for every step, which one goes first alternating
    (ABBA): the seconds each system spent, and each of its calls in ms."""
    spent = {"ours": 0.0, "raw": 0.0}
    calls: dict[str, list[float]] = {"ours": [], "raw": []}
    for i, step in enumerate(steps):
        for key in ("ours", "raw") if i % 4 in (0, 3) else ("raw", "ours"):
            t0 = time.perf_counter()
            send[key](*step)
            took = time.perf_counter() - t0
            spent[key] += took
            calls[key].append(took * 1000)
    return spent, calls


def _paired_batches(
    ours: System, ours_dsn: str, raw: System, raw_dsn: str, plan: Plan, blocks: int
) -> dict[str, Any]:
    """Batch enqueue (each system's batch API, ``plan.batch_size`` a call) interleaved batch
    by batch in one process, ABBA; per block of ``plan.batch_n`` jobs of each, the ratio of
    pgmq-jobs' rate to raw PGMQ's."""
    from bench.systems import pgmq_jobs as ours_driver
    from bench.systems import raw_pgmq as raw_driver

    reset(raw, raw_dsn)
    reset(ours, ours_dsn)
    send = {"ours": ours_driver.batch_sender(ours_dsn), "raw": raw_driver.batch_sender(raw_dsn)}
    for key in send:
        send[key](0, plan.batch_size)  # warm-up
    size, rates = plan.batch_size, {"ours": [], "raw": []}
    steps = [(start, min(size, plan.batch_n - start)) for start in range(0, plan.batch_n, size)]
    for _ in range(blocks):
        spent, _calls = _interleaved(send, steps)
        for key in rates:
            rates[key].append(plan.batch_n / spent[key])
        reset(raw, raw_dsn)
        reset(ours, ours_dsn)
    return {
        "n": plan.batch_n,
        "batch_size": size,
        "blocks": blocks,
        "pgmq_jobs": stats(rates["ours"], digits=1),
        "raw_pgmq": stats(rates["raw"], digits=1),
        "ratio": stats([o / r for o, r in zip(rates["ours"], rates["raw"], strict=True)], digits=3),
    }


def _paired_producers(
    ours: System, ours_dsn: str, raw: System, raw_dsn: str, plan: Plan, blocks: int
) -> dict[str, Any]:
    """Enqueue with ``plan.producers`` producers: whole runs of each system back to back in
    ABBA blocks. The second run of a pair tends to be slower, so each block's ratio is the
    geometric mean of its two orders, which cancels that."""
    n = plan.producers_n
    rates: dict[str, list[float]] = {"ours": [], "raw": []}
    ratios = []
    for _ in range(blocks):
        block: list[float] = []
        for order in (("raw", "ours"), ("ours", "raw")):
            got = {}
            for key in order:
                system, dsn = (ours, ours_dsn) if key == "ours" else (raw, raw_dsn)
                reset(system, dsn)
                [seconds] = system.call("enqueue", dsn, n=n, producers=plan.producers, runs=1)[
                    "runs"
                ]
                got[key] = n / seconds
                rates[key].append(got[key])
            block.append(got["ours"] / got["raw"])
        ratios.append((block[0] * block[1]) ** 0.5)
    reset(raw, raw_dsn)
    reset(ours, ours_dsn)
    return {
        "n": n,
        "producers": plan.producers,
        "blocks": blocks,
        "pgmq_jobs": stats(rates["ours"], digits=1),
        "raw_pgmq": stats(rates["raw"], digits=1),
        "ratio": stats(ratios, digits=3),
    }


# ---------------------------------------------------------------- 3, 5, 7: processing


def _stop(procs: list[subprocess.Popen[bytes]], wait: float) -> list[int | None]:
    deadline = time.monotonic() + wait
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    return [p.returncode for p in procs]


def process_once(
    system: System,
    dsn: str,
    plan: Plan,
    *,
    n: int,
    procs: int,
    concurrency: int,
    kind: str = "noop",
    drain: bool = False,
) -> dict[str, Any]:
    """Fill ``n`` jobs, start ``procs`` worker processes and time them until the queue is
    empty. Measured: wall time from spawning the workers until the poller (every 20 ms)
    sees no unfinished job, and from the first finished job until then."""
    reset(system, dsn)
    system.call("fill", dsn, n=n, batch=plan.batch_size, kind=kind)
    with connect(dsn) as conn:
        analyze(conn)
        if not plan.quick:  # no checkpoint during the timed run (a smoke run skips it)
            conn.execute("checkpoint")
    db = system.database
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    rss: dict[int, float] = {}
    max_conns = 0
    first: float | None = None
    left = n
    with connect(dsn) as conn:
        t0 = time.monotonic()
        for i in range(procs):
            started.append(
                system.start_worker(
                    dsn, concurrency, drain=drain, max_seconds=plan.process_cap + 5, number=i
                )
            )
        pids = [p.pid for p, _ in started]
        next_sample = 0.0
        while True:
            now = time.monotonic()
            left = remaining(conn, system)
            if first is None and left < n:
                first = now
            if now >= next_sample:
                next_sample = now + 0.1
                for pid in pids:
                    mb = tree_rss_mb(pid)
                    if mb is not None:
                        rss[pid] = max(rss.get(pid, 0.0), mb)
                row = conn.execute(
                    "select count(*) from pg_stat_activity where datname = %s"
                    " and application_name is distinct from %s and backend_type = 'client backend'",
                    (db, MONITOR_APP),
                ).fetchone()
                max_conns = max(max_conns, int(row[0]) if row else 0)
            if left == 0:
                break
            if now - t0 > plan.process_cap:
                break
            if now - t0 > plan.cut_after and (n - left) / (now - t0) * plan.process_cap < n:
                break  # cannot finish within the cap at this rate: report the partial rate
            if all(p.poll() is not None for p, _ in started):
                break
            time.sleep(0.02)
        t_end = time.monotonic()
    codes = _stop([p for p, _ in started], wait=15 if drain else 0)
    outputs = []
    for _, path in started:
        text = path.read_text(errors="replace").strip().splitlines()
        outputs.append(text[-1] if text else "")
    done = n - left
    wall = t_end - t0
    result: dict[str, Any] = {
        "n": n,
        "done": done,
        "complete": left == 0,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(done / wall, 1) if wall > 0 else None,
        "startup_s": round(first - t0, 3) if first else None,
        "steady_jobs_per_s": round(done / (t_end - first), 1) if first and t_end > first else None,
        "rss_mb_max": round(max(rss.values()), 1) if rss else None,
        "connections_max": max_conns,
        "connections_per_worker": round(max_conns / procs, 2),
        "exit_codes": codes,
        "loadavg_after": loadavg(),
        "worker_output": outputs[:1],
    }
    if left:
        result["note"] = (
            f"partial: {left} of {n} jobs unfinished after {wall:.1f}s (cap {plan.process_cap:g}s,"
            " cut short when the rate could not finish within it); the rate is over that time"
        )
    return result


def processing(system: System, dsn: str, plan: Plan) -> dict[str, Any]:
    configs = [
        ("one_default", 1, 0),
        ("one_c10", 1, 10),
        ("four_c10", 4, 10),
    ]
    if plan.quick:  # a smoke run: one process and four, not the concurrency-10 variant
        configs = [c for c in configs if c[0] != "one_c10"]
    out: dict[str, Any] = {}
    drain = system.key == "pgmq_jobs"
    for name, procs, conc in configs:
        if name == "one_c10" and system.default_concurrency == 10:
            out[name] = {"same_as": "one_default"}
            continue
        runs = []
        for r in range(plan.process_runs):
            progress(f"  {system.name}: processing {name} run {r + 1}/{plan.process_runs}")
            runs.append(
                process_once(
                    system, dsn, plan, n=plan.process_n, procs=procs, concurrency=conc, drain=drain
                )
            )
        out[name] = summarize_runs(runs, procs, conc or system.default_concurrency)
    if system.key == "pgmq_jobs":
        out.update(async_vs_sync(system, dsn, plan))
    reset(system, dsn)
    return out


def async_vs_sync(system: System, dsn: str, plan: Plan) -> dict[str, Any]:
    """One pgmq-jobs worker process at its default concurrency, an ``async def`` no-op
    handler against the ``def`` one, run after run in turn (so both see the same machine):
    ``one_async`` and ``one_sync_paired``."""
    runs: dict[str, list[dict[str, Any]]] = {"sync": [], "async": []}
    try:
        for r in range(plan.process_runs):
            for kind in ("sync", "async"):
                progress(f"  {system.name}: processing one_{kind} run {r + 1}/{plan.process_runs}")
                system.handler_kind = kind  # type: ignore[attr-defined]
                run = process_once(
                    system, dsn, plan, n=plan.process_n, procs=1, concurrency=0, drain=True
                )
                runs[kind].append(run)
    finally:
        system.handler_kind = "sync"  # type: ignore[attr-defined]
    out = {
        "one_sync_paired": summarize_runs(runs["sync"], 1, system.default_concurrency),
        "one_async": summarize_runs(runs["async"], 1, system.default_concurrency),
    }
    pairs = [
        a["jobs_per_s"] / s_["jobs_per_s"]
        for s_, a in zip(runs["sync"], runs["async"], strict=True)
        if a.get("jobs_per_s") and s_.get("jobs_per_s")
    ]
    out["one_async"]["vs_sync"] = stats([round(p, 3) for p in pairs], 3) if pairs else None
    return out


def summarize_runs(runs: list[dict[str, Any]], procs: int, concurrency: int) -> dict[str, Any]:
    ok = [r for r in runs if r.get("complete")]
    use = ok or runs
    return {
        "processes": procs,
        "concurrency": concurrency,
        "n": runs[0]["n"],
        "complete_runs": f"{len(ok)}/{len(runs)}",
        "jobs_per_s": stats([r["jobs_per_s"] for r in use if r["jobs_per_s"]], 1),
        "steady_jobs_per_s": stats(
            [r["steady_jobs_per_s"] for r in use if r["steady_jobs_per_s"]], 1
        ),
        "startup_s": stats([r["startup_s"] for r in use if r["startup_s"] is not None]),
        "rss_mb_max": max((r["rss_mb_max"] or 0) for r in runs),
        "connections_per_worker": max(r["connections_per_worker"] for r in runs),
        "runs": runs,
    }


def failure(system: System, dsn: str, plan: Plan) -> dict[str, Any]:
    """Jobs that fail once then succeed vs the same number of plain jobs, one worker
    process at concurrency 10 (continuous mode for every system: a draining worker may
    leave before a retry falls due). Cost of a failed attempt relative to a completion:
    rate_plain / rate_fail_once - 1 on the steady-state rates (first finished job to empty,
    or to the cut-off of a run that could not finish within the cap)."""
    if not system.supports_failure:
        return {"skipped": system.failure_note}
    ok_runs, bad_runs = [], []
    for r in range(plan.process_runs):
        progress(f"  {system.name}: failure path run {r + 1}/{plan.process_runs}")
        ok_runs.append(process_once(system, dsn, plan, n=plan.fail_n, procs=1, concurrency=10))
        bad_runs.append(
            process_once(
                system, dsn, plan, n=plan.fail_n, procs=1, concurrency=10, kind="fail_once"
            )
        )
    reset(system, dsn)
    ratios = [
        o["steady_jobs_per_s"] / b["steady_jobs_per_s"] - 1
        for o, b in zip(ok_runs, bad_runs, strict=True)
        if o["steady_jobs_per_s"] and b["steady_jobs_per_s"]
    ]
    return {
        "n": plan.fail_n,
        "plain_jobs_per_s": stats([r["steady_jobs_per_s"] or 0 for r in ok_runs], 1),
        "fail_once_jobs_per_s": stats([r["steady_jobs_per_s"] or 0 for r in bad_runs], 1),
        "failed_attempt_vs_completion": stats(ratios, 2),
        "complete": all(r["complete"] for r in ok_runs + bad_runs),
        "runs": {"plain": ok_runs, "fail_once": bad_runs},
    }


# ---------------------------------------------------------------- 4: pickup latency


def _read_times(path: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                seq = int(parts[0])
                if seq >= 0 and seq not in out:
                    out[seq] = float(parts[1])
    return out


def latency(system: System, dsn: str, plan: Plan) -> dict[str, Any]:
    """An idle worker (its default concurrency); jobs enqueued one at a time ``gap`` ms
    apart; latency = handler start (its clock) - the producer's time right after commit."""
    reset(system, dsn)
    tmp = Path(tempfile.mkdtemp(prefix="pgmq-jobs-bench-"))
    os.chmod(tmp, 0o777)
    starts = tmp / "starts.txt"
    starts.touch()
    os.chmod(starts, 0o666)
    proc, _ = system.start_worker(
        dsn, 0, drain=False, max_seconds=600, number=90, lat_file=str(starts)
    )
    gap = max(plan.lat_gap_ms, system.lat_gap_ms)
    n = plan.lat_n if gap == plan.lat_gap_ms else max(6 if plan.quick else 10, plan.lat_n // 8)
    per_run: list[dict[str, float]] = []
    missing = 0
    try:
        time.sleep(0.6 if plan.quick else 2.0)  # the worker's start-up (no system reports it)
        for r in range(plan.lat_runs):
            commits_file = tmp / f"commits-{r}.txt"
            starts.write_text("")
            system.call("latency", dsn, n=n, gap_ms=gap, out=str(commits_file))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(_read_times(starts)) < n:
                time.sleep(0.1)
            commits = _read_times(commits_file)
            begun = _read_times(starts)
            lat = [(begun[s] - commits[s]) * 1000 for s in commits if s in begun]
            missing += len(commits) - len(lat)
            if lat:
                per_run.append(
                    {
                        "p50": percentile(lat, 50),
                        "p95": percentile(lat, 95),
                        "p99": percentile(lat, 99),
                        "max": max(lat),
                        "n": len(lat),
                    }
                )
    finally:
        _stop([proc], wait=0)
    reset(system, dsn)
    return {
        "n_per_run": n,
        "gap_ms": gap,
        "p50_ms": stats([r["p50"] for r in per_run], 2),
        "p95_ms": stats([r["p95"] for r in per_run], 2),
        "p99_ms": stats([r["p99"] for r in per_run], 2),
        "max_ms": stats([r["max"] for r in per_run], 2),
        "missing": missing,
    }
