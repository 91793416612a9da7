"""``make soak-churn``: push millions of jobs through one queue and watch for bloat.

    python scripts/soak_churn.py [--jobs 2000000] [--storage fillfactor=90,...] [--json FILE]

On its own throwaway :class:`~pgmq_jobs.ops.cluster.EmbeddedCluster` with default durability
(fsync, synchronous_commit and full_page_writes on; autovacuum at its defaults) unless
``--dsn`` names a server (a database ``pgmq_jobs_soak`` is created there):

1. a *shallow* reference queue: enqueue ``--probe`` ready jobs, time ``claim(1000)`` +
   ``complete`` over them;
2. the *churn* queue gets ``--ahead`` jobs delayed by a day (future-visible, ahead of every
   ready job by msg_id), then the same probe (start figures);
3. the loop: ``enqueue_batch(1000)``, ``claim(1000)``, ``complete`` the batch but a
   ``--fail-share`` that ``fail`` with ``retry_after`` of 0.2 to 5 s (future-visible jobs that
   come due during the run), until ``--jobs`` jobs have completed; a progress line every
   100,000 jobs with throughput, table/index sizes and dead tuples;
4. the probe again (end figures), then the table: sizes (``pg_total_relation_size``,
   ``pg_relation_size`` of ``q_<queue>`` and each of its indexes), dead tuples and autovacuum
   runs (``pg_stat_user_tables``), claim throughput at the start and the end, vs shallow.

``--storage`` applies ``alter table pgmq.q_<queue> set (...)`` after ``create_queue``, to
compare settings (the figures in BENCHMARKS.md, section Churn).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "runner") not in sys.path:
    sys.path.insert(0, str(ROOT / "runner"))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from pgmq_jobs import client  # noqa: E402
from pgmq_jobs.ops.cluster import EmbeddedCluster  # noqa: E402
from pgmq_jobs.ops.install import install  # noqa: E402

Connection = psycopg.Connection[Any]
DATABASE = "pgmq_jobs_soak"
QUEUE = "churn"
SHALLOW = "churn_shallow"
BATCH = 1000
_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soak_churn", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2_000_000, help="jobs to complete (2,000,000)")
    p.add_argument("--ahead", type=int, default=100_000, help="jobs delayed a day (100,000)")
    p.add_argument("--probe", type=int, default=50_000, help="ready jobs per probe (50,000)")
    p.add_argument("--fail-share", type=float, default=0.05, help="deliveries that fail (0.05)")
    p.add_argument(
        "--storage",
        default="",
        help="storage parameters for q_<queue>, e.g. fillfactor=90,autovacuum_vacuum_cost_delay=0",
    )
    p.add_argument(
        "--server",
        default="",
        help="settings of the throwaway cluster, e.g. autovacuum_naptime=10s (default: none)",
    )
    p.add_argument("--dsn", default=None, help="an existing server instead of a throwaway one")
    p.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    p.add_argument("--seed", type=int, default=12)
    return p.parse_args(argv)


@contextmanager
def server(dsn: str | None, settings: dict[str, str]) -> Iterator[str]:
    """DSN of the soak database: on ``dsn``'s server or on a throwaway cluster."""
    if dsn is not None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(DATABASE)))  # fmt: skip
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        yield psycopg.conninfo.make_conninfo(dsn, dbname=DATABASE)
        return
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-soak-"))
    base.chmod(0o755)
    # Default durability and autovacuum (unless --server says otherwise).
    conf: dict[str, str | int | float | bool] = {"cron.database_name": DATABASE, **settings}
    cluster = EmbeddedCluster(base / "data", settings=conf, quiet=True)
    cluster.start()
    try:
        yield cluster.create_database(DATABASE)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def parse_storage(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        if not key.replace("_", "").isalnum() or not value.replace(".", "").isalnum():
            raise SystemExit(f"soak_churn: bad storage parameter {item!r}")
        out[key] = value
    return out


def apply_storage(conn: Connection, queue: str, storage: dict[str, str]) -> None:
    if not storage:
        return
    params = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v)) for k, v in storage.items()
    )
    conn.execute(
        sql.SQL("alter table pgmq.{} set ({})").format(sql.Identifier(f"q_{queue}"), params)
    )


# ---------------------------------------------------------------- measurements


