"""Issue 21's rows: claim with priorities against claim without, and claim on a deep queue
whose top priority holds many delayed jobs ahead of ready jobs of every priority.

All through pgmq-jobs' public SQL API, with the claim/complete loop of bench.deep; each
figure is the median of ``plan.runs`` runs, the compared loops run in turn."""

from __future__ import annotations

from typing import Any

import psycopg

from bench.common import progress, stats
from bench.deep import FILL_CHUNK, _create, claim_loop, settle
from bench.scenarios import Plan, connect

# The priorities of the mixed queues, cycled over the jobs.
MIXED = (-1, 0, 5, 10)
TOP = 100


def fill(
    conn: psycopg.Connection[Any], queue: str, n: int, priority: str, delay: str = "0"
) -> None:
    """``n`` jobs through enqueue_batch, payloads and priorities built server-side;
    ``priority`` is an SQL expression of the job number g."""
    for start in range(0, n, FILL_CHUNK):
        end = min(n, start + FILL_CHUNK) - 1
        conn.execute(
            "select count(*) from pgmq_jobs.enqueue_batch(%s,"  # type: ignore[arg-type]
            " (select array_agg(jsonb_build_object('n', g) order by g)"
            "  from generate_series(%s::int, %s::int) g),"
            " delay => %s::interval,"
            f" priorities => (select array_agg({priority} order by g)"
            "  from generate_series(%s::int, %s::int) g))",
            (queue, start, end, delay, start, end),
        )


def _mixed_expression() -> str:
    values = ", ".join(str(p) for p in MIXED)
    return f"(array[{values}])[mod(g, {len(MIXED)}) + 1]"


def priorities(jobs_dsn: str, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobs": plan.shallow_n,
        "depth": plan.deep_n,
        "delayed_ahead": plan.delayed_n,
        "priorities": list(MIXED),
        "top": TOP,
    }
    with connect(jobs_dsn) as conn:
        for q in ("prio_none", "prio_mixed", "prio_deep"):
            _create(conn, q)
        progress(f"  priorities: {plan.shallow_n:,} ready jobs without, and of {MIXED}")
        fill(conn, "prio_none", plan.shallow_n, "0")
        fill(conn, "prio_mixed", plan.shallow_n, _mixed_expression())
        progress(
            f"  priorities: {plan.delayed_n:,} delayed jobs of priority {TOP} ahead of "
            f"{plan.deep_n:,} ready ones of {MIXED}"
        )
        fill(conn, "prio_deep", plan.delayed_n, str(TOP), "1 hour")
        fill(conn, "prio_deep", plan.deep_n, _mixed_expression())
        for q in ("prio_none", "prio_mixed", "prio_deep"):
            settle(conn, f"pgmq.q_{q}")
        runs: dict[str, list[float]] = {"none": [], "mixed": [], "deep": []}
        for _ in range(plan.runs):
            runs["none"].append(claim_loop(conn, "prio_none", plan.measure_n))
            runs["mixed"].append(claim_loop(conn, "prio_mixed", plan.measure_n))
            runs["deep"].append(claim_loop(conn, "prio_deep", plan.measure_n))
    for key, values in runs.items():
        out[f"rate_{key}"] = stats(values, 1)
    base, mixed = out["rate_none"]["median"], out["rate_mixed"]["median"]
    # What priorities cost (mixed against none, both shallow), and what depth costs a queue
    # with priorities (deep against shallow, both with priorities), as the deep-queue rows
    # compare deep and shallow queues of one kind.
    out["mixed_vs_none"] = round(mixed / base, 3) if base else None
    out["deep_vs_shallow"] = round(out["rate_deep"]["median"] / mixed, 3) if mixed else None
    return out
