# ruff: noqa: RUF001, RUF002, E501 (the report prints multiplication signs, dashes and long rows)
"""Results JSON → the Markdown tables of BENCHMARKS.md and a PNG chart.

    python -m bench.report bench/results/<date>.json

A full run writes BENCHMARKS.md at the repository root; a quick run writes
bench/results/<date>-quick.md beside its JSON, so a smoke run never replaces the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTES = Path(__file__).resolve().parent / "notes.md"
ORDER = ["pgmq_jobs", "raw_pgmq", "procrastinate_sys", "pgqueuer_sys", "pgboss", "graphile"]


def dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fmt_num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def cell(s: Any, digits: int = 0) -> str:
    """median (min–max) of a stats dict; an error or skip as a short note."""
    if s is None:
        return "–"
    if isinstance(s, dict) and "error" in s:
        return "error"
    if not isinstance(s, dict) or s.get("median") is None:
        return "–"
    if s["min"] == s["max"]:
        return fmt_num(s["median"], digits)
    return (
        f"{fmt_num(s['median'], digits)} ({fmt_num(s['min'], digits)}–{fmt_num(s['max'], digits)})"
    )


def median(s: Any) -> float | None:
    return s.get("median") if isinstance(s, dict) else None


def proc(entry: dict[str, Any], config: str) -> dict[str, Any] | None:
    p = dig(entry, "processing", config)
    if isinstance(p, dict) and "same_as" in p:
        p = dig(entry, "processing", p["same_as"])
    return p if isinstance(p, dict) else None


def systems(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = results.get("systems", {})
    return [(k, found[k]) for k in ORDER if k in found]


def main_table(results: dict[str, Any]) -> list[str]:
    cols = systems(results)
    head = "| | " + " | ".join(e["name"] for _, e in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]

    def row(label: str, get: Any, digits: int = 0) -> None:
        cells = []
        for _, e in cols:
            if "error" in e:
                cells.append("n/a")
                continue
            try:
                cells.append(get(e, digits))
            except (KeyError, TypeError):
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def stat(*path: str) -> Any:
        return lambda e, d: cell(dig(e, *path), d)

    def processing(config: str, field: str = "jobs_per_s") -> Any:
        def get(e: dict[str, Any], d: int) -> str:
            p = proc(e, config)
            if p is None:
                err = dig(e, "processing", "error")
                return "error" if err else "–"
            text = cell(p.get(field), d)
            if p.get("complete_runs") and not p["complete_runs"].startswith(
                p["complete_runs"].split("/")[1]
            ):
                text += f" ⚠ {p['complete_runs']} complete"
            return text

        return get

    def scalar(config: str, field: str, digits: int = 1) -> Any:
        return lambda e, d: fmt_num((proc(e, config) or {}).get(field), digits)

    n = results["plan"]
    row(
        f"Enqueue, 1 job/txn, 1 connection (jobs/s, {n['single_n']:,} jobs)",
        stat("enqueue", "single", "jobs_per_s"),
    )
    row(
        f"Enqueue, 1 job/txn, {n['producers']} producers (jobs/s, {n['producers_n']:,} jobs)",
        stat("enqueue", "producers", "jobs_per_s"),
    )
    row(
        f"Batch enqueue, {n['batch_size']:,}/batch (jobs/s, {n['batch_n']:,} jobs)",
        stat("enqueue", "batch", "jobs_per_s"),
    )
    row(
        f"Processing {n['process_n']:,} no-op jobs, 1 worker process, its default concurrency (jobs/s)",
        processing("one_default"),
    )
    row(
        "… same, steady state (first finished job → empty)",
        processing("one_default", "steady_jobs_per_s"),
    )
    row("… 1 worker process, concurrency 10 (jobs/s)", processing("one_c10"))
    row(
        "… 1 worker process, def handler, paired with the next row (jobs/s)",
        processing("one_sync_paired"),
    )
    row("… 1 worker process, async def handler (jobs/s)", processing("one_async"))
    row("… 4 worker processes, concurrency 10 each (jobs/s)", processing("four_c10"))
    row(
        "… same, steady state (first finished job → empty)",
        processing("four_c10", "steady_jobs_per_s"),
    )
    row(
        "Worker start → first job finished (s, 1 process)",
        processing("one_default", "startup_s"),
        2,
    )
    row(
        "Worker start → first job finished (s, 4 processes started together)",
        processing("four_c10", "startup_s"),
        2,
    )
    row("Pickup latency p50 (ms)", stat("latency", "p50_ms"), 2)
    row("Pickup latency p95 (ms)", stat("latency", "p95_ms"), 2)
    row("Pickup latency p99 (ms)", stat("latency", "p99_ms"), 2)
    row(
        "Failed attempt, extra time vs a completion (×)",
        lambda e, d: (
            "skipped¹"
            if dig(e, "failure", "skipped")
            else cell(dig(e, "failure", "failed_attempt_vs_completion"), 2)
        ),
    )
    row("Worker RSS, max (MB, 1 process)", scalar("one_default", "rss_mb_max"))
    row("Worker RSS, max (MB, 1 process at concurrency 10)", scalar("one_c10", "rss_mb_max"))
    row(
        "DB connections per worker process (max, 1 process)",
        scalar("one_default", "connections_per_worker"),
    )
    row(
        "DB connections per worker process (max, 4 processes)",
        scalar("four_c10", "connections_per_worker"),
    )
    return lines


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def targets(results: dict[str, Any]) -> list[str]:
    sy = results.get("systems", {})
    j, raw = sy.get("pgmq_jobs", {}), sy.get("raw_pgmq", {})
    rows: list[tuple[str, str, bool | None]] = []

    def add(name: str, figure: str, ok: bool | None) -> None:
        rows.append((name, figure, ok))

    def enqueue_target(name: str, metric: str, line: float, paired: Any, how: str) -> None:
        """Ours against raw PGMQ from the paired measure where there is one, else from the
        two systems' own runs (shown beside it either way)."""
        ours = median(dig(j, "enqueue", metric, "jobs_per_s"))
        theirs = median(dig(raw, "enqueue", metric, "jobs_per_s"))
        r = ratio(ours, theirs)
        own = f"{fmt_num(ours)} vs {fmt_num(theirs)} jobs/s = {r}×"
        if isinstance(paired, dict) and isinstance(paired.get("ratio"), dict):
            pr = paired["ratio"]
            figure = f"{pr['median']}× ({pr['min']}–{pr['max']}): {how}; the systems' own runs above: {own}"
            add(name, figure, pr["median"] >= line)
        else:
            add(name, own, None if r is None else r >= line)

    # The single-job pairs at the top level, the others beside them.
    paired = results.get("paired_enqueue") or {}
    producers, batch = paired.get("producers") or {}, paired.get("batch") or {}
    enqueue_target(
        "single-job enqueue ≥ 0.9× raw pgmq.send",
        "single",
        0.9,
        paired,
        f"median of {paired.get('pairs')} blocks of {paired.get('n', 0):,} calls of each,"
        " interleaved call by call in one process",
    )
    enqueue_target(
        f"(also) {results['plan']['producers']} producers ≥ 0.9× raw",
        "producers",
        0.9,
        producers,
        f"median of {producers.get('blocks')} ABBA blocks of back-to-back runs"
        f" ({producers.get('n', 0):,} jobs each)",
    )
    b_j = median(dig(j, "enqueue", "batch", "jobs_per_s"))
    add(
        "batch enqueue ≥ 10,000 jobs/s",
        f"{fmt_num(b_j)} jobs/s",
        None if b_j is None else b_j >= 10_000,
    )
    enqueue_target(
        "batch enqueue ≥ 0.8× raw send_batch",
        "batch",
        0.8,
        batch,
        f"median of {batch.get('blocks')} blocks of {batch.get('n', 0):,} jobs"
        " of each, interleaved batch by batch in one process",
    )
    w_j = median((proc(j, "one_default") or {}).get("jobs_per_s"))
    w_r = median((proc(raw, "one_default") or {}).get("jobs_per_s"))
    add(
        "one worker process ≥ 5,000 no-op jobs/s",
        f"{fmt_num(w_j)} jobs/s (steady {fmt_num(median((proc(j, 'one_default') or {}).get('steady_jobs_per_s')))})",
        None if w_j is None else w_j >= 5000,
    )
    r = ratio(w_j, w_r)
    add(
        "one worker process ≥ 0.7× the raw PGMQ loop",
        f"{fmt_num(w_j)} vs {fmt_num(w_r)} jobs/s = {r}×",
        None if r is None else r >= 0.7,
    )
    a_j = median((proc(j, "one_async") or {}).get("jobs_per_s"))
    s_j = median((proc(j, "one_sync_paired") or {}).get("jobs_per_s"))
    paired_ratio = (proc(j, "one_async") or {}).get("vs_sync")
    if a_j is not None:
        r_as = median(paired_ratio) if isinstance(paired_ratio, dict) else ratio(a_j, s_j)
        add(
            "async ≥ 0.9× sync (one worker process, no-op handlers)",
            f"{fmt_num(a_j)} vs {fmt_num(s_j)} jobs/s = {r_as}× (median of the run-by-run"
            " ratios, async and def runs in turn)",
            None if r_as is None else r_as >= 0.9,
        )
        r_ar = ratio(a_j, w_r)
        add(
            "(also) async one worker process ≥ 0.9× the raw PGMQ loop",
            f"{fmt_num(a_j)} vs {fmt_num(w_r)} jobs/s = {r_ar}×",
            None if r_ar is None else r_ar >= 0.9,
        )
    for config, label in (
        ("one_default", "1 process, defaults"),
        ("one_c10", "1 process, concurrency 10"),
        ("four_c10", "4 processes"),
    ):
        mine = median((proc(j, config) or {}).get("jobs_per_s"))
        if isinstance(dig(j, "processing"), dict) and dig(j, "processing", config) is None:
            continue  # not run (--quick leaves out concurrency 10 in one process)
        best_name, best = None, None
        for key, e in sy.items():
            if key in ("pgmq_jobs", "raw_pgmq") or "error" in e:
                continue
            v = median((proc(e, config) or {}).get("jobs_per_s"))
            if v is not None and (best is None or v > best):
                best_name, best = e["name"], v
        add(
            f"ahead of every peer on processing ({label})",
            f"{fmt_num(mine)} vs best peer {best_name} {fmt_num(best)} jobs/s",
            None if mine is None or best is None else mine > best,
        )
    p50, p99 = median(dig(j, "latency", "p50_ms")), median(dig(j, "latency", "p99_ms"))
    add(
        "pickup p50 < 10 ms and p99 < 50 ms",
        f"p50 {p50} ms, p99 {p99} ms",
        None if p50 is None else p50 < 10 and p99 < 50,
    )
    add(
        "DESIGN.md: pickup p50 ≤ 1 ms and p99 ≤ 5 ms",
        f"p50 {p50} ms, p99 {p99} ms",
        None if p50 is None else p50 <= 1 and p99 <= 5,
    )
    f = median(dig(j, "failure", "failed_attempt_vs_completion"))
    add(
        "a failed attempt ≤ 2× a completion (end to end, worker)",
        f"{f}× (extra time per failed attempt / time per completion; the worker reports the failures of each flush in one fail_batch call)",
        None if f is None else f <= 2,
    )
    fs = dig(results, "failure_sql", "pgmq_jobs")
    if isinstance(fs, dict):
        add(
            "a failed attempt ≤ 2× a completion (per SQL call)",
            f"fail() {median(fs['fail_ms'])} ms vs complete() of one {median(fs['complete_one_ms'])} ms = {fs['fail_vs_complete_one']}× "
            f"(batched complete: {median(fs['complete_batched_ms_per_job'])} ms/job)",
            fs["fail_vs_complete_one"] <= 2,
        )
    if isinstance(fs, dict) and "fail_batched_ms_per_job" in fs:
        add(
            "a failed attempt ≤ 2× a completion (per job, 100 per call)",
            f"fail_batch() {median(fs['fail_batched_ms_per_job'])} ms/job vs complete()"
            f" {median(fs['complete_batched_ms_per_job'])} ms/job = {fs['fail_vs_complete_batched']}×",
            fs["fail_vs_complete_batched"] <= 2,
        )
    d = results.get("deep") if isinstance(results.get("deep"), dict) else {}
    rj = dig(d, "ratios", "pgmq_jobs")
    rr = dig(d, "ratios", "raw")
    if rj:
        add(
            f"claim/complete at {d['depth']:,} deep ≥ 0.8× shallow",
            f"{rj['deep_vs_shallow']}× (raw read/archive: {rr['deep_vs_shallow'] if rr else '–'}×)",
            rj["deep_vs_shallow"] >= 0.8,
        )
        add(
            f"claim at {d['depth']:,} deep with {d['delayed_ahead']:,} delayed ahead ≥ 0.8× shallow",
            f"{rj['deep_delayed_vs_shallow']}× (raw pgmq.read: {rr['deep_delayed_vs_shallow'] if rr else '–'}×)",
            rj["deep_delayed_vs_shallow"] >= 0.8,
        )
    sw = median(dig(d, "sweep", "ms"))
    add(
        f"sweep() < 250 ms with {dig(d, 'sweep', 'stalled') or '–'} stalled jobs at depth",
        f"{sw} ms",
        None if sw is None else sw < 250,
    )
    qs = dig(d, "queue_stats")
    if isinstance(qs, dict) and "skipped" in qs:
        add("queue_stats < 100 ms at depth", qs["skipped"], None)
    else:
        v = median(dig(d, "queue_stats", "ms"))
        add("queue_stats < 100 ms at depth", f"{v} ms", None if v is None else v < 100)
    rss = (
        max(
            ((proc(j, c) or {}).get("rss_mb_max") or 0)
            for c in ("one_default", "one_c10", "four_c10")
        )
        or None
    )
    add(
        "worker RSS < 100 MB",
        f"{rss} MB (max over the processing runs)",
        None if rss is None else rss < 100,
    )
    conns = (
        max(
            ((proc(j, c) or {}).get("connections_per_worker") or 0)
            for c in ("one_default", "one_c10", "four_c10")
        )
        or None
    )
    add("≤ 2 connections per worker", f"{conns}", None if conns is None else conns <= 2)
    pr = dig(results, "priorities")
    if isinstance(pr, dict) and "mixed_vs_none" in pr:
        add(
            f"claim with priorities {pr['priorities']} ≥ 0.8× claim without",
            f"{pr['mixed_vs_none']}× ({median(pr['rate_mixed'])} vs "
            f"{median(pr['rate_none'])} jobs/s)",
            None if pr["mixed_vs_none"] is None else pr["mixed_vs_none"] >= 0.8,
        )
        deep = pr.get("deep_vs_shallow")
        add(
            f"claim at {pr['depth']:,} deep with {pr['delayed_ahead']:,} delayed jobs of the "
            "top priority ahead ≥ 0.8× shallow (both with priorities)",
            f"{deep}× ({median(pr['rate_deep'])} vs {median(pr['rate_mixed'])} jobs/s; "
            f"against the shallow queue without priorities: {pr.get('deep_vs_none', '–')}×)",
            None if deep is None else deep >= 0.8,
        )
    up = dig(results, "upgrade")
    if isinstance(up, dict) and "upgrade_seconds" in up:
        add(
            f"upgrade 0.1.0 → {up.get('version')} of {up['jobs']:,} jobs completes in seconds",
            f"{up['upgrade_seconds']} s",
            up["upgrade_seconds"] < 10,
        )
        worst = up.get("claim_ms_max_during")
        round_worst = up.get("round_ms_max_during")
        add(
            "upgrade blocks claim for well under a second (longest claim overlapping it)",
            f"{worst} ms; longest claim + complete round {round_worst} ms (median claim "
            f"before: {up.get('claim_ms_median_before')} ms, {up.get('claims_during')} "
            "claims overlapped)",
            None if worst is None or round_worst is None else max(worst, round_worst) < 500,
        )

    lines = ["| target | figure | |", "|---|---|---|"]
    lines += [f"| {n} | {fig} | {verdict(ok)} |" for n, fig, ok in rows]
    return lines


