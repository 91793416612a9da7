"""CLI verbs over the SQL API: ``enqueue``, ``queues …``, ``dlq …``, ``jobs …``, ``audit``,
``schedules …``, ``sweep``.

Durations typed on the command line (``--delay``, ``--retry-base``, ``--every`` …) are parsed
by the database as an ``interval``: ``90`` (seconds), ``'90 s'``, ``1h30m``, ``'10 minutes'``,
``PT10M``, ``250ms``; a bad one gets PostgreSQL's error, naming the flag. Durations are printed
as PostgreSQL prints an interval (:func:`pgmq_jobs.durations.format_duration`); ``--json`` gives
seconds. Times (``--run-at``, ``--at``) are ``now``, ``+DURATION`` (from now) or a timestamp
the database parses (``2026-12-24T09:00:00Z``, ``'2026-12-24 09:00 Europe/Paris'``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

import psycopg

from pgmq_jobs import client
from pgmq_jobs.durations import SWEEP_FLOOR, format_duration
from pgmq_jobs.errors import CliError, describe, error_line

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

DURATION_FLAGS: set[str] = set()
"""Every flag that takes a duration (filled as the parser is built): a negative value after
one of them (``--delay -5s``) is that flag's value, not an unknown option."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``pgmq-jobs: error:`` line, exit 1."""

    def error(self, message: str) -> NoReturn:
        print(error_line(f"{message} (see: {self.prog} --help)"), file=sys.stderr)
        raise SystemExit(1)


def join_negative_durations(argv: Sequence[str]) -> list[str]:
    """``--delay -5s`` as ``--delay=-5s``, so that the database judges the value (argparse
    would take ``-5s`` for an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in DURATION_FLAGS and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM: long-running verbs poll it and stop cleanly (a
    KeyboardInterrupt raised in the middle of a query could be absorbed by the driver)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def parse_duration(text: str) -> timedelta:
    """``30``, ``1.5s``, ``250ms``, ``5m``, ``2h`` or ``7d`` as a timedelta, parsed locally.

    Only for flags read before any connection exists (the worker's); every verb that talks
    to a database takes :func:`duration_text` and lets the database parse it."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use seconds or a number with ms, s, m, h or d"
        )
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])
    except OverflowError as exc:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: too long") from exc


def duration_text(text: str) -> str:
    """A duration as typed; the database parses it (see :func:`to_interval`)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a duration cannot be empty (e.g. 90, '90 s', 1h30m)")
    return text.strip()


def to_interval(conn: psycopg.Connection[Any], flag: str, text: str) -> timedelta:
    """``text`` (given for ``flag``) parsed by the database as an interval; a bad one is a
    one-line error naming the flag and carrying PostgreSQL's reason."""
    try:
        return client.interval(conn, text)
    except psycopg.DataError as exc:
        raise CliError(f"{flag} {text!r}: {describe(exc)}") from exc


def to_time(conn: psycopg.Connection[Any], flag: str, text: str) -> datetime:
    """``now``, ``+DURATION`` (from now, on the database's clock) or a timestamp, parsed by
    the database."""
    try:
        if text.startswith("+"):
            return client.time_from_now(conn, text[1:])
        return client.timestamp(conn, text)
    except psycopg.DataError as exc:
        raise CliError(
            f"{flag} {text!r}: {describe(exc)} (give now, +DURATION such as +10m, or a timestamp)"
        ) from exc


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
    dsn = (
        getattr(args, "dsn", None)
        or os.environ.get("PGMQ_JOBS_DSN")
        or os.environ.get("DATABASE_URL")
    )
    if not dsn:
        raise CliError("no database: give --dsn or set PGMQ_JOBS_DSN / DATABASE_URL")
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
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, default=_json_default)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def _print_record(record: dict[str, Any], keys: Sequence[str]) -> None:
    width = max((len(k) for k in keys), default=0) + 2
    for key in keys:
        value = record.get(key)
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else _cell(value)
        print(f"{key:{width}}{text}")


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    # No server-side prepared statements: the CLI must work behind transaction poolers.
    return psycopg.connect(resolve_dsn(args), autocommit=True, prepare_threshold=None)


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


# ---------------------------------------------------------------- enqueue


