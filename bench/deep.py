"""Scenario 6 (deep queues, sweep, queue_stats), the SQL-level failure cost and the
issue-11 rows (dedupe keys, ordered groups, concurrency limits): pgmq-jobs through its
public SQL API, raw PGMQ through pgmq.* on the same layouts. Runs in this process."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.common import progress, stats
from bench.scenarios import Plan, connect

FILL_CHUNK = 50_000
GROUP_FILL_BUDGET = {False: 30.0, True: 15.0}  # seconds; the grouped fill stops there


# ---------------------------------------------------------------- filling


def fill_jobs(conn: psycopg.Connection[Any], queue: str, n: int, delay: str = "0") -> float:
    """``n`` jobs through pgmq_jobs.enqueue_batch, payload arrays built server-side."""
    t0 = time.perf_counter()
    for start in range(0, n, FILL_CHUNK):
        end = min(n, start + FILL_CHUNK) - 1
        conn.execute(
            "select count(*) from pgmq_jobs.enqueue_batch(%s,"
            " (select array_agg(jsonb_build_object('n', g))"
            "  from generate_series(%s::int, %s::int) g),"
            " delay => %s::interval)",
            (queue, start, end, delay),
        )
        if n >= 200_000 and (start // FILL_CHUNK) % 4 == 3:
            progress(f"    {queue}: {end + 1:,}/{n:,} enqueued")
    return time.perf_counter() - t0


def fill_raw(conn: psycopg.Connection[Any], queue: str, n: int, delay: str = "0") -> float:
    """``n`` messages through pgmq.send_batch, payload arrays built server-side."""
    t0 = time.perf_counter()
    for start in range(0, n, FILL_CHUNK):
        end = min(n, start + FILL_CHUNK) - 1
        conn.execute(
            "select count(*) from pgmq.send_batch(%s,"
            " (select array_agg(jsonb_build_object('n', g))"
            "  from generate_series(%s::int, %s::int) g),"
            " null::jsonb[], clock_timestamp() + %s::interval)",
            (queue, start, end, delay),
        )
        if n >= 200_000 and (start // FILL_CHUNK) % 4 == 3:
            progress(f"    raw {queue}: {end + 1:,}/{n:,} sent")
    return time.perf_counter() - t0


def settle(conn: psycopg.Connection[Any], table: str) -> None:
    """After a fill, outside the timing: VACUUM ANALYZE (what autovacuum would do to a bulk
    load, which otherwise starts in the middle of a measurement) and a checkpoint."""
    conn.execute(f"vacuum (analyze) {table}")  # type: ignore[arg-type]
    conn.execute("checkpoint")


# ---------------------------------------------------------------- claim loops


def claim_loop(conn: psycopg.Connection[Any], queue: str, total: int, qty: int = 100) -> float:
    """claim(qty) + complete(ids, attempts) until ``total`` jobs; jobs/s."""
    done = 0
    t0 = time.perf_counter()
    while done < total:
        rows = conn.execute(
            "select job_id, attempt from pgmq_jobs.claim(%s, %s)", (queue, min(qty, total - done))
        ).fetchall()
        if not rows:
            break
        conn.execute(
            "select pgmq_jobs.complete(%s, %s::bigint[], %s::int[])",
            (queue, [r[0] for r in rows], [r[1] for r in rows]),
        )
        done += len(rows)
    seconds = time.perf_counter() - t0
    return done / seconds if seconds > 0 else 0.0


def read_loop(conn: psycopg.Connection[Any], queue: str, total: int, qty: int = 100) -> float:
    """pgmq.read(qty) + pgmq.archive(ids[]) until ``total`` messages; messages/s."""
    done = 0
    t0 = time.perf_counter()
    while done < total:
        rows = conn.execute(
            "select msg_id from pgmq.read(%s, 30, %s)", (queue, min(qty, total - done))
        ).fetchall()
        if not rows:
            break
        conn.execute("select pgmq.archive(%s, %s::bigint[])", (queue, [r[0] for r in rows]))
        done += len(rows)
    seconds = time.perf_counter() - t0
    return done / seconds if seconds > 0 else 0.0


def measure(fn: Any, conn: Any, queue: str, plan: Plan, qty: int = 100) -> dict[str, Any]:
    return stats([fn(conn, queue, plan.measure_n, qty) for _ in range(plan.runs)], 1)


def measure_both(jc: Any, rc: Any, queue: str, plan: Plan) -> dict[str, Any]:
    """pgmq-jobs' claim loop and raw PGMQ's read loop on the same layout, run after run in
    turn, so that drift on a shared machine touches both alike."""
    ours, raw = [], []
    for _ in range(plan.runs):
        ours.append(claim_loop(jc, queue, plan.measure_n))
        raw.append(read_loop(rc, queue, plan.measure_n))
    return {"pgmq_jobs": stats(ours, 1), "raw": stats(raw, 1)}


def explain(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> list[str]:
    query = f"explain (analyze, buffers, costs off) {sql}"
    rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
    return [r[0] for r in rows]


# ---------------------------------------------------------------- scenario 6


def _create(conn: psycopg.Connection[Any], queue: str, **settings: Any) -> None:
    from pgmq_jobs import client

    client.create_queue(conn, queue, **settings)


def deep(jobs_dsn: str, raw_dsn: str, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {"depth": plan.deep_n, "delayed_ahead": plan.delayed_n}
    with connect(jobs_dsn) as jc, connect(raw_dsn) as rc:
        for q in ("shallow", "deep", "deep_delayed"):
            _create(jc, q)
            rc.execute("select pgmq.create(%s)", (q,))

        progress(f"  shallow queues: {plan.shallow_n:,} ready jobs each")
        fill_jobs(jc, "shallow", plan.shallow_n)
        fill_raw(rc, "shallow", plan.shallow_n)
        settle(jc, "pgmq.q_shallow")
        settle(rc, "pgmq.q_shallow")
        out["shallow"] = measure_both(jc, rc, "shallow", plan)

        progress(f"  deep queues: {plan.deep_n:,} ready jobs (pgmq-jobs, then raw)")
        out["fill_s"] = {
            "pgmq_jobs_enqueue_batch": round(fill_jobs(jc, "deep", plan.deep_n), 2),
            "raw_send_batch": round(fill_raw(rc, "deep", plan.deep_n), 2),
        }
        settle(jc, "pgmq.q_deep")
        settle(rc, "pgmq.q_deep")
        out["deep"] = measure_both(jc, rc, "deep", plan)

        progress(
            f"  deep queues with {plan.delayed_n:,} delayed jobs ahead of {plan.deep_n:,} ready"
        )
        fill_jobs(jc, "deep_delayed", plan.delayed_n, "1 hour")
        fill_jobs(jc, "deep_delayed", plan.deep_n)
        fill_raw(rc, "deep_delayed", plan.delayed_n, "1 hour")
        fill_raw(rc, "deep_delayed", plan.deep_n)
        settle(jc, "pgmq.q_deep_delayed")
        settle(rc, "pgmq.q_deep_delayed")
        out["explain"] = {
            # claim compares with the clock read into a parameter (an index condition).
            "pgmq_jobs_claim_scan": explain(
                jc,
                "select msg_id from pgmq.q_deep_delayed where vt <= %s order by vt limit 100",
                (datetime.now(UTC),),
            ),
            "raw_read_scan": explain(
                rc,
                "select msg_id from pgmq.q_deep_delayed where vt <= clock_timestamp()"
                " order by msg_id limit 100",
            ),
        }
        out["deep_delayed"] = measure_both(jc, rc, "deep_delayed", plan)
        for system in ("pgmq_jobs", "raw"):
            base = out["shallow"][system]["median"]
            out.setdefault("ratios", {})[system] = {
                "deep_vs_shallow": round(out["deep"][system]["median"] / base, 3),
                "deep_delayed_vs_shallow": round(out["deep_delayed"][system]["median"] / base, 3),
            }

        progress(f"  sweep() with {plan.stalled:,} stalled jobs at depth")
        out["sweep"] = sweep(jc, plan)
        out["queue_stats"] = queue_stats(jc, plan)
    return out


def sweep(conn: psycopg.Connection[Any], plan: Plan) -> dict[str, Any]:
    """Claim ``stalled`` jobs of the deep queue, fast-forward them to stalled-on-the-last-
    attempt (vt in the past, read_ct = max_attempts), then time sweep()."""
    times, moved = [], []
    conn.execute("select pgmq_jobs.sweep()")  # first fold of the outcome log, untimed
    for _ in range(plan.runs):
        ids = [
            r[0]
            for r in conn.execute(
                "select job_id from pgmq_jobs.claim('deep_delayed', %s)", (plan.stalled,)
            ).fetchall()
        ]
        conn.execute(
            "update pgmq.q_deep_delayed set vt = clock_timestamp() - interval '1 second',"
            " read_ct = 5 where msg_id = any(%s)",
            (ids,),
        )
        t0 = time.perf_counter()
        result = conn.execute("select pgmq_jobs.sweep()").fetchone()
        times.append((time.perf_counter() - t0) * 1000)
        moved.append(int((result[0] if result else {}).get("expired_to_dlq", 0)))
    return {"stalled": plan.stalled, "ms": stats(times, 1), "expired_to_dlq": moved}


def queue_stats(conn: psycopg.Connection[Any], plan: Plan) -> dict[str, Any]:
    exists = conn.execute(
        "select 1 from pg_views where schemaname = 'pgmq_jobs' and viewname = 'queue_stats'"
    ).fetchone()
    if not exists:
        return {"skipped": "view pgmq_jobs.queue_stats does not exist in this build"}
    times = []
    for _ in range(plan.runs):
        t0 = time.perf_counter()
        conn.execute("select * from pgmq_jobs.queue_stats").fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return {"ms": stats(times, 1)}


# ---------------------------------------------------------------- failure cost in SQL


def failure_sql(jobs_dsn: str, raw_dsn: str, plan: Plan) -> dict[str, Any]:
    """Per call: fail() (retry) vs complete() of one job, and fail_batch() vs complete() of
    100 at once; raw: set_vt(id, 0) vs archive(id)."""
    n = 300 if plan.quick else 600
    out: dict[str, Any] = {"n": n}
    with connect(jobs_dsn) as jc, connect(raw_dsn) as rc:
        _create(jc, "failcost", retry_base=timedelta(milliseconds=1), jitter="none")
        rc.execute("select pgmq.create('failcost')")
        f_ms, c_ms, cb_ms, fb_ms, rf_ms, rc_ms = [], [], [], [], [], []
        for _ in range(plan.runs):
            fill_jobs(jc, "failcost", 4 * n)
            rows = []
            while len(rows) < 4 * n:
                rows += jc.execute(
                    "select job_id, attempt from pgmq_jobs.claim('failcost', 1000)"
                ).fetchall()
            t0 = time.perf_counter()
            for job_id, attempt in rows[:n]:
                jc.execute(
                    "select outcome from pgmq_jobs.fail('failcost', %s, %s, 'x')", (job_id, attempt)
                )
            f_ms.append((time.perf_counter() - t0) * 1000 / n)
            t0 = time.perf_counter()
            for job_id, attempt in rows[n : 2 * n]:
                jc.execute(
                    "select pgmq_jobs.complete('failcost', array[%s]::bigint[], array[%s]::int[])",
                    (job_id, attempt),
                )
            c_ms.append((time.perf_counter() - t0) * 1000 / n)
            # 100 per call: complete(ids, attempts) and fail_batch(ids, attempts, errors).
            for sql, rest, times, with_errors in (
                (
                    "select pgmq_jobs.complete('failcost', %s::bigint[], %s::int[])",
                    rows[2 * n : 3 * n],
                    cb_ms,
                    False,
                ),
                (
                    "select count(*) from pgmq_jobs.fail_batch('failcost', %s::bigint[],"
                    " %s::int[], %s::text[])",
                    rows[3 * n :],
                    fb_ms,
                    True,
                ),
            ):
                t0 = time.perf_counter()
                for k in range(0, len(rest), 100):
                    chunk = rest[k : k + 100]
                    params = [[r[0] for r in chunk], [r[1] for r in chunk]]
                    jc.execute(sql, [*params, ["x"] * len(chunk)] if with_errors else params)
                times.append((time.perf_counter() - t0) * 1000 / n)
            jc.execute("truncate pgmq.q_failcost, pgmq.a_failcost")

            fill_raw(rc, "failcost", 2 * n)
            msgs = []
            while len(msgs) < 2 * n:
                msgs += [
                    r[0] for r in rc.execute("select msg_id from pgmq.read('failcost', 30, 1000)")
                ]
            t0 = time.perf_counter()
            for m in msgs[:n]:
                rc.execute("select pgmq.set_vt('failcost', %s, 0)", (m,))
            rf_ms.append((time.perf_counter() - t0) * 1000 / n)
            t0 = time.perf_counter()
            for m in msgs[n:]:
                rc.execute("select pgmq.archive('failcost', %s::bigint)", (m,))
            rc_ms.append((time.perf_counter() - t0) * 1000 / n)
            rc.execute("truncate pgmq.q_failcost, pgmq.a_failcost")
        out["pgmq_jobs"] = {
            "fail_ms": stats(f_ms),
            "complete_one_ms": stats(c_ms),
            "complete_batched_ms_per_job": stats(cb_ms),
            "fail_batched_ms_per_job": stats(fb_ms),
            "fail_vs_complete_one": round(stats(f_ms)["median"] / stats(c_ms)["median"], 2),
            "fail_vs_complete_batched": round(stats(fb_ms)["median"] / stats(cb_ms)["median"], 2),
        }
        out["raw"] = {
            "set_vt_ms": stats(rf_ms),
            "archive_one_ms": stats(rc_ms),
            "set_vt_vs_archive": round(stats(rf_ms)["median"] / stats(rc_ms)["median"], 2),
        }
    return out


# ---------------------------------------------------------------- issue 11


def issue11(jobs_dsn: str, plan: Plan, deep_claim: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with connect(jobs_dsn) as jc:
        # Dedupe keys: one enqueue per transaction, unique keys vs none.
        _create(jc, "dedupe")
        plain, keyed = [], []
        for r in range(plan.runs):
            for label, sink in (("plain", plain), ("keyed", keyed)):
                t0 = time.perf_counter()
                for i in range(plan.dedupe_n):
                    key = f"k-{r}-{i}" if label == "keyed" else None
                    jc.execute(
                        "select pgmq_jobs.enqueue('dedupe', %s, dedupe_key => %s)",
                        (Jsonb({"n": i}), key),
                    )
                sink.append(plan.dedupe_n / (time.perf_counter() - t0))
        out["dedupe"] = {
            "n": plan.dedupe_n,
            "plain_jobs_per_s": stats(plain, 1),
            "dedupe_key_jobs_per_s": stats(keyed, 1),
            "ratio": round(stats(keyed)["median"] / stats(plain)["median"], 3),
        }
        jc.execute("truncate pgmq.q_dedupe")

        # Ordered groups: G active groups of J jobs each, claim+complete vs no groups.
        progress(
            f"  {plan.groups:,} groups x {plan.group_jobs} jobs (enqueue_batch with group_keys)"
        )
        _create(jc, "grouped")
        t0 = time.perf_counter()
        per_batch = 10_000
        total = plan.groups * plan.group_jobs
        filled = 0
        for start in range(0, total, per_batch):
            end = min(total, start + per_batch) - 1
            jc.execute(
                "select count(*) from pgmq_jobs.enqueue_batch('grouped',"
                " (select array_agg(jsonb_build_object('n', g) order by g)"
                "  from generate_series(%s::int, %s::int) g),"
                " group_keys => (select array_agg('g' || (g %% %s) order by g)"
                "  from generate_series(%s::int, %s::int) g))",
                (start, end, plan.groups, start, end),
            )
            filled = end + 1
            if (start // per_batch) % 10 == 9:
                progress(f"    grouped: {filled:,}/{total:,} enqueued")
            if time.perf_counter() - t0 > GROUP_FILL_BUDGET[plan.quick]:
                progress(f"    grouped: fill budget spent, going on with {filled:,} jobs")
                break
        fill_s = time.perf_counter() - t0
        jc.execute("analyze pgmq.q_grouped")
        grouped = measure(claim_loop, jc, "grouped", plan)
        out["groups"] = {
            "groups": min(plan.groups, filled),
            "jobs_per_group": round(filled / plan.groups, 1),
            "planned": f"{plan.groups:,} groups x {plan.group_jobs}",
            "filled": filled,
            "fill_s": round(fill_s, 1),
            "fill_jobs_per_s": round(filled / fill_s, 1),
            "claim_jobs_per_s": grouped,
            "baseline": "the deep queue without groups (scenario 6)",
            "baseline_jobs_per_s": deep_claim,
            "ratio": round(grouped["median"] / deep_claim, 3) if deep_claim else None,
        }
        jc.execute("truncate pgmq.q_grouped")

        # Concurrency limit: claim(10) + complete loop with and without a limit.
        _create(jc, "unlimited")
        _create(jc, "limited", concurrency=plan.limit)
        n = plan.measure_n * plan.runs
        fill_jobs(jc, "unlimited", n)
        fill_jobs(jc, "limited", n)
        settle(jc, "pgmq.q_unlimited")
        settle(jc, "pgmq.q_limited")
        free = measure(claim_loop, jc, "unlimited", plan, qty=10)
        capped = measure(claim_loop, jc, "limited", plan, qty=10)
        out["concurrency_limit"] = {
            "limit": plan.limit,
            "qty": 10,
            "unlimited_jobs_per_s": free,
            "limited_jobs_per_s": capped,
            "ratio": round(capped["median"] / free["median"], 3),
        }
    return out