def deep_table(results: dict[str, Any]) -> list[str]:
    d = results.get("deep")
    if not isinstance(d, dict):
        return []
    if "error" in d:
        return [f"Deep-queue scenario failed: `{d['error']}`"]
    lines = [
        "| claim+complete loop, 100 per call (jobs/s) | pgmq-jobs claim/complete | raw pgmq read/archive |",
        "|---|---|---|",
        f"| shallow ({results['plan']['shallow_n']:,} ready) | {cell(dig(d, 'shallow', 'pgmq_jobs'))} | {cell(dig(d, 'shallow', 'raw'))} |",
        f"| deep ({d['depth']:,} ready) | {cell(dig(d, 'deep', 'pgmq_jobs'))} | {cell(dig(d, 'deep', 'raw'))} |",
        f"| deep, {d['delayed_ahead']:,} delayed ahead of {d['depth']:,} ready | {cell(dig(d, 'deep_delayed', 'pgmq_jobs'))} | {cell(dig(d, 'deep_delayed', 'raw'))} |",
        f"| ratio deep / shallow | {dig(d, 'ratios', 'pgmq_jobs', 'deep_vs_shallow')}× | {dig(d, 'ratios', 'raw', 'deep_vs_shallow')}× |",
        f"| ratio deep with delayed ahead / shallow | {dig(d, 'ratios', 'pgmq_jobs', 'deep_delayed_vs_shallow')}× | {dig(d, 'ratios', 'raw', 'deep_delayed_vs_shallow')}× |",
        f"| fill time of the deep queue (s) | {dig(d, 'fill_s', 'pgmq_jobs_enqueue_batch')} (enqueue_batch) | {dig(d, 'fill_s', 'raw_send_batch')} (send_batch) |",
        "",
        f"`sweep()` with {dig(d, 'sweep', 'stalled')} stalled jobs (claimed, then fast-forwarded to vt in the past and "
        f"read_ct = max_attempts) among the deep queues: {cell(dig(d, 'sweep', 'ms'), 1)} ms; moved to the DLQ per run: "
        f"{dig(d, 'sweep', 'expired_to_dlq')}.",
        "",
    ]
    qs = dig(d, "queue_stats")
    if isinstance(qs, dict) and "skipped" in qs:
        lines.append(f"`select * from pgmq_jobs.queue_stats`: skipped, {qs['skipped']}.")
    else:
        lines.append(
            f"`select * from pgmq_jobs.queue_stats` with the deep queues in place: {cell(dig(d, 'queue_stats', 'ms'), 1)} ms."
        )
    ex = d.get("explain") or {}
    if ex:
        lines += [
            "",
            "Plans on the layout with delayed jobs ahead (EXPLAIN ANALYZE, BUFFERS):",
            "",
            "```",
            "-- pgmq-jobs claim: ready rows by vt",
            *ex.get("pgmq_jobs_claim_scan", []),
            "-- PGMQ read: ready rows by msg_id",
            *ex.get("raw_read_scan", []),
            "```",
        ]
    return lines


