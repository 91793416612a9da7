"""CLI verbs for monitoring: ``stats``, ``workers``, ``alerts`` and ``exporter``.

``pgmq-jobs alerts`` exits with status 2 while any alert fires (1 stays a database error),
so it works as a check in cron, CI or a health probe.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from pgmq_jobs.cli_jobs import (
    SubParsers,
    _connect,
    _dsn_parent,
    _print_json,
    _print_table,
    parse_duration,
)

ALERTS_FIRING = 2
"""Exit status of ``pgmq-jobs alerts`` while any alert fires."""

EXPORTER_PORT = 9469
"""Default port of ``pgmq-jobs exporter`` (the same as :data:`pgmq_jobs.exporter.DEFAULT_PORT`,
kept here so that the CLI does not import prometheus_client for every verb)."""

ALERT_NAMES = (
    "queue_depth",
    "dead_letters",
    "low_throughput",
    "stalled_workers",
    "oldest_job_age",
    "xmin_horizon",
    "table_bloat",
    "wraparound",
)


def _rows(
    args: argparse.Namespace, query: str, params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    with _connect(args) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return [dict(r) for r in cur.fetchall()]


# ---------------------------------------------------------------- formatting


def _count(value: Any, estimated: bool = False) -> str:
    if value is None:
        return "-"
    return f"~{value}" if estimated else str(value)


def _rate(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    return "0" if v == 0 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    if math.isinf(v):
        return "off"
    return str(int(v)) if v.is_integer() else f"{v:.2f}"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _age(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


STATS_COLUMNS = [
    "queue",
    "ready",
    "in_flight",
    "delayed",
    "dead",
    "oldest",
    "done/s 1m",
    "done/s 5m",
    "retried 5m",
    "dead 5m",
    "retry% 5m",
    "avg ms",
    "p95 ms",
    "workers",
]


def stats_table(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """queue_stats rows as the cells of the ``stats`` table (``~`` marks estimates)."""
    return [
        {
            "queue": r["queue"],
            "ready": _count(r["ready"], r["ready_estimated"]),
            "in_flight": _count(r["in_flight"]),
            "delayed": _count(r["delayed"]),
            "dead": _count(r["dead"], r["dead_estimated"]),
            "oldest": _age(r["oldest_ready_age"]),
            "done/s 1m": _rate(r["completed_rate_1m"]),
            "done/s 5m": _rate(r["completed_rate_5m"]),
            "retried 5m": _count(r["retried_5m"]),
            "dead 5m": _count(r["dead_lettered_5m"]),
            "retry% 5m": _percent(r["retry_rate_5m"]),
            "avg ms": _ms(r["avg_processing_ms_5m"]),
            "p95 ms": _ms(r["p95_processing_ms_5m"]),
            "workers": _count(r["live_workers"]),
        }
        for r in rows
    ]


# ---------------------------------------------------------------- stats


STATS_SQL = "select * from pgmq_jobs.queue_stats order by queue"


def cmd_stats(args: argparse.Namespace) -> int:
    if args.watch is None:
        rows = _rows(args, STATS_SQL)
        if args.json:
            _print_json(rows)
        else:
            _print_table(stats_table(rows), STATS_COLUMNS)
        return 0
    every = max(args.watch.total_seconds(), 0.2)
    try:
        with _connect(args) as conn:
            while True:
                with conn.cursor(row_factory=dict_row) as cur:
                    rows = [dict(r) for r in cur.execute(STATS_SQL)]
                if args.json:
                    _print_json(rows)
                else:
                    # Home the cursor and clear the screen: the table refreshes in place.
                    sys.stdout.write("\x1b[H\x1b[2J")
                    print(
                        f"pgmq-jobs stats  {datetime.now():%Y-%m-%d %H:%M:%S}"
                        f"  (every {every:g}s; Ctrl-C stops)\n"
                    )
                    _print_table(stats_table(rows), STATS_COLUMNS)
                sys.stdout.flush()
                time.sleep(every)
    except KeyboardInterrupt:
        return 0


# ---------------------------------------------------------------- workers


def cmd_workers(args: argparse.Namespace) -> int:
    rows = _rows(
        args,
        "select * from pgmq_jobs.workers"
        " where %s or status <> 'gone'"
        " order by status = 'alive', last_seen_at desc",
        (args.all,),
    )
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        row["queues"] = ",".join(row["queues"])
    _print_table(
        rows,
        [
            "worker_id",
            "status",
            "queues",
            "in_flight",
            "jobs_done",
            "jobs_failed",
            "last_seen_at",
            "started_at",
        ],
    )
    return 0


# ---------------------------------------------------------------- alerts


def cmd_alerts(args: argparse.Namespace) -> int:
    rows = _rows(args, "select * from pgmq_jobs.alerts order by alert, queue")
    if args.json:
        _print_json(rows)
    elif rows:
        for row in rows:
            row["value"] = _number(row["value"])
            row["threshold"] = _number(row["threshold"])
        _print_table(rows, ["alert", "queue", "value", "threshold", "since", "message"])
    else:
        print("no alerts")
    return ALERTS_FIRING if rows else 0


def parse_threshold(text: str) -> float | None:
    """A threshold: a number, ``off`` (never fires) or ``default`` (drop a queue's own)."""
    word = text.strip().lower()
    if word == "off":
        return math.inf
    if word == "default":
        return None
    try:
        value = float(word)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid threshold {text!r}: a number, 'off' or 'default'"
        ) from exc
    return value


