"""CLI verbs over the SQL API: ``enqueue``, ``queues …``, ``dlq …``, ``schedules …``, ``sweep``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgmq_jobs import client

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM: long-running verbs poll it and stop cleanly (a
    KeyboardInterrupt raised in the middle of a query could be absorbed by the driver)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def parse_duration(text: str) -> timedelta:
    """``30``, ``1.5s``, ``250ms``, ``5m``, ``2h`` or ``7d`` as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use seconds or a number with ms, s, m, h or d"
        )
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])
    except OverflowError as exc:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: too long") from exc


def parse_object(text: str) -> dict[str, Any]:
    """A JSON object given on the command line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"payload is not valid JSON: {exc}") from exc
    except RecursionError:
        raise argparse.ArgumentTypeError("payload is nested too deeply to parse") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"payload must be a JSON object, got {type(value).__name__}"
        )
    return value


def resolve_dsn(args: argparse.Namespace) -> str:
    dsn = args.dsn or os.environ.get("PGMQ_JOBS_DSN") or os.environ.get("DATABASE_URL")
    if not dsn:
        raise SystemExit("pgmq-jobs: no database: give --dsn or set PGMQ_JOBS_DSN / DATABASE_URL")
    return str(dsn)


def _json_default(value: Any) -> str | float:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=_json_default, indent=2, sort_keys=True))


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        text = json.dumps(value, default=_json_default)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    # No server-side prepared statements: the CLI must work behind transaction poolers.
    return psycopg.connect(resolve_dsn(args), autocommit=True, prepare_threshold=None)


# ---------------------------------------------------------------- enqueue


def cmd_enqueue(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        job_id = client.enqueue(
            conn,
            args.queue,
            args.payload,
            delay=args.delay,
            run_at=args.run_at,
            max_attempts=args.max_attempts,
        )
    print(job_id)
    return 0


# ---------------------------------------------------------------- queues

_SETTING_FLAGS: list[tuple[str, Any, str]] = [
    ("max_attempts", int, "deliveries before a job is dead-lettered"),
    ("visibility_timeout", parse_duration, "how long a claimed job stays hidden"),
    ("retry_base", parse_duration, "backoff base delay"),
    ("retry_max", parse_duration, "backoff cap"),
    ("retry_factor", float, "backoff growth factor"),
    ("jitter", str, "none | full | equal"),
    ("keep_completed", parse_duration, "keep archived completions this long (0 = delete)"),
    ("max_payload_bytes", int, "payload size limit"),
    ("concurrency", "concurrency", "most jobs in flight across workers ('none' removes it)"),
]


def parse_concurrency(text: str) -> int | None:
    """A concurrency limit, or 'none' for no limit."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid concurrency {text!r}: a number or none") from exc


_UNSET = object()


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name)
        for name, _, _ in _SETTING_FLAGS
        if getattr(args, name) is not _UNSET
    }


def cmd_queues_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = client.queues(conn)
    if args.json:
        _print_json(rows)
    else:
        _print_table(
            rows,
            ["queue", "max_attempts", "visibility_timeout", "retry_base", "retry_max", "jitter"],
        )
    return 0