def issue11_table(results: dict[str, Any]) -> list[str]:
    i = results.get("issue11")
    if not isinstance(i, dict):
        return []
    if "error" in i:
        return [f"Issue-11 rows failed: `{i['error']}`"]
    dd, g, c = i.get("dedupe", {}), i.get("groups", {}), i.get("concurrency_limit", {})
    return [
        "| | with | without | ratio |",
        "|---|---|---|---|",
        f"| enqueue, 1 job/txn, with a unique dedupe_key (jobs/s, {dd.get('n', 0):,} jobs) | {cell(dd.get('dedupe_key_jobs_per_s'))} | {cell(dd.get('plain_jobs_per_s'))} | {dd.get('ratio')}× |",
        f"| claim(100)+complete with {g.get('groups', 0):,} active groups × {g.get('jobs_per_group')} jobs (jobs/s) | {cell(g.get('claim_jobs_per_s'))} | {fmt_num(g.get('baseline_jobs_per_s'))} ({g.get('baseline')}) | {g.get('ratio')}× |",
        f"| claim(10)+complete with concurrency => {c.get('limit')} (jobs/s) | {cell(c.get('limited_jobs_per_s'))} | {cell(c.get('unlimited_jobs_per_s'))} | {c.get('ratio')}× |",
        "",
        f"Filling the grouped queue through `enqueue_batch(…, group_keys => …)`: {g.get('fill_s')} s "
        f"({fmt_num(g.get('fill_jobs_per_s'))} jobs/s; each item goes through enqueue's group rules).",
    ]