def sizes(conn: Connection, queue: str) -> dict[str, Any]:
    """Sizes (bytes) of q_<queue> and its indexes, and its pg_stat_user_tables counters."""
    table = f"pgmq.q_{queue}"
    row = conn.execute(
        "select pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass)",
        (table, table),
    ).fetchone()
    assert row is not None
    indexes = dict(
        conn.execute(
            "select c.relname, pg_relation_size(c.oid) from pg_index as i"
            " join pg_class as c on c.oid = i.indexrelid"
            " where i.indrelid = %s::regclass order by c.relname",
            (table,),
        ).fetchall()
    )
    stat = conn.execute(
        "select n_live_tup, n_dead_tup, autovacuum_count, n_tup_upd, n_tup_hot_upd"
        " from pg_stat_user_tables where schemaname = 'pgmq' and relname = %s",
        (f"q_{queue}",),
    ).fetchone()
    assert stat is not None
    archive = conn.execute(
        "select pg_total_relation_size(%s::regclass)", (f"pgmq.a_{queue}",)
    ).fetchone()
    return {
        "total_bytes": int(row[0]),
        "table_bytes": int(row[1]),
        "index_bytes": {str(k): int(v) for k, v in indexes.items()},
        "live_tuples": int(stat[0]),
        "dead_tuples": int(stat[1]),
        "autovacuum_runs": int(stat[2]),
        "updates": int(stat[3]),
        "hot_updates": int(stat[4]),
        "archive_total_bytes": int(archive[0]) if archive else 0,
    }


def fill(conn: Connection, queue: str, n: int, delay: float = 0) -> None:
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        client.enqueue_batch(conn, queue, [{"i": start + k} for k in range(count)], delay=delay)


def probe(conn: Connection, queue: str, n: int) -> dict[str, float]:
    """Enqueue ``n`` ready jobs, then claim(1000) + complete until none is ready.

    Returns claim-only jobs/s (time inside ``claim``) and loop jobs/s (claim + complete)."""
    fill(conn, queue, n)
    claimed = 0
    claim_s = 0.0
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        batch = client.claim(conn, queue, BATCH)
        claim_s += time.perf_counter() - t
        if not batch:
            break
        claimed += len(batch)
        client.complete(conn, queue, batch)
    loop_s = time.perf_counter() - started
    return {
        "jobs": claimed,
        "claim_per_s": round(claimed / claim_s, 1),
        "loop_per_s": round(claimed / loop_s, 1),
        "claim_ms_per_1000": round(1000 * claim_s / max(claimed, 1) * 1000, 2),
    }


def churn(conn: Connection, queue: str, jobs: int, fail_share: float, seed: int) -> dict[str, Any]:
    """The loop; returns counts, throughput and the progress samples."""
    rng = random.Random(seed)
    completed = failed = 0
    samples: list[dict[str, Any]] = []
    started = last_t = time.perf_counter()
    last_done = 0
    next_report = 100_000
    enqueued = 0
    while completed < jobs:
        client.enqueue_batch(conn, queue, [{"n": enqueued + k} for k in range(BATCH)])
        enqueued += BATCH
        batch = client.claim(conn, queue, BATCH)
        failing = [j for j in batch if rng.random() < fail_share]
        ok = [j for j in batch if j not in failing] if failing else batch
        completed += client.complete(conn, queue, ok)
        if failing:
            with conn.transaction():
                for job in failing:
                    client.fail(conn, queue, job.job_id, job.attempt, "soak: transient",
                                retry_after=rng.uniform(0.2, 5.0))  # fmt: skip
            failed += len(failing)
        if completed >= next_report or completed >= jobs:
            now = time.perf_counter()
            rate = (completed - last_done) / (now - last_t)
            s = sizes(conn, queue)
            future = conn.execute(
                sql.SQL("select count(*) from pgmq.{} where vt > clock_timestamp()").format(
                    sql.Identifier(f"q_{queue}")
                )
            ).fetchone()
            sample = {
                "completed": completed,
                "rate_per_s": round(rate, 1),
                "future_visible": int(future[0]) if future else 0,
                **{k: s[k] for k in ("total_bytes", "table_bytes", "dead_tuples")},
                "autovacuum_runs": s["autovacuum_runs"],
            }
            samples.append(sample)
            say(
                f"  {completed:>9,} done  {rate:8,.0f} jobs/s  future-visible "
                f"{sample['future_visible']:>7,}  q_ total {mb(s['total_bytes'])}  "
                f"table {mb(s['table_bytes'])}  dead {s['dead_tuples']:>8,}  "
                f"autovacuum runs {s['autovacuum_runs']}"
            )
            last_t, last_done = now, completed
            next_report += 100_000
    seconds = time.perf_counter() - started
    return {
        "completed": completed,
        "failed_attempts": failed,
        "enqueued": enqueued,
        "seconds": round(seconds, 1),
        "jobs_per_s": round(completed / seconds, 1),
        "samples": samples,
    }


