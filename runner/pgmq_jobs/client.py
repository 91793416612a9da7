"""A thin, typed Python API over the ``pgmq_jobs`` SQL functions.

Every function takes a psycopg connection and runs one SQL call on it, inside
whatever transaction the caller has open: enqueue a job in the same
transaction as the business row it belongs to, and a rollback undoes both.
Nothing here commits; with an autocommit connection each call is its own
transaction. Errors are the database's (``psycopg.Error`` subclasses) with
messages that name the problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Duration = timedelta | float | int
"""A duration: a ``timedelta`` or a number of seconds."""

Outcome = Literal["retry", "dead", "stale"]


@dataclass(frozen=True, slots=True)
class Job:
    """A delivery returned by :func:`claim`; ``attempt`` is its fencing token."""

    job_id: int
    attempt: int
    max_attempts: int
    payload: dict[str, Any]
    enqueued_at: datetime
    visible_until: datetime


@dataclass(frozen=True, slots=True)
class FailResult:
    """What :func:`fail` did: ``retry`` (at ``next_attempt_at``), ``dead`` or ``stale``."""

    outcome: Outcome
    attempt: int
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed delivery for :func:`fail_batch`, with the options of :func:`fail`."""

    job_id: int
    attempt: int
    error: str | None
    retry_after: Duration | None = None
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job in a queue's dead-letter queue, as returned by :func:`dead_letters`."""

    dead_id: int
    job_id: int
    original_job_id: int
    payload: dict[str, Any]
    attempts: int
    reason: str
    errors: list[dict[str, Any]]
    last_error: str | None
    enqueued_at: datetime
    died_at: datetime
    replays: int