def upgrade_lines(results: dict[str, Any]) -> list[str]:
    up = dig(results, "upgrade")
    if not isinstance(up, dict) or "upgrade_seconds" not in up:
        return [f"Not measured{': ' + str(up) if up else ''}."]
    return [
        f"A database built from the shipped 0.1.0 migration, holding {up['jobs']:,} jobs in one "
        f"queue ({up['delayed']:,} delayed, {up['in_flight']:,} in flight; queue table "
        f"{up['table_size']}), upgraded by `pgmq-jobs install` ({', '.join(up['steps'])}) to "
        f"{up['version']} while a worker connection claims and completes one job at a time: "
        f"the upgrade took **{up['upgrade_seconds']} s**; the longest claim that overlapped it "
        f"took **{up['claim_ms_max_during']} ms**, the longest claim-and-complete round "
        f"**{up.get('round_ms_max_during')} ms** ({up['claims_during']} claims overlapped; "
        f"median claim before it {up['claim_ms_median_before']} ms). Claim errors: "
        f"{len(up['claim_errors'])}."
    ]


def settings_list(results: dict[str, Any]) -> list[str]:
    lines = []
    for _, e in systems(results):
        status = f" — **not measured**: {e['error']}" if "error" in e else ""
        lines.append(f"- **{e['name']}** {e.get('version', '')}: {e.get('settings', '')}{status}")
        skipped = dig(e, "failure", "skipped")
        if skipped:
            lines.append(f"  - ¹ failure path skipped: {skipped}")
        for scen in ("enqueue", "processing", "latency", "failure"):
            err = dig(e, scen, "error")
            if err:
                lines.append(f"  - {scen} failed: `{err[:400]}`")
    return lines