def cmd_alerts_set(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        row = conn.execute(
            "select pgmq_jobs.set_alert_threshold(%s, %s, queue => %s)",
            (args.alert, args.threshold, args.queue),
        ).fetchone()
    assert row is not None
    where = f"queue {args.queue}" if args.queue else "every queue (default)"
    print(f"{args.alert} threshold for {where}: {row[0]:g}")
    return 0


def cmd_alerts_thresholds(args: argparse.Namespace) -> int:
    rows = _rows(
        args,
        "select alert, queue, threshold, updated_at from pgmq_jobs.alert_thresholds"
        " order by alert, queue nulls first",
    )
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            row["queue"] = row["queue"] or "(default)"
            row["threshold"] = _number(row["threshold"])
        _print_table(rows, ["alert", "queue", "threshold", "updated_at"])
    return 0


# ---------------------------------------------------------------- exporter


def cmd_exporter(args: argparse.Namespace) -> int:
    from pgmq_jobs.cli_jobs import resolve_dsn
    from pgmq_jobs.exporter import serve

    exporter = serve(resolve_dsn(args), args.host, args.port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"pgmq-jobs exporter: serving http://{args.host}:{exporter.port}/metrics",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(1.0):
        pass
    exporter.stop()
    return 0


# ---------------------------------------------------------------- wiring


def register(sub: SubParsers) -> None:
    """Add ``stats``, ``workers``, ``alerts`` and ``exporter`` to the ``pgmq-jobs`` parser."""
    dsn = _dsn_parent()

    p = sub.add_parser("stats", parents=[dsn], help="metrics of every queue (queue_stats)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--watch",
        nargs="?",
        type=parse_duration,
        const=timedelta(seconds=2),
        default=None,
        metavar="EVERY",
        help="refresh in place every EVERY (default 2s) until Ctrl-C",
    )
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("workers", parents=[dsn], help="worker processes and their health")
    p.add_argument("--all", action="store_true", help="include workers that are gone")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)

    alerts = sub.add_parser(
        "alerts", parents=[dsn], help="alert conditions firing now (exit status 2 if any)"
    )
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(func=cmd_alerts)
    asub = alerts.add_subparsers(dest="alerts_command")
    p = asub.add_parser("set", parents=[dsn], help="set an alert's threshold")
    p.add_argument("alert", choices=ALERT_NAMES)
    p.add_argument(
        "threshold", type=parse_threshold, help="a number, 'off', or 'default' (with --queue)"
    )
    p.add_argument("--queue", default=None, help="only this queue (default: every queue)")
    p.set_defaults(func=cmd_alerts_set)
    p = asub.add_parser("thresholds", parents=[dsn], help="every threshold in effect")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_alerts_thresholds)

    p = sub.add_parser("exporter", parents=[dsn], help="serve Prometheus metrics over HTTP")
    p.add_argument("--port", type=int, default=EXPORTER_PORT, help=f"default {EXPORTER_PORT}")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.set_defaults(func=cmd_exporter)
