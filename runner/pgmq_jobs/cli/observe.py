"""CLI verbs for monitoring: ``stats``, ``workers``, ``alerts`` and ``exporter``.

``pgmq-jobs alerts`` exits with status 2 while any alert fires (1 stays a database error),
so it works as a check in cron, CI or a health probe. ``stats``, ``workers``, ``alerts`` and
``exporter`` take ``--dsn [NAME=]URL`` more than once to watch queues spread over several
databases; rows (and metrics) then carry the database's name.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgmq_jobs import client
from pgmq_jobs.cli.jobs import (
    DURATIONS_HELP,
    SubParsers,
    _connect,
    _dsn_parent,
    _json_flag,
    _print_json,
    _print_table,
    _wants_json,
    duration_flag,
    resolve_dsn,
    stop_on_signals,
    to_interval,
    verb,
)
from pgmq_jobs.durations import format_duration
from pgmq_jobs.errors import CliError

ALERTS_FIRING = 2
"""Exit status of ``pgmq-jobs alerts`` while any alert fires."""

EXPORTER_PORT = 9469
"""Default port of ``pgmq-jobs exporter`` (the same as
:data:`pgmq_jobs.metrics.exporter.DEFAULT_PORT`, kept here so that the CLI does not import
prometheus_client for every verb)."""

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


def named_dsns(args: argparse.Namespace) -> dict[str, str]:
    """``--dsn [NAME=]URL`` (repeatable) as {name: dsn}; a DSN without a name is named by
    its database. With no ``--dsn``: the environment's one database."""
    from pgmq_jobs.cli.worker import split_named

    given: list[str] = args.dsns or []
    if not given:
        return {"": resolve_dsn(argparse.Namespace())}
    named: dict[str, str] = {}
    for i, text in enumerate(given, start=1):
        name, dsn = split_named(text)
        if name is None:
            name = str(conninfo_to_dict(dsn).get("dbname") or f"db{i}")
        named[name if name not in named else f"{name}{i}"] = dsn
    return named