def cmd_queues_create(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        created = client.create_queue(conn, args.queue, **_settings(args))
    print(f"created queue {args.queue}" if created else f"queue {args.queue} already exists")
    return 0


def cmd_queues_configure(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        settings = client.configure_queue(conn, args.queue, **_settings(args))
    _print_json(settings)
    return 0


def cmd_queues_drop(args: argparse.Namespace) -> int:
    if not args.yes:
        raise SystemExit(f"pgmq-jobs: dropping {args.queue} deletes all its jobs: add --yes")
    with _connect(args) as conn:
        client.drop_queue(conn, args.queue)
    print(f"dropped queue {args.queue}")
    return 0


# ---------------------------------------------------------------- dlq


def cmd_dlq_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        letters = client.dead_letters(
            conn,
            args.queue,
            args.limit,
            error_text=args.error,
            older_than=args.older_than,
            newer_than=args.newer_than,
        )
    rows = [dataclasses.asdict(d) for d in letters]
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        # The table shows the last line of the last error (a traceback's exception line).
        row["last_error"] = (row["last_error"] or "").strip().splitlines()[-1:] or None
        row["last_error"] = row["last_error"][0] if row["last_error"] else None
    _print_table(rows, ["dead_id", "job_id", "reason", "attempts", "died_at", "last_error"])
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        letters = client.dead_letters(conn, args.queue, 1, dead_id=args.dead_id)
    if not letters:
        print(f"pgmq-jobs: error: no dead letter {args.dead_id} in {args.queue}", file=sys.stderr)
        return 1
    letter = dataclasses.asdict(letters[0])
    if args.json:
        _print_json(letter)
        return 0
    for key in ("dead_id", "job_id", "original_job_id", "reason", "attempts", "replays"):
        print(f"{key:16} {letter[key]}")
    for key in ("enqueued_at", "died_at"):
        print(f"{key:16} {_cell(letter[key])}")
    print(f"{'payload':16} {json.dumps(letter['payload'], sort_keys=True)}")
    for entry in letter["errors"]:
        worker = f" on {entry['worker']}" if entry.get("worker") else ""
        print(f"\n--- attempt {entry.get('attempt')} at {entry.get('at')}{worker}")
        print(entry.get("error") or "")
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        raise SystemExit("pgmq-jobs: give dead ids to replay, or --all")
    with _connect(args) as conn:
        count = client.replay(conn, args.queue, None if args.all else args.ids)
    print(f"replayed {count} dead letter(s) into {args.queue}")
    return 0


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    if not args.all and args.older_than is None:
        raise SystemExit("pgmq-jobs: give --older-than DURATION, or --all")
    with _connect(args) as conn:
        count = client.purge_dead_letters(conn, args.queue, args.older_than)
    print(f"purged {count} dead letter(s) of {args.queue}")
    return 0


# ---------------------------------------------------------------- audit


def cmd_audit(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = client.audit(conn, args.queue, args.limit)
    if args.json:
        _print_json(rows)
    else:
        _print_table(rows, ["id", "at", "role", "queue", "action", "change"])
    return 0


# ---------------------------------------------------------------- schedules and sweep


def cmd_schedules_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = client.schedules(conn)
    if args.json:
        _print_json(rows)
    else:
        _print_table(rows, ["name", "cron", "queue", "active", "last_run_at", "last_status"])
    return 0


def cmd_schedules_add(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        jobid = client.schedule(conn, args.name, args.cron, args.queue, args.payload)
    print(f"schedule {args.name} ({args.cron}) enqueues into {args.queue} [pg_cron job {jobid}]")
    return 0


def cmd_schedules_remove(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        removed = client.unschedule(conn, args.name)
    print(f"removed schedule {args.name}" if removed else f"no schedule named {args.name}")
    return 0 if removed else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run sweep() once, or every --every seconds (where pg_cron is absent)."""
    with _connect(args) as conn:
        while True:
            print(json.dumps(client.sweep(conn), sort_keys=True), flush=True)
            if args.every is None:
                return 0
            time.sleep(args.every.total_seconds())


# ---------------------------------------------------------------- wiring


def _dsn_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--dsn", default=None, help="database URL (default: $PGMQ_JOBS_DSN or $DATABASE_URL)"
    )
    return parent


def register(sub: SubParsers) -> None:
    """Add ``enqueue``, ``queues`` and ``dlq`` to the ``pgmq-jobs`` parser."""
    dsn = _dsn_parent()

    p = sub.add_parser("enqueue", parents=[dsn], help="enqueue one job")
    p.add_argument("queue")
    p.add_argument("payload", type=parse_object, help="a JSON object")
    p.add_argument("--delay", type=parse_duration, default=None)
    p.add_argument("--run-at", type=datetime.fromisoformat, default=None, help="ISO 8601 time")
    p.add_argument("--max-attempts", type=int, default=None)
    p.set_defaults(func=cmd_enqueue)

    queues = sub.add_parser("queues", parents=[dsn], help="list, create, configure or drop queues")
    queues.add_argument("--json", action="store_true")
    queues.set_defaults(func=cmd_queues_list)
    qsub = queues.add_subparsers(dest="queues_command")
    p = qsub.add_parser("list", parents=[dsn], help="every queue with its settings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queues_list)
    for verb, func in (("create", cmd_queues_create), ("configure", cmd_queues_configure)):
        p = qsub.add_parser(verb, parents=[dsn], help=f"{verb} a queue")
        p.add_argument("queue")
        for name, kind, help_text in _SETTING_FLAGS:
            p.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                type=parse_concurrency if kind == "concurrency" else kind,
                default=_UNSET,
                help=help_text,
            )
        p.set_defaults(func=func)
    p = qsub.add_parser("drop", parents=[dsn], help="drop a queue and all its jobs")
    p.add_argument("queue")
    p.add_argument("--yes", action="store_true", help="really drop it")
    p.set_defaults(func=cmd_queues_drop)

    dlq = sub.add_parser("dlq", help="inspect, replay or purge dead letters")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True)
    p = dsub.add_parser("list", parents=[dsn], help="the oldest dead letters of a queue")
    p.add_argument("queue")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--error", default=None, help="only those with this text in an error")
    p.add_argument("--older-than", type=parse_duration, default=None, help="died before, e.g. 1d")
    p.add_argument("--newer-than", type=parse_duration, default=None, help="died within, e.g. 1h")
    p.add_argument("--json", action="store_true", help="full records as JSON")
    p.set_defaults(func=cmd_dlq_list)
    p = dsub.add_parser("show", parents=[dsn], help="one dead letter with every error in full")
    p.add_argument("queue")
    p.add_argument("dead_id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dlq_show)
    p = dsub.add_parser("replay", parents=[dsn], help="put dead letters back into their queue")
    p.add_argument("queue")
    p.add_argument("ids", nargs="*", type=int, help="dead ids (see dlq list)")
    p.add_argument("--all", action="store_true", help="replay every dead letter")
    p.set_defaults(func=cmd_dlq_replay)
    p = dsub.add_parser("purge", parents=[dsn], help="delete dead letters for good")
    p.add_argument("queue")
    p.add_argument("--older-than", type=parse_duration, default=None)
    p.add_argument("--all", action="store_true", help="purge every dead letter")
    p.set_defaults(func=cmd_dlq_purge)

    schedules = sub.add_parser("schedules", parents=[dsn], help="cron schedules that enqueue jobs")
    schedules.add_argument("--json", action="store_true")
    schedules.set_defaults(func=cmd_schedules_list)
    ssub = schedules.add_subparsers(dest="schedules_command")
    p = ssub.add_parser("list", parents=[dsn], help="every schedule with its last run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_schedules_list)
    p = ssub.add_parser("add", parents=[dsn], help="create or update a schedule (by name)")
    p.add_argument("name")
    p.add_argument("cron", help="e.g. '*/5 * * * *' (quote it)")
    p.add_argument("queue")
    p.add_argument("payload", type=parse_object, nargs="?", default={}, help="a JSON object")
    p.set_defaults(func=cmd_schedules_add)
    p = ssub.add_parser("remove", parents=[dsn], help="remove a schedule")
    p.add_argument("name")
    p.set_defaults(func=cmd_schedules_remove)

    p = sub.add_parser("audit", parents=[dsn], help="operator actions: who changed what")
    p.add_argument("--queue", default=None)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("sweep", parents=[dsn], help="run the periodic maintenance (no pg_cron)")
    p.add_argument("--every", type=parse_duration, default=None, help="repeat, e.g. 60s")
    p.set_defaults(func=cmd_sweep)