def cmd_enqueue(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        for flag, text in (("--delay", args.delay), ("--dedupe-window", args.dedupe_window)):
            if text is not None:
                to_interval(conn, flag, text)
        run_at = None if args.run_at is None else to_time(conn, "--run-at", args.run_at)
        # The checked text goes to enqueue as it is: the database parses it the same way.
        job_id = client.enqueue(
            conn,
            args.queue,
            args.payload,
            delay=args.delay,
            run_at=run_at,
            max_attempts=args.max_attempts,
            dedupe_key=args.dedupe_key,
            dedupe_window=args.dedupe_window,
            group_key=args.group_key,
            priority=args.priority,
        )
    print(job_id)
    return 0


# ---------------------------------------------------------------- queues

_SETTING_FLAGS: list[tuple[str, Any, str]] = [
    ("max_attempts", int, "deliveries before a job is dead-lettered"),
    ("visibility_timeout", duration_text, "how long a claimed job stays hidden"),
    ("retry_base", duration_text, "backoff base delay"),
    ("retry_max", duration_text, "backoff cap"),
    ("retry_factor", float, "backoff growth factor"),
    ("jitter", str, "none | full | equal"),
    ("keep_completed", duration_text, "keep archived completions this long (0 = delete)"),
    ("max_payload_bytes", int, "payload size limit"),
    ("concurrency", "concurrency", "most jobs in flight across workers ('none' removes it)"),
]

QUEUE_COLUMNS = [
    "queue",
    "max_attempts",
    "visibility_timeout",
    "retry_base",
    "retry_max",
    "retry_factor",
    "jitter",
    "keep_completed",
    "concurrency",
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


def _settings(conn: psycopg.Connection[Any], args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name, kind, _ in _SETTING_FLAGS:
        value = getattr(args, name)
        if value is _UNSET:
            continue
        if kind is duration_text:
            to_interval(conn, f"--{name.replace('_', '-')}", value)
        settings[name] = value
    return settings


def cmd_queues_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = client.queues(conn)
    if _wants_json(args):
        _print_json(rows)
    else:
        _print_table(rows, QUEUE_COLUMNS)
    return 0


def cmd_queues_create(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        created = client.create_queue(conn, args.queue, **_settings(conn, args))
    print(f"created queue {args.queue}" if created else f"queue {args.queue} already exists")
    return 0


def cmd_queues_configure(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        settings = client.configure_queue(conn, args.queue, **_settings(conn, args))
    if _wants_json(args):
        _print_json(settings)
    else:
        _print_record(settings, sorted(settings))
    return 0


def cmd_queues_drop(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError(f"dropping {args.queue} deletes all its jobs: add --yes")
    with _connect(args) as conn:
        client.drop_queue(conn, args.queue)
    print(f"dropped queue {args.queue}")
    return 0


# ---------------------------------------------------------------- dlq


def cmd_dlq_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        for flag, text in (("--older-than", args.older_than), ("--newer-than", args.newer_than)):
            if text is not None:
                to_interval(conn, flag, text)
        letters = client.dead_letters(
            conn,
            args.queue,
            args.limit,
            error_text=args.error,
            older_than=args.older_than,
            newer_than=args.newer_than,
        )
    rows = [dataclasses.asdict(d) for d in letters]
    if _wants_json(args):
        _print_json(rows)
        return 0
    for row in rows:
        row["last_error"] = _last_line(row["last_error"])
    _print_table(rows, ["dead_id", "job_id", "reason", "attempts", "died_at", "last_error"])
    return 0


def _last_line(text: str | None) -> str | None:
    """The last line of an error (a traceback's exception line)."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else None


def _print_errors(errors: list[dict[str, Any]]) -> None:
    for entry in errors:
        worker = f" on {entry['worker']}" if entry.get("worker") else ""
        print(f"\n--- attempt {entry.get('attempt')} at {entry.get('at')}{worker}")
        print(entry.get("error") or "")


def cmd_dlq_show(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        letters = client.dead_letters(conn, args.queue, 1, dead_id=args.dead_id)
    if not letters:
        raise CliError(f"no dead letter {args.dead_id} in {args.queue}")
    letter = dataclasses.asdict(letters[0])
    if _wants_json(args):
        _print_json(letter)
        return 0
    keys = ("dead_id", "job_id", "original_job_id", "reason", "attempts", "replays")
    _print_record(letter, [*keys, "enqueued_at", "died_at", "payload"])
    _print_errors(letter["errors"])
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        raise CliError("give dead ids to replay, or --all")
    with _connect(args) as conn:
        # Ids that are not dead letters: the database refuses the whole call, naming them.
        count = client.replay(conn, args.queue, None if args.all else args.ids, strict=True)
    print(f"replayed {count} dead letter(s) into {args.queue}")
    return 0


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    if not args.all and args.older_than is None:
        raise CliError("give --older-than DURATION, or --all")
    with _connect(args) as conn:
        if args.older_than is not None:
            to_interval(conn, "--older-than", args.older_than)
        count = client.purge_dead_letters(conn, args.queue, args.older_than)
    print(f"purged {count} dead letter(s) of {args.queue}")
    return 0


# ---------------------------------------------------------------- jobs

JOB_COLUMNS = [
    "job_id",
    "state",
    "attempt",
    "max_attempts",
    "priority",
    "enqueued_at",
    "visible_at",
    "group_key",
    "last_error",
]


def _job_row(info: client.JobInfo) -> dict[str, Any]:
    return dataclasses.asdict(info)


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        info = client.job(conn, args.queue, args.job_id)
    if info is None:
        raise CliError(f"no job {args.job_id} in {args.queue}")
    row = _job_row(info)
    if _wants_json(args):
        _print_json(row)
        return 0
    keys = ["job_id", "state", "attempt", "max_attempts", "priority", "enqueued_at"]
    _print_record(row, [*keys, "visible_at", "group_key", "dedupe_key", "payload"])
    _print_errors(row["errors"] or [])
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        found = client.list_jobs(conn, args.queue, args.state, args.limit)
    rows = [_job_row(info) for info in found]
    if _wants_json(args):
        _print_json(rows)
        return 0
    for row in rows:
        last = (row["errors"] or [{}])[-1]
        row["last_error"] = _last_line(last.get("error"))
    _print_table(rows, JOB_COLUMNS)
    return 0


def _not_in(
    conn: psycopg.Connection[Any], queue: str, ids: Sequence[int], states: set[str]
) -> str | None:
    """The ids whose job is in none of ``states`` now, each with the state it is in."""
    left = []
    for job_id in dict.fromkeys(ids):
        info = client.job(conn, queue, job_id)
        if info is None:
            left.append(f"{job_id} (no such job)")
        elif info.state not in states:
            left.append(f"{job_id} ({info.state})")
    return ", ".join(left) or None


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        # What cannot be cancelled, as it stands before the call: unknown or finished jobs.
        live = {"waiting", "delayed", "in_flight", "retrying", "parked"}
        left = _not_in(conn, args.queue, args.ids, live)
        count = client.cancel(conn, args.queue, args.ids)
    print(f"cancelled {count} job(s) of {args.queue}")
    if left:
        raise CliError(f"not cancelled: {left}")
    return 0


def cmd_jobs_reschedule(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        run_at = to_time(conn, "--at", args.at)
        count = client.reschedule(conn, args.queue, args.ids, run_at)
        left = None
        if count < len(set(args.ids)):
            movable = {"waiting", "delayed", "retrying", "parked"}
            left = _not_in(conn, args.queue, args.ids, movable) or "some ids"
    print(f"rescheduled {count} job(s) of {args.queue} to {run_at.isoformat()}")
    if left:
        raise CliError(f"not rescheduled (only waiting, delayed and retrying jobs move): {left}")
    return 0


# ---------------------------------------------------------------- audit


def cmd_audit(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = client.audit(conn, args.queue, args.limit)
    if _wants_json(args):
        _print_json(rows)
    else:
        _print_table(rows, ["id", "at", "role", "queue", "action", "change"])
    return 0


# ---------------------------------------------------------------- schedules and sweep


def cmd_schedules_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        rows = client.schedules(conn)
    if _wants_json(args):
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
    if not removed:
        raise CliError(f"no schedule named {args.name}")
    print(f"removed schedule {args.name}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run sweep() once, or every --every (at least a second) where pg_cron is absent."""
    with _connect(args) as conn:
        every = None if args.every is None else to_interval(conn, "--every", args.every)
        if every is not None and every < SWEEP_FLOOR:
            raise CliError(
                f"--every must be at least {format_duration(SWEEP_FLOOR)}, "
                f"got {format_duration(every)}"
            )
        stop = stop_on_signals()
        while True:
            print(json.dumps(client.sweep(conn), sort_keys=True), flush=True)
            if every is None or stop.wait(every.total_seconds()):
                return 0


# ---------------------------------------------------------------- wiring


def _dsn_parent() -> argparse.ArgumentParser:
    """``--dsn``, given before or after a sub-verb (``queues --dsn X list``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--dsn",
        default=argparse.SUPPRESS,
        help="database URL (default: $PGMQ_JOBS_DSN or $DATABASE_URL)",
    )
    return parent


def _json_flag(
    p: argparse.ArgumentParser, help_text: str = "print JSON (durations in seconds)"
) -> None:
    # SUPPRESS: a sub-verb's default does not undo the flag given before it (queues --json list).
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=help_text)


def verb(
    sub: SubParsers,
    name: str,
    summary: str,
    examples: Sequence[str],
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A verb with its one-line summary (in the list of verbs), a description and examples
    (in its --help)."""
    lines = "\n".join(f"  {e}" for e in examples)
    return sub.add_parser(
        name,
        parents=list(parents),
        help=summary,
        description=description or summary[0].upper() + summary[1:] + ".",
        epilog=f"example{'s' if len(examples) > 1 else ''}:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def duration_flag(p: argparse.ArgumentParser, flag: str, help_text: str, **kwargs: Any) -> None:
    """A flag that takes a duration, parsed by the database."""
    DURATION_FLAGS.add(flag)
    kwargs.setdefault("default", None)
    p.add_argument(flag, type=duration_text, metavar="DURATION", help=help_text, **kwargs)


DURATIONS_HELP = (
    "DURATION: what PostgreSQL's interval accepts, checked by the database: 90 (seconds), "
    "'90 s', 1h30m, '10 minutes', PT10M, 250ms."
)
TIME_HELP = "TIME: now, +DURATION (from now, e.g. +10m) or a timestamp (2026-12-24T09:00Z)."


def register(sub: SubParsers) -> None:
    """Add ``enqueue``, ``queues``, ``dlq``, ``jobs``, ``audit``, ``schedules`` and ``sweep``."""
    dsn = _dsn_parent()

    p = verb(
        sub,
        "enqueue",
        "enqueue one job",
        [
            'pgmq-jobs enqueue emails \'{"to": "a@example.com"}\'',
            "pgmq-jobs enqueue emails '{}' --delay 1h30m --priority 5",
            "pgmq-jobs enqueue reports '{\"day\": 1}' --run-at +10m --dedupe-key report-1",
        ],
        parents=[dsn],
        description="Enqueue one job; prints its job id. " + DURATIONS_HELP + " " + TIME_HELP,
    )
    p.add_argument("queue")
    p.add_argument("payload", type=parse_object, help="a JSON object")
    duration_flag(p, "--delay", "run after this long")
    p.add_argument("--run-at", default=None, metavar="TIME", help="run at this time")
    p.add_argument("--max-attempts", type=int, default=None)
    p.add_argument(
        "--priority", type=int, default=0, help="higher runs first among ready jobs (default 0)"
    )
    p.add_argument(
        "--dedupe-key",
        default=None,
        help="while a job with this key is unfinished (or within --dedupe-window), return its "
        "id instead",
    )
    duration_flag(p, "--dedupe-window", "with --dedupe-key: the key holds this long")
    p.add_argument(
        "--group-key", default=None, help="jobs sharing it run one at a time, in enqueue order"
    )
    p.set_defaults(func=cmd_enqueue)

    queues = verb(
        sub,
        "queues",
        "list, create, configure or drop queues",
        ["pgmq-jobs queues", "pgmq-jobs queues create emails --retry-base 2s --max-attempts 8"],
        parents=[dsn],
    )
    _json_flag(queues)
    queues.set_defaults(func=cmd_queues_list)
    qsub = queues.add_subparsers(dest="queues_command", metavar="{list,create,configure,drop}")
    p = verb(
        qsub,
        "list",
        "every queue with its settings",
        ["pgmq-jobs queues list --json"],
        parents=[dsn],
    )
    _json_flag(p)
    p.set_defaults(func=cmd_queues_list)
    for name, func, example in (
        ("create", cmd_queues_create, "pgmq-jobs queues create emails --visibility-timeout 2m"),
        ("configure", cmd_queues_configure, "pgmq-jobs queues configure emails --retry-max 1h"),
    ):
        p = verb(
            qsub,
            name,
            f"{name} a queue",
            [example],
            parents=[dsn],
            description=f"{name.capitalize()} a queue; settings not given are "
            + ("the defaults. " if name == "create" else "left as they are. ")
            + DURATIONS_HELP,
        )
        p.add_argument("queue")
        for setting, kind, help_text in _SETTING_FLAGS:
            flag = f"--{setting.replace('_', '-')}"
            if kind is duration_text:
                DURATION_FLAGS.add(flag)
            p.add_argument(
                flag,
                dest=setting,
                type=parse_concurrency if kind == "concurrency" else kind,
                default=_UNSET,
                metavar="DURATION" if kind is duration_text else None,
                help=help_text,
            )
        if name == "configure":
            _json_flag(p, "print the settings as JSON (durations in seconds)")
        p.set_defaults(func=func)
    p = verb(
        qsub,
        "drop",
        "drop a queue and all its jobs",
        ["pgmq-jobs queues drop old --yes"],
        parents=[dsn],
    )
    p.add_argument("queue")
    p.add_argument("--yes", action="store_true", help="really drop it")
    p.set_defaults(func=cmd_queues_drop)

    dlq = verb(sub, "dlq", "inspect, replay or purge dead letters", ["pgmq-jobs dlq list emails"])
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="{list,show,replay,purge}")
    p = verb(
        dsub,
        "list",
        "the oldest dead letters of a queue",
        ["pgmq-jobs dlq list emails --error timeout --newer-than 1h"],
        parents=[dsn],
        description="The oldest dead letters of a queue, with the last line of their last "
        "error. " + DURATIONS_HELP,
    )
    p.add_argument("queue")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--error", default=None, help="only those with this text in an error")
    duration_flag(p, "--older-than", "died longer ago than this, e.g. 1d")
    duration_flag(p, "--newer-than", "died within this, e.g. 1h")
    _json_flag(p, "full records as JSON")
    p.set_defaults(func=cmd_dlq_list)
    p = verb(
        dsub,
        "show",
        "one dead letter with every error in full",
        ["pgmq-jobs dlq show emails 42"],
        parents=[dsn],
    )
    p.add_argument("queue")
    p.add_argument("dead_id", type=int)
    _json_flag(p)
    p.set_defaults(func=cmd_dlq_show)
    p = verb(
        dsub,
        "replay",
        "put dead letters back into their queue",
        ["pgmq-jobs dlq replay emails 42 43", "pgmq-jobs dlq replay emails --all"],
        parents=[dsn],
        description="Put dead letters back into their queue as new jobs. Ids that are not dead "
        "letters of the queue refuse the whole call (nothing replayed, no audit row); the error "
        "names them.",
    )
    p.add_argument("queue")
    p.add_argument("ids", nargs="*", type=int, help="dead ids (see dlq list)")
    p.add_argument("--all", action="store_true", help="replay every dead letter")
    p.set_defaults(func=cmd_dlq_replay)
    p = verb(
        dsub,
        "purge",
        "delete dead letters for good",
        ["pgmq-jobs dlq purge emails --older-than 30d", "pgmq-jobs dlq purge emails --all"],
        parents=[dsn],
    )
    p.add_argument("queue")
    duration_flag(p, "--older-than", "only those that died longer ago than this")
    p.add_argument("--all", action="store_true", help="purge every dead letter")
    p.set_defaults(func=cmd_dlq_purge)

    jobs = verb(
        sub,
        "jobs",
        "look up, list, cancel or reschedule jobs",
        ["pgmq-jobs jobs show emails 42", "pgmq-jobs jobs list emails --state retrying"],
    )
    jsub = jobs.add_subparsers(
        dest="jobs_command", required=True, metavar="{show,list,cancel,reschedule}"
    )
    p = verb(
        jsub,
        "show",
        "one job wherever it is: its state, attempts, payload and every error",
        ["pgmq-jobs jobs show emails 42", "pgmq-jobs jobs show emails 42 --json"],
        parents=[dsn],
    )
    p.add_argument("queue")
    p.add_argument("job_id", type=int)
    _json_flag(p)
    p.set_defaults(func=cmd_jobs_show)
    p = verb(
        jsub,
        "list",
        "the jobs of a queue in one state",
        ["pgmq-jobs jobs list emails --state delayed --limit 20"],
        parents=[dsn],
        description="The jobs of a queue in one state (waiting, delayed, in_flight, retrying, "
        "parked, completed, dead, cancelled); without --state, every job still in the queue.",
    )
    p.add_argument("queue")
    p.add_argument(
        "--state",
        default=None,
        choices=[
            "waiting",
            "delayed",
            "in_flight",
            "retrying",
            "parked",
            "completed",
            "dead",
            "cancelled",
        ],
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many (1..1000)")
    _json_flag(p)
    p.set_defaults(func=cmd_jobs_list)
    p = verb(
        jsub,
        "cancel",
        "cancel jobs (waiting, delayed, retrying, parked or in flight)",
        ["pgmq-jobs jobs cancel emails 42 43"],
        parents=[dsn],
        description="Cancel jobs: waiting, delayed, retrying and parked jobs leave the queue, an "
        "in-flight job's worker finds its delivery stale. Exits 1 naming the ids it did not "
        "cancel (unknown, finished, cancelled before).",
    )
    p.add_argument("queue")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.set_defaults(func=cmd_jobs_cancel)
    p = verb(
        jsub,
        "reschedule",
        "move waiting, delayed or retrying jobs to another time",
        [
            "pgmq-jobs jobs reschedule emails 42 --at +10m",
            "pgmq-jobs jobs reschedule emails 42 --at now",
        ],
        parents=[dsn],
        description="Move waiting, delayed or retrying jobs to run at another time. Exits 1 "
        "naming the ids it did not move. " + TIME_HELP + " " + DURATIONS_HELP,
    )
    p.add_argument("queue")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.add_argument("--at", required=True, metavar="TIME", help="when they run")
    p.set_defaults(func=cmd_jobs_reschedule)

    schedules = verb(
        sub,
        "schedules",
        "cron schedules that enqueue jobs",
        ["pgmq-jobs schedules", "pgmq-jobs schedules add nightly '0 3 * * *' reports"],
        parents=[dsn],
    )
    _json_flag(schedules)
    schedules.set_defaults(func=cmd_schedules_list)
    ssub = schedules.add_subparsers(dest="schedules_command", metavar="{list,add,remove}")
    p = verb(
        ssub,
        "list",
        "every schedule with its last run",
        ["pgmq-jobs schedules list"],
        parents=[dsn],
    )
    _json_flag(p)
    p.set_defaults(func=cmd_schedules_list)
    p = verb(
        ssub,
        "add",
        "create or update a schedule (by name)",
        ["pgmq-jobs schedules add nightly '0 3 * * *' reports '{\"kind\": \"daily\"}'"],
        parents=[dsn],
    )
    p.add_argument("name")
    p.add_argument("cron", help="e.g. '*/5 * * * *' (quote it)")
    p.add_argument("queue")
    p.add_argument("payload", type=parse_object, nargs="?", default={}, help="a JSON object")
    p.set_defaults(func=cmd_schedules_add)
    p = verb(
        ssub, "remove", "remove a schedule", ["pgmq-jobs schedules remove nightly"], parents=[dsn]
    )
    p.add_argument("name")
    p.set_defaults(func=cmd_schedules_remove)

    p = verb(
        sub,
        "audit",
        "operator actions: who changed what",
        ["pgmq-jobs audit --queue emails --limit 20"],
        parents=[dsn],
    )
    p.add_argument("--queue", default=None)
    p.add_argument("--limit", type=int, default=100)
    _json_flag(p)
    p.set_defaults(func=cmd_audit)

    p = verb(
        sub,
        "sweep",
        "run the periodic maintenance (where there is no pg_cron)",
        ["pgmq-jobs sweep", "pgmq-jobs sweep --every 1m"],
        parents=[dsn],
        description="Run sweep() once and print its summary, or every --every (at least "
        f"{format_duration(SWEEP_FLOOR)}) until Ctrl-C. " + DURATIONS_HELP,
    )
    duration_flag(p, "--every", "repeat this often, e.g. 60s")
    p.set_defaults(func=cmd_sweep)