def _interval(value: Duration | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a duration must be a timedelta or seconds, got {type(value).__name__}")
    return timedelta(seconds=value)


def _call(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


_SETTINGS = (
    "max_attempts",
    "visibility_timeout",
    "retry_base",
    "retry_max",
    "retry_factor",
    "jitter",
    "keep_completed",
    "max_payload_bytes",
    "notify",
    "handler",
    "dead_letter_retention",
    "concurrency",
)
_DURATION_SETTINGS = frozenset(
    {"visibility_timeout", "retry_base", "retry_max", "keep_completed", "dead_letter_retention"}
)


_SETTING_TYPES = {
    "max_attempts": "::integer",
    "max_payload_bytes": "::integer",
    "concurrency": "::integer",
    "retry_factor": "::float8",
    "payload_schema": "::jsonb",
}


def _settings_args(settings: dict[str, Any], allowed: Iterable[str]) -> tuple[str, dict[str, Any]]:
    allowed = tuple(allowed)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise TypeError(f"unknown queue setting(s): {', '.join(unknown)}")
    # None means "keep" for every setting but concurrency, where it removes the limit.
    params = {
        k: _interval(v) if k in _DURATION_SETTINGS else v
        for k, v in settings.items()
        if v is not None or k == "concurrency"
    }
    # Explicit types: a Python int beyond int4 must reach the function's range check, not
    # fail to resolve an overload that takes bigint.
    return "".join(f", {k} => %({k})s{_SETTING_TYPES.get(k, '')}" for k in params), params


def create_queue(conn: psycopg.Connection[Any], queue: str, **settings: Any) -> bool:
    """Create ``queue`` and its dead-letter queue; False when it already existed.

    Settings: max_attempts, visibility_timeout, retry_base, retry_max, retry_factor,
    jitter ('none' | 'full' | 'equal'), keep_completed (0 = delete completions),
    max_payload_bytes, unlogged, partitioned (with partition_interval and retention_interval,
    through pg_partman), notify (wake idle workers through NOTIFY; default on),
    handler (schema.fn(jsonb) run in the database by process/drain), dead_letter_retention,
    concurrency (most jobs in flight at once; None: no limit).
    """
    args, params = _settings_args(
        settings,
        (*_SETTINGS, "unlogged", "partitioned", "partition_interval", "retention_interval"),
    )
    rows = _call(
        conn, f"select pgmq_jobs.create_queue(%(queue)s{args})", {"queue": queue, **params}
    )
    return bool(rows[0][0])


def configure_queue(conn: psycopg.Connection[Any], queue: str, **settings: Any) -> dict[str, Any]:
    """Change settings of ``queue`` (those given); returns all its settings.

    ``concurrency=None`` removes the queue's limit (0 pauses it); other settings given as
    None are left as they are.
    """
    args, params = _settings_args(settings, _SETTINGS)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"select * from pgmq_jobs.configure_queue(%(queue)s{args})", {"queue": queue, **params}
        )
        row = cur.fetchone()
    assert row is not None
    return dict(row)


def drop_queue(conn: psycopg.Connection[Any], queue: str) -> bool:
    """Drop ``queue`` with its jobs, archive and dead letters."""
    return bool(_call(conn, "select pgmq_jobs.drop_queue(%(queue)s)", {"queue": queue})[0][0])


def queues(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every queue with its settings (the ``pgmq_jobs.queues`` view)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from pgmq_jobs.queues order by queue")
        return [dict(r) for r in cur.fetchall()]


ENQUEUE_PLAIN_SQL = "select pgmq_jobs.enqueue(%s, %s)"


def enqueue(
    conn: psycopg.Connection[Any],
    queue: str,
    payload: dict[str, Any],
    *,
    delay: Duration | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    dedupe_key: str | None = None,
    dedupe_window: Duration | None = None,
    group_key: str | None = None,
) -> int:
    """Enqueue one job in the connection's current transaction; returns its job id.

    ``dedupe_key``: while an earlier job with that key is unfinished (or, with
    ``dedupe_window``, was enqueued within the window) its id is returned instead.
    ``group_key``: jobs sharing it run one at a time, in enqueue order.
    """
    options = (delay, run_at, max_attempts, dedupe_key, dedupe_window, group_key)
    if all(option is None for option in options):
        # The common call, with two parameters to send instead of eight.
        with conn.cursor() as cur:
            row = cur.execute(ENQUEUE_PLAIN_SQL, (queue, Jsonb(payload))).fetchone()
        assert row is not None
        return int(row[0])
    rows = _call(
        conn,
        "select pgmq_jobs.enqueue(%(queue)s, %(payload)s, delay => %(delay)s,"
        " run_at => %(run_at)s, max_attempts => %(max_attempts)s::integer,"
        " dedupe_key => %(dedupe_key)s, dedupe_window => %(dedupe_window)s,"
        " group_key => %(group_key)s)",
        {
            "queue": queue,
            "payload": Jsonb(payload),
            "delay": _interval(delay) or timedelta(0),
            "run_at": run_at,
            "max_attempts": max_attempts,
            "dedupe_key": dedupe_key,
            "dedupe_window": _interval(dedupe_window),
            "group_key": group_key,
        },
    )
    return int(rows[0][0])


def enqueue_batch(
    conn: psycopg.Connection[Any],
    queue: str,
    payloads: Sequence[dict[str, Any]],
    *,
    delay: Duration | None = None,
    max_attempts: int | None = None,
    dedupe_keys: Sequence[str | None] | None = None,
    dedupe_window: Duration | None = None,
    group_keys: Sequence[str | None] | None = None,
) -> list[int]:
    """Enqueue many jobs in one statement; returns their ids in input order.

    ``dedupe_keys`` / ``group_keys`` give each payload its own key (None for none).
    """
    rows = _call(
        conn,
        "select pgmq_jobs.enqueue_batch(%(queue)s, %(payloads)s::jsonb[], delay => %(delay)s,"
        " max_attempts => %(max_attempts)s::integer, dedupe_keys => %(dedupe_keys)s::text[],"
        " dedupe_window => %(dedupe_window)s, group_keys => %(group_keys)s::text[])",
        {
            "queue": queue,
            "payloads": [Jsonb(p) for p in payloads],
            "delay": _interval(delay) or timedelta(0),
            "max_attempts": max_attempts,
            "dedupe_keys": None if dedupe_keys is None else list(dedupe_keys),
            "dedupe_window": _interval(dedupe_window),
            "group_keys": None if group_keys is None else list(group_keys),
        },
    )
    return [int(r[0]) for r in rows]


def claim(
    conn: psycopg.Connection[Any],
    queue: str,
    qty: int = 1,
    *,
    visibility_timeout: Duration | None = None,
    worker: str | None = None,
) -> list[Job]:
    """Claim up to ``qty`` ready jobs, hidden from others for the visibility timeout."""
    rows = _call(
        conn,
        "select job_id, attempt, max_attempts, payload, enqueued_at, visible_until"
        " from pgmq_jobs.claim(%(queue)s, %(qty)s::integer, visibility_timeout => %(vt)s,"
        " worker => %(worker)s)",
        {"queue": queue, "qty": qty, "vt": _interval(visibility_timeout), "worker": worker},
    )
    return [Job(*r) for r in rows]


def complete(
    conn: psycopg.Connection[Any],
    queue: str,
    deliveries: Iterable[Job | tuple[int, int]],
    durations_ms: Sequence[float] | None = None,
) -> int:
    """Complete deliveries (jobs or ``(job_id, attempt)`` pairs); returns how many counted.

    A stale delivery (redelivered, failed or finished since) is not counted.
    ``durations_ms`` (one per delivery) records processing times for ``queue_stats``.
    """
    pairs = [(d.job_id, d.attempt) if isinstance(d, Job) else d for d in deliveries]
    rows = _call(
        conn,
        "select pgmq_jobs.complete(%(queue)s, %(ids)s::bigint[], %(attempts)s::int[],"
        " %(durations)s::float8[])",
        {
            "queue": queue,
            "ids": [p[0] for p in pairs],
            "attempts": [p[1] for p in pairs],
            "durations": None if durations_ms is None else list(durations_ms),
        },
    )
    return int(rows[0][0])


def fail(
    conn: psycopg.Connection[Any],
    queue: str,
    job_id: int,
    attempt: int,
    error: str | None,
    *,
    retry_after: Duration | None = None,
    permanent: bool = False,
) -> FailResult:
    """Report a failed delivery: it is retried with backoff, or dead-lettered."""
    rows = _call(
        conn,
        "select outcome, attempt, next_attempt_at from pgmq_jobs.fail(%(queue)s,"
        " %(job_id)s::bigint, %(attempt)s::integer, %(error)s,"
        " retry_after => %(retry_after)s, permanent => %(permanent)s)",
        {
            "queue": queue,
            "job_id": job_id,
            "attempt": attempt,
            "error": error,
            "retry_after": _interval(retry_after),
            "permanent": permanent,
        },
    )
    return FailResult(*rows[0])


def fail_batch(
    conn: psycopg.Connection[Any], queue: str, failures: Sequence[Failure]
) -> list[FailResult]:
    """Report many failed deliveries of ``queue`` in one statement; one result per failure,
    in the order given, as :func:`fail` would return it."""
    rows = _call(
        conn,
        "select outcome, attempt, next_attempt_at from pgmq_jobs.fail_batch(%(queue)s,"
        " %(job_ids)s::bigint[], %(attempts)s::integer[], %(errors)s::text[],"
        " retry_after => %(retry_after)s::interval[], permanent => %(permanent)s::boolean[])",
        {
            "queue": queue,
            "job_ids": [f.job_id for f in failures],
            "attempts": [f.attempt for f in failures],
            "errors": [f.error for f in failures],
            "retry_after": [_interval(f.retry_after) for f in failures],
            "permanent": [f.permanent for f in failures],
        },
    )
    return [FailResult(*r) for r in rows]


def extend(
    conn: psycopg.Connection[Any], queue: str, job_id: int, attempt: int, by: Duration
) -> datetime | None:
    """Keep a delivery hidden for ``by`` from now; None when the delivery is stale."""
    rows = _call(
        conn,
        "select pgmq_jobs.extend(%(queue)s, %(job_id)s::bigint, %(attempt)s::integer, %(by)s)",
        {"queue": queue, "job_id": job_id, "attempt": attempt, "by": _interval(by)},
    )
    value: datetime | None = rows[0][0]
    return value


def release(
    conn: psycopg.Connection[Any], queue: str, deliveries: Iterable[Job | tuple[int, int]]
) -> int:
    """Give back claimed, unstarted deliveries: visible now, the attempt not used up.

    Returns how many were released; a stale delivery is not counted.
    """
    pairs = [(d.job_id, d.attempt) if isinstance(d, Job) else d for d in deliveries]
    rows = _call(
        conn,
        "select pgmq_jobs.release(%(queue)s, %(ids)s::bigint[], %(attempts)s::int[])",
        {"queue": queue, "ids": [p[0] for p in pairs], "attempts": [p[1] for p in pairs]},
    )
    return int(rows[0][0])


def dead_letters(
    conn: psycopg.Connection[Any],
    queue: str,
    lim: int = 100,
    *,
    dead_id: int | None = None,
    error_text: str | None = None,
    older_than: Duration | None = None,
    newer_than: Duration | None = None,
) -> list[DeadLetter]:
    """The oldest ``lim`` dead letters of ``queue``, optionally filtered.

    ``error_text`` matches any recorded error (case-insensitive); ``older_than`` /
    ``newer_than`` compare with the time of death.
    """
    rows = _call(
        conn,
        "select dead_id, job_id, original_job_id, payload, attempts, reason, errors, last_error,"
        " enqueued_at, died_at, replays from pgmq_jobs.dead_letters(%(queue)s, %(lim)s::integer,"
        " dead_id => %(dead_id)s::bigint, error_text => %(error_text)s::text,"
        " older_than => %(older_than)s, newer_than => %(newer_than)s)",
        {
            "queue": queue,
            "lim": lim,
            "dead_id": dead_id,
            "error_text": error_text,
            "older_than": _interval(older_than),
            "newer_than": _interval(newer_than),
        },
    )
    return [DeadLetter(*r) for r in rows]


def replay(conn: psycopg.Connection[Any], queue: str, dead_ids: Sequence[int] | None = None) -> int:
    """Put dead letters (all when ``dead_ids`` is None) back as new jobs; returns the count."""
    rows = _call(
        conn,
        "select pgmq_jobs.replay(%(queue)s, %(ids)s::bigint[])",
        {"queue": queue, "ids": None if dead_ids is None else list(dead_ids)},
    )
    return int(rows[0][0])


def purge_dead_letters(
    conn: psycopg.Connection[Any],
    queue: str,
    older_than: Duration | None = None,
    dead_ids: Sequence[int] | None = None,
) -> int:
    """Delete dead letters (all, those older than ``older_than``, and/or ``dead_ids``)."""
    rows = _call(
        conn,
        "select pgmq_jobs.purge_dead_letters(%(queue)s, %(older_than)s, %(ids)s::bigint[])",
        {
            "queue": queue,
            "older_than": _interval(older_than),
            "ids": None if dead_ids is None else list(dead_ids),
        },
    )
    return int(rows[0][0])


def failing_jobs(conn: psycopg.Connection[Any], queue: str, lim: int = 100) -> list[dict[str, Any]]:
    """Jobs that failed at least once and are not dead yet, with their errors."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from pgmq_jobs.failing_jobs(%(queue)s, %(lim)s::integer)",
            {"queue": queue, "lim": lim},
        )
        return [dict(r) for r in cur.fetchall()]


def sweep(conn: psycopg.Connection[Any], *, max_rows: int = 10000) -> dict[str, Any]:
    """Run the periodic maintenance once (pg_cron does it every minute where present)."""
    rows = _call(
        conn, "select pgmq_jobs.sweep(max_rows => %(max_rows)s::integer)", {"max_rows": max_rows}
    )
    result: dict[str, Any] = rows[0][0]
    return result


def process(
    conn: psycopg.Connection[Any], queue: str, max_jobs: int = 100, max_seconds: float = 10
) -> dict[str, Any]:
    """Run ready jobs of ``queue`` through its SQL handler, inside the database."""
    rows = _call(
        conn,
        "select pgmq_jobs.process(%(queue)s, %(max_jobs)s::integer, %(max_seconds)s)",
        {"queue": queue, "max_jobs": max_jobs, "max_seconds": float(max_seconds)},
    )
    result: dict[str, Any] = rows[0][0]
    return result


def schedule(
    conn: psycopg.Connection[Any],
    name: str,
    cron: str,
    queue: str,
    payload: dict[str, Any] | None = None,
) -> int:
    """Create or update the cron schedule ``name``; returns the pg_cron job id."""
    rows = _call(
        conn,
        "select pgmq_jobs.schedule(%(name)s, %(cron)s, %(queue)s, %(payload)s)",
        {"name": name, "cron": cron, "queue": queue, "payload": Jsonb(payload or {})},
    )
    return int(rows[0][0])


def unschedule(conn: psycopg.Connection[Any], name: str) -> bool:
    """Remove the cron schedule ``name``; False when there was none."""
    return bool(_call(conn, "select pgmq_jobs.unschedule(%(name)s)", {"name": name})[0][0])


def schedules(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every cron schedule with its last run (the ``pgmq_jobs.schedules`` view)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from pgmq_jobs.schedules order by name")
        return [dict(r) for r in cur.fetchall()]


def audit(
    conn: psycopg.Connection[Any], queue: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest operator actions (the ``pgmq_jobs.audit`` view), optionally for one queue."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from pgmq_jobs.audit where %(queue)s::text is null or queue = %(queue)s"
            " order by id desc limit %(limit)s",
            {"queue": queue, "limit": limit},
        )
        return [dict(r) for r in cur.fetchall()]