def _connect_named(name: str, dsn: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True, prepare_threshold=None, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        where = f"database {name}" if name else "the database"
        raise CliError(f"{where} is unreachable: {first}") from exc


Read = Callable[[psycopg.Connection[Any]], list[dict[str, Any]]]


def _rows(args: argparse.Namespace, read: Read) -> list[dict[str, Any]]:
    """What ``read`` returns from every database; each row names its database when there
    are several."""
    dsns = named_dsns(args)
    rows: list[dict[str, Any]] = []
    for name, dsn in dsns.items():
        with _connect_named(name, dsn) as conn:
            rows.extend(_labelled(read(conn), name, len(dsns) > 1))
    return rows


def _labelled(rows: list[dict[str, Any]], name: str, several: bool) -> list[dict[str, Any]]:
    return [{"database": name, **r} for r in rows] if several else rows


def _columns(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    return ["database", *columns] if rows and "database" in rows[0] else columns


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


def _print_stats(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _print_json(rows)
        return
    table = stats_table(rows)
    if rows and "database" in rows[0]:
        table = [{"database": r["database"], **t} for r, t in zip(rows, table, strict=True)]
    _print_table(table, _columns(rows, STATS_COLUMNS))


WATCH_FLOOR = timedelta(seconds=0.2)


def cmd_stats(args: argparse.Namespace) -> int:
    as_json = _wants_json(args)
    if args.watch is None:
        _print_stats(_rows(args, client.queue_stats), as_json)
        return 0
    dsns = named_dsns(args)
    conns = {name: _connect_named(name, dsn) for name, dsn in dsns.items()}
    stop = stop_on_signals()
    try:
        watch = to_interval(next(iter(conns.values())), "--watch", args.watch)
        if watch < WATCH_FLOOR:
            raise CliError(
                f"--watch must be at least {format_duration(WATCH_FLOOR)}, "
                f"got {format_duration(watch)}"
            )
        every = watch.total_seconds()
        while not stop.is_set():
            rows = [
                row
                for name, conn in conns.items()
                for row in _labelled(client.queue_stats(conn), name, len(conns) > 1)
            ]
            if not as_json:
                # Home the cursor and clear the screen: the table refreshes in place.
                sys.stdout.write("\x1b[H\x1b[2J")
                print(
                    f"pgmq-jobs stats  {datetime.now():%Y-%m-%d %H:%M:%S}"
                    f"  (every {format_duration(watch)}; Ctrl-C stops)\n"
                )
            _print_stats(rows, as_json)
            sys.stdout.flush()
            stop.wait(every)
    finally:
        for conn in conns.values():
            conn.close()
    return 0


# ---------------------------------------------------------------- workers


def cmd_workers(args: argparse.Namespace) -> int:
    rows = _rows(args, lambda conn: client.workers(conn, args.all))
    if _wants_json(args):
        _print_json(rows)
        return 0
    for row in rows:
        row["queues"] = ",".join(row["queues"])
    _print_table(
        rows,
        _columns(
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
        ),
    )
    return 0


# ---------------------------------------------------------------- alerts


def cmd_alerts(args: argparse.Namespace) -> int:
    rows = _rows(args, client.alerts)
    if _wants_json(args):
        _print_json(rows)
    elif rows:
        for row in rows:
            row["value"] = _number(row["value"])
            row["threshold"] = _number(row["threshold"])
        _print_table(
            rows, _columns(rows, ["alert", "queue", "value", "threshold", "since", "message"])
        )
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
        threshold = client.set_alert_threshold(conn, args.alert, args.threshold, args.queue)
    where = f"queue {args.queue}" if args.queue else "every queue (default)"
    print(f"{args.alert} threshold for {where}: {threshold:g}")
    return 0


def cmd_alerts_thresholds(args: argparse.Namespace) -> int:
    rows = _rows(args, client.alert_thresholds)
    if _wants_json(args):
        _print_json(rows)
    else:
        for row in rows:
            row["queue"] = row["queue"] or "(default)"
            row["threshold"] = _number(row["threshold"])
        _print_table(rows, ["alert", "queue", "threshold", "updated_at"])
    return 0


# ---------------------------------------------------------------- exporter


def cmd_exporter(args: argparse.Namespace) -> int:
    from pgmq_jobs.metrics.exporter import serve

    dsns = named_dsns(args)
    try:
        exporter = serve(dsns if len(dsns) > 1 else next(iter(dsns.values())), args.host, args.port)
    except OSError as exc:
        # A busy port (or an address this host does not have): one line, not a traceback.
        raise CliError(
            f"exporter cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from exc
    stop = stop_on_signals()
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


def _dsns_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--dsn",
        dest="dsns",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="database URL; repeat for several databases (default: $PGMQ_JOBS_DSN or "
        "$DATABASE_URL)",
    )
    return parent


def register(sub: SubParsers) -> None:
    """Add ``stats``, ``workers``, ``alerts`` and ``exporter`` to the ``pgmq-jobs`` parser."""
    dsn = _dsn_parent()
    dsns = _dsns_parent()

    p = verb(
        sub,
        "stats",
        "metrics of every queue (queue_stats)",
        ["pgmq-jobs stats", "pgmq-jobs stats --watch 5s --dsn eu=postgresql://… --dsn us=…"],
        parents=[dsns],
        description="Metrics of every queue: depth, throughput, retries, processing times, "
        "live workers (~ marks an estimate). " + DURATIONS_HELP,
    )
    _json_flag(p)
    duration_flag(
        p,
        "--watch",
        "refresh in place every DURATION (default 2s) until Ctrl-C",
        nargs="?",
        const="2s",
    )
    p.set_defaults(func=cmd_stats)

    p = verb(
        sub,
        "workers",
        "worker processes and their health",
        ["pgmq-jobs workers", "pgmq-jobs workers --all --json"],
        parents=[dsns],
    )
    p.add_argument("--all", action="store_true", help="include workers that are gone")
    _json_flag(p)
    p.set_defaults(func=cmd_workers)

    alerts = verb(
        sub,
        "alerts",
        "alert conditions firing now (exit status 2 if any)",
        ["pgmq-jobs alerts || notify-ops", "pgmq-jobs alerts set queue_depth 5000 --queue emails"],
        parents=[dsns],
    )
    _json_flag(alerts)
    alerts.set_defaults(func=cmd_alerts)
    asub = alerts.add_subparsers(dest="alerts_command", metavar="{set,thresholds}")
    p = verb(
        asub,
        "set",
        "set an alert's threshold",
        ["pgmq-jobs alerts set dead_letters 10", "pgmq-jobs alerts set table_bloat off"],
        parents=[dsn],
    )
    p.add_argument("alert", choices=ALERT_NAMES)
    p.add_argument(
        "threshold", type=parse_threshold, help="a number, 'off', or 'default' (with --queue)"
    )
    p.add_argument("--queue", default=None, help="only this queue (default: every queue)")
    p.set_defaults(func=cmd_alerts_set)
    p = verb(
        asub,
        "thresholds",
        "every threshold in effect",
        ["pgmq-jobs alerts thresholds"],
        parents=[dsns],
    )
    _json_flag(p)
    p.set_defaults(func=cmd_alerts_thresholds)

    p = verb(
        sub,
        "exporter",
        "serve Prometheus metrics over HTTP",
        ["pgmq-jobs exporter --port 9469", "curl -s localhost:9469/metrics"],
        parents=[dsns],
    )
    p.add_argument("--port", type=int, default=EXPORTER_PORT, help=f"default {EXPORTER_PORT}")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.set_defaults(func=cmd_exporter)