def mb(n: int) -> str:
    return f"{n / 1024 / 1024:7.1f} MB"


def report(result: dict[str, Any]) -> None:
    start, end = result["start"], result["end"]
    shallow = result["shallow_probe"]
    print()
    print(f"storage: {result['storage'] or 'defaults'}")
    print(f"churn: {result['churn']['completed']:,} jobs completed in "
          f"{result['churn']['seconds']:,.0f}s ({result['churn']['jobs_per_s']:,.0f} jobs/s), "
          f"{result['churn']['failed_attempts']:,} failed attempts retried")  # fmt: skip
    rows: list[tuple[str, str, str]] = [
        ("q_ total (pg_total_relation_size)", mb(start["total_bytes"]), mb(end["total_bytes"])),
        ("q_ table (pg_relation_size)", mb(start["table_bytes"]), mb(end["table_bytes"])),
    ]
    for name in end["index_bytes"]:
        rows.append(
            (f"  index {name}", mb(start["index_bytes"].get(name, 0)), mb(end["index_bytes"][name]))
        )
    rows += [
        ("live tuples", f"{start['live_tuples']:,}", f"{end['live_tuples']:,}"),
        ("dead tuples", f"{start['dead_tuples']:,}", f"{end['dead_tuples']:,}"),
        ("autovacuum runs", str(start["autovacuum_runs"]), str(end["autovacuum_runs"])),
        ("a_ archive total", mb(start["archive_total_bytes"]), mb(end["archive_total_bytes"])),
        (
            "claim(1000) jobs/s",
            f"{result['start_probe']['claim_per_s']:,.0f}",
            f"{result['end_probe']['claim_per_s']:,.0f}",
        ),
        (
            "claim+complete jobs/s",
            f"{result['start_probe']['loop_per_s']:,.0f}",
            f"{result['end_probe']['loop_per_s']:,.0f}",
        ),
        (
            "claim vs shallow",
            f"{result['start_probe']['claim_per_s'] / shallow['claim_per_s']:.2f}x",
            f"{result['end_probe']['claim_per_s'] / shallow['claim_per_s']:.2f}x",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  {'start':>12}  {'end':>12}")
    for label, a, b in rows:
        print(f"{label:<{width}}  {a:>12}  {b:>12}")
    print(f"shallow reference: claim(1000) {shallow['claim_per_s']:,.0f} jobs/s, "
          f"claim+complete {shallow['loop_per_s']:,.0f} jobs/s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    storage = parse_storage(args.storage)
    result: dict[str, Any] = {
        "jobs": args.jobs,
        "ahead": args.ahead,
        "probe": args.probe,
        "fail_share": args.fail_share,
        "storage": storage,
        "server_settings": args.server,
    }
    with server(args.dsn, parse_storage(args.server)) as dsn:
        say(f"database {dsn}; installing")
        install(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            result["server"] = {
                name: conn.execute(sql.SQL("show {}").format(sql.Identifier(name))).fetchone()[0]  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit", "autovacuum_naptime")
            }
            for queue in (SHALLOW, QUEUE):
                client.create_queue(conn, queue)
                apply_storage(conn, queue, storage)
            say(f"shallow reference: {args.probe:,} ready jobs, claim(1000) + complete")
            result["shallow_probe"] = probe(conn, SHALLOW, args.probe)
            say(f"  {result['shallow_probe']}")
            say(f"churn queue: {args.ahead:,} jobs delayed by a day (future-visible, ahead)")
            fill(conn, QUEUE, args.ahead, delay=86400)
            conn.execute(sql.SQL("vacuum analyze pgmq.{}").format(sql.Identifier(f"q_{QUEUE}")))
            result["start"] = sizes(conn, QUEUE)
            result["start_probe"] = probe(conn, QUEUE, args.probe)
            say(f"  start probe: {result['start_probe']}")
            say(f"churn: {args.jobs:,} jobs, {args.fail_share:.0%} of deliveries fail and retry")
            result["churn"] = churn(conn, QUEUE, args.jobs, args.fail_share, args.seed)
            result["end"] = sizes(conn, QUEUE)
            result["end_probe"] = probe(conn, QUEUE, args.probe)
            say(f"  end probe: {result['end_probe']}")
    report(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