def top_statements(results: dict[str, Any]) -> list[str]:
    e = dig(results, "systems", "pgmq_jobs", "top_statements")
    if not isinstance(e, list):
        return []
    lines = ["| statement | calls | total ms | mean ms |", "|---|---|---|---|"]
    for s in e:
        q = s["query"].replace("|", "\\|")
        lines.append(f"| `{q}` | {s['calls']:,} | {s['total_ms']:,.0f} | {s['mean_ms']:.3f} |")
    return lines


def chart(results: dict[str, Any], png: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cols = [(k, e) for k, e in systems(results) if "error" not in e]
    names = [e["name"] for _, e in cols]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    panels = [
        (
            axes[0][0],
            "Enqueue (jobs/s, log scale)",
            [
                ("1 job/txn", lambda e: median(dig(e, "enqueue", "single", "jobs_per_s"))),
                ("8 producers", lambda e: median(dig(e, "enqueue", "producers", "jobs_per_s"))),
                ("batches", lambda e: median(dig(e, "enqueue", "batch", "jobs_per_s"))),
            ],
            True,
        ),
        (
            axes[0][1],
            "Processing no-op jobs (jobs/s, log scale)",
            [
                (
                    "1 process, default",
                    lambda e: median((proc(e, "one_default") or {}).get("jobs_per_s")),
                ),
                (
                    "1 process, conc. 10",
                    lambda e: median((proc(e, "one_c10") or {}).get("jobs_per_s")),
                ),
                ("4 processes", lambda e: median((proc(e, "four_c10") or {}).get("jobs_per_s"))),
            ],
            True,
        ),
        (
            axes[1][0],
            "Pickup latency (ms, log scale; lower is better)",
            [
                ("p50", lambda e: median(dig(e, "latency", "p50_ms"))),
                ("p99", lambda e: median(dig(e, "latency", "p99_ms"))),
            ],
            True,
        ),
        (
            axes[1][1],
            "Worker cost (lower is better)",
            [
                ("RSS MB (1 process)", lambda e: (proc(e, "one_default") or {}).get("rss_mb_max")),
                (
                    "connections/worker ×10",
                    lambda e: (
                        ((proc(e, "one_default") or {}).get("connections_per_worker") or 0) * 10
                    ),
                ),
            ],
            False,
        ),
    ]
    for ax, title, series, log in panels:
        width = 0.8 / len(series)
        for i, (label, get) in enumerate(series):
            vals = []
            for _, e in cols:
                try:
                    v = get(e)
                except (KeyError, TypeError):
                    v = None
                vals.append(v or 0)
            xs = [x + i * width for x in range(len(cols))]
            bars = ax.bar(xs, vals, width, label=label)
            for bar, v in zip(bars, vals, strict=True):
                if v:
                    ax.annotate(
                        f"{v:,.0f}" if v >= 10 else f"{v:.1f}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7,
                    )  # fmt: skip
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(cols))])
        ax.set_xticklabels(names, fontsize=8)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"pgmq-jobs vs raw PGMQ and peers — {results['mode']} run {results['started'][:10]}, "
        f"{results['machine'].get('cpus')} CPUs, PostgreSQL {results['cluster'].get('server_version', '').split()[0]} "
        f"(fsync {results['cluster'].get('fsync')}, synchronous_commit {results['cluster'].get('synchronous_commit')})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def markdown(results: dict[str, Any], json_path: Path, png: Path | None) -> str:
    c = results["cluster"]
    m = results["machine"]
    rel = json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path
    src = results.get("source") or {}
    dirty = src.get("uncommitted") or []
    parts = [
        "## pgmq-jobs side by side with raw PGMQ and the peers (`make bench`)",
        "",
        f"Produced by `{results['command']}` ({results['mode']} run, {results['started']}, "
        f"{results['seconds']:.0f} s) → [`{rel}`]({rel}). Every figure is the median of the runs "
        f"with (min–max); {results['plan']['runs']} runs for enqueue and the deep queue, "
        f"{results['plan']['process_runs']} for processing and the failure path, "
        f"{results['plan']['lat_runs']} × {results['plan']['lat_n']} jobs for pickup latency. "
        f"Source measured: commit `{src.get('commit', '?')}`"
        + (f" with uncommitted changes in {', '.join(d[3:] for d in dirty)}." if dirty else "."),
        "",
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('memory')}, Python {m.get('python')}, "
        f"Node {m.get('node')}. One throwaway cluster (PostgreSQL {c.get('server_version')}) for all systems, "
        f"each in its own database: fsync={c.get('fsync')}, synchronous_commit={c.get('synchronous_commit')}, "
        f"full_page_writes={c.get('full_page_writes')}, shared_buffers={c.get('shared_buffers')}, "
        f"max_wal_size={c.get('max_wal_size')}, checkpoint_timeout={c.get('checkpoint_timeout')}, "
        f"shared_preload_libraries={c.get('shared_preload_libraries')}. Everything (cluster, drivers, "
        "workers) shares the same CPUs. Load average (1/5/15 min) at the start: "
        f"{m.get('loadavg_start')}, at the end: {m.get('loadavg_end')}; each processing run "
        "records it too (`loadavg_after` in the JSON): on a shared machine, other work skews "
        "every figure.",
        "",
    ]
    if png:
        prel = png.relative_to(ROOT) if png.is_relative_to(ROOT) else png
        parts += [f"![comparison chart]({prel})", ""]
    parts += ["### Side by side", "", *main_table(results), ""]
    parts += [
        "What is measured: enqueue figures are timed inside each system's driver process from the "
        "first call to the last commit (connections opened beforehand). Processing: the queue is "
        "filled with the batch API and ANALYZEd, then the worker processes are spawned; the wall "
        "time runs from the spawn until a poller (every 20 ms, in the system's database) sees no "
        "unfinished job, so it includes process start-up (the start-up row shows how much); the "
        "steady-state row runs from the first finished job. pgmq-jobs runs the real `pgmq-jobs "
        "worker --drain` CLI; the peers run in continuous mode and get SIGTERM once the queue is "
        "empty. Pickup latency: one idle worker at its default concurrency; a producer process "
        "enqueues one job per transaction every "
        f"{results['plan']['lat_gap_ms']:g} ms and notes `time.time()` right after each commit; the "
        "handler notes its start time (same clock); both go to files, not to the database. "
        "Failure path: "
        f"{results['plan']['fail_n']:,} jobs that fail their first attempt (retry at once) vs as "
        "many plain ones, one worker process at concurrency 10, every system in continuous "
        "mode; the figure is rate(plain) / rate(fail once) − 1 on the steady-state rates, i.e. "
        "the extra cost of one failed attempt in units of one completion. RSS: VmRSS of the worker "
        "process (and its children), sampled every 100 ms. Connections: client backends in the "
        "system's database, sampled every 100 ms, divided by the number of worker processes.",
        "",
        "### Targets (DESIGN.md and issue 6)",
        "",
        *targets(results),
        "",
        "### Deep queue (scenario 6): pgmq-jobs vs raw PGMQ on the same layouts",
        "",
        *deep_table(results),
        "",
        "### Upgrade of a deep database (issue 17; pgmq-jobs only)",
        "",
        *upgrade_lines(results),
        "",
        "### Unique jobs, ordered groups, concurrency limits (issue 11; pgmq-jobs only)",
        "",
        *issue11_table(results),
        "",
        "### Systems and the settings used",
        "",
        *settings_list(results),
        "",
        "### Where pgmq-jobs' database time went (pg_stat_statements, its database, whole run)",
        "",
        *top_statements(results),
        "",
    ]
    if NOTES.exists():
        parts += [NOTES.read_text().rstrip(), ""]
    return "\n".join(parts)


BEGIN = "<!-- make bench: generated from bench/results by bench/report.py; begin -->"
END = "<!-- make bench: end -->"


def merge(existing: str | None, body: str) -> str:
    """Put the generated block into BENCHMARKS.md, keeping every other section as it is:
    between the markers when they are there, else right after the title."""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}\n"
    if not existing:
        return f"# Benchmarks\n\n{block}"
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return f"{head}{block}\n{tail}" if tail else f"{head}{block}"
    lines = existing.splitlines(keepends=True)
    if lines and lines[0].startswith("# "):
        return f"{lines[0]}\n{block}\n{''.join(lines[1:]).lstrip(chr(10))}"
    return f"# Benchmarks\n\n{block}\n{existing}"


def write(results: dict[str, Any], json_path: Path) -> tuple[Path, Path | None]:
    quick = results.get("mode") == "quick"
    png = chart(results, json_path.with_suffix(".png"))
    md_path = json_path.with_suffix(".md") if quick else ROOT / "BENCHMARKS.md"
    body = markdown(results, json_path, png)
    existing = None if quick or not md_path.exists() else md_path.read_text()
    md_path.write_text(merge(existing, body))
    return md_path, png


if __name__ == "__main__":
    path = Path(sys.argv[1]).resolve()
    md, png = write(json.loads(path.read_text()), path)
    print(md, png)
