"""Every SQL statement the Python side sends, once: each operation builds a :class:`Call` (the
statement, its parameters, how to read its rows), which the sync face (``pgmq_jobs.client``)
and the asyncio face (``pgmq_jobs.aio``) run on their connections.

The statements call the ``pgmq_jobs`` SQL functions and views only; none commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, LiteralString, TypeVar, cast

from psycopg import sql
from psycopg.types.json import Jsonb

from pgmq_jobs import tracing
from pgmq_jobs.api.types import (
    CREATE_ONLY,
    DURATION_SETTINGS,
    SETTING_SQL_TYPES,
    SETTINGS,
    DeadLetter,
    Duration,
    FailResult,
    Failure,
    Job,
    JobInfo,
    SchemaInfo,
)

R = TypeVar("R")
Row = tuple[Any, ...]
Query = LiteralString | sql.Composed


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One statement with its parameters; ``read`` turns the fetched rows into the result.

    ``dicts``: fetch rows as dicts (column name → value) instead of tuples."""

    query: Query
    params: Mapping[str, Any] | Sequence[Any]
    read: Callable[[list[Any]], R]
    dicts: bool = False


def duration(value: Duration | None) -> timedelta | str | None:
    """A duration parameter: timedelta as it is, seconds as a timedelta, text for the database
    to parse as an ``interval`` (so every form PostgreSQL accepts works, and a bad one gets
    its error)."""
    if value is None or isinstance(value, timedelta | str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"a duration must be a timedelta, seconds or interval text, got {type(value).__name__}"
        )
    return timedelta(seconds=value)


def _scalar(rows: list[Row]) -> Any:
    return rows[0][0]


def _int(rows: list[Row]) -> int:
    return int(rows[0][0])


def _bool(rows: list[Row]) -> bool:
    return bool(rows[0][0])


def _dicts(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]


def _pairs(deliveries: Iterable[Job | tuple[int, int]]) -> tuple[list[int], list[int]]:
    pairs = [(d.job_id, d.attempt) if isinstance(d, Job) else d for d in deliveries]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# ---------------------------------------------------------------- queues


def _settings_sql(
    settings: Mapping[str, Any], allowed: Sequence[str]
) -> tuple[Query, dict[str, Any]]:
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown queue setting(s): {', '.join(unknown)} (known: {', '.join(allowed)})"
        )
    # None keeps a setting, except concurrency, where it removes the limit.
    params = {
        name: duration(value) if name in DURATION_SETTINGS else value
        for name, value in settings.items()
        if value is not None or name == "concurrency"
    }
    for name in ("payload_schema",):
        if name in params:
            params[name] = Jsonb(params[name])
    # Explicit types: a Python int beyond int4 must reach the function's range check, not
    # fail to resolve an overload.
    args = sql.SQL("").join(
        sql.SQL(", {} => {}::{}").format(
            sql.Identifier(name), sql.Placeholder(name), sql.SQL(SETTING_SQL_TYPES[name])
        )
        for name in params
    )
    return args, params


def create_queue(queue: str, **settings: Any) -> Call[bool]:
    """Create ``queue`` and its dead-letter queue; False when it already existed.

    Settings: those of :class:`~pgmq_jobs.api.types.QueueSettings` but ``payload_schema``
    (set it with ``configure_queue``), and ``unlogged``, ``partitioned``,
    ``partition_interval``, ``retention_interval``."""
    allowed = (*(s for s in SETTINGS if s != "payload_schema"), *CREATE_ONLY)
    args, params = _settings_sql(settings, allowed)
    query = sql.SQL("select pgmq_jobs.create_queue(%(queue)s{})").format(args)
    return Call(query, {"queue": queue, **params}, _bool)


def configure_queue(queue: str, **settings: Any) -> Call[dict[str, Any]]:
    """Change the given settings of ``queue``; returns all its settings.

    ``concurrency=None`` removes the queue's limit (0 pauses it); other settings given as
    None are left as they are."""
    args, params = _settings_sql(settings, SETTINGS)
    query = sql.SQL("select * from pgmq_jobs.configure_queue(%(queue)s{})").format(args)
    return Call(query, {"queue": queue, **params}, lambda rows: dict(rows[0]), dicts=True)


def drop_queue(queue: str) -> Call[bool]:
    """Drop ``queue`` with its jobs, archive and dead letters."""
    return Call("select pgmq_jobs.drop_queue(%(queue)s)", {"queue": queue}, _bool)


def queues() -> Call[list[dict[str, Any]]]:
    """Every queue with its settings (the ``pgmq_jobs.queues`` view)."""
    return Call("select * from pgmq_jobs.queues order by queue", {}, _dicts, dicts=True)


# ---------------------------------------------------------------- producing

ENQUEUE_PLAIN: LiteralString = "select pgmq_jobs.enqueue(%s, %s)"


def enqueue(
    queue: str,
    payload: dict[str, Any],
    *,
    delay: Duration | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    dedupe_key: str | None = None,
    dedupe_window: Duration | None = None,
    group_key: str | None = None,
    priority: int = 0,
    trace_context: Mapping[str, str] | None = None,
) -> Call[int]:
    """Enqueue one job in the connection's current transaction; returns its job id.

    ``dedupe_key``: while an earlier job with that key is unfinished (or, with
    ``dedupe_window``, was enqueued within the window) its id is returned instead.
    ``group_key``: jobs sharing it run one at a time, in enqueue order. ``priority``
    (-32768..32767): among ready jobs the highest is claimed first. ``trace_context``:
    the W3C trace context the worker's span continues (traceparent, tracestate,
    baggage); by default the current one where OpenTelemetry traces
    (:func:`pgmq_jobs.tracing.inject`), else none."""
    if trace_context is None:
        trace_context = tracing.inject()
    options = (delay, run_at, max_attempts, dedupe_key, dedupe_window, group_key, trace_context)
    if all(option is None for option in options) and priority == 0:
        # The common call, with two parameters to send instead of nine.
        return Call(ENQUEUE_PLAIN, (queue, Jsonb(payload)), _int)
    return Call(
        "select pgmq_jobs.enqueue(%(queue)s, %(payload)s, delay => %(delay)s::interval,"
        " run_at => %(run_at)s, max_attempts => %(max_attempts)s::integer,"
        " dedupe_key => %(dedupe_key)s, dedupe_window => %(dedupe_window)s::interval,"
        " group_key => %(group_key)s, priority => %(priority)s::integer,"
        " trace_context => %(trace_context)s::jsonb)",
        {
            "queue": queue,
            "payload": Jsonb(payload),
            "priority": priority,
            "delay": duration(delay) or timedelta(0),
            "run_at": run_at,
            "max_attempts": max_attempts,
            "dedupe_key": dedupe_key,
            "dedupe_window": duration(dedupe_window),
            "group_key": group_key,
            "trace_context": None if trace_context is None else Jsonb(dict(trace_context)),
        },
        _int,
    )


def enqueue_batch(
    queue: str,
    payloads: Sequence[dict[str, Any]],
    *,
    delay: Duration | None = None,
    max_attempts: int | None = None,
    dedupe_keys: Sequence[str | None] | None = None,
    dedupe_window: Duration | None = None,
    group_keys: Sequence[str | None] | None = None,
    priorities: Sequence[int] | None = None,
    trace_context: Mapping[str, str] | None = None,
) -> Call[list[int]]:
    """Enqueue many jobs in one statement; returns their ids in input order.

    ``dedupe_keys`` / ``group_keys`` give each payload its own key (None for none);
    ``priorities`` each its priority. ``trace_context``: as :func:`enqueue`'s, for every
    job of the batch."""
    if trace_context is None:
        trace_context = tracing.inject()
    return Call(
        "select pgmq_jobs.enqueue_batch(%(queue)s, %(payloads)s::jsonb[],"
        " delay => %(delay)s::interval, max_attempts => %(max_attempts)s::integer,"
        " dedupe_keys => %(dedupe_keys)s::text[], dedupe_window => %(dedupe_window)s::interval,"
        " group_keys => %(group_keys)s::text[], priorities => %(priorities)s::integer[],"
        " trace_context => %(trace_context)s::jsonb)",
        {
            "queue": queue,
            "payloads": [Jsonb(p) for p in payloads],
            "delay": duration(delay) or timedelta(0),
            "max_attempts": max_attempts,
            "dedupe_keys": None if dedupe_keys is None else list(dedupe_keys),
            "dedupe_window": duration(dedupe_window),
            "group_keys": None if group_keys is None else list(group_keys),
            "priorities": None if priorities is None else list(priorities),
            "trace_context": None if trace_context is None else Jsonb(dict(trace_context)),
        },
        lambda rows: [int(r[0]) for r in rows],
    )


# ---------------------------------------------------------------- working


def claim(
    queue: str,
    qty: int = 1,
    *,
    visibility_timeout: Duration | None = None,
    worker: str | None = None,
) -> Call[list[Job]]:
    """Claim up to ``qty`` ready jobs, hidden from others for the visibility timeout."""
    return Call(
        "select job_id, attempt, max_attempts, payload, enqueued_at, visible_until"
        " from pgmq_jobs.claim(%(queue)s, %(qty)s::integer,"
        " visibility_timeout => %(vt)s::interval, worker => %(worker)s)",
        {"queue": queue, "qty": qty, "vt": duration(visibility_timeout), "worker": worker},
        lambda rows: [Job(*r) for r in rows],
    )


def complete(
    queue: str,
    deliveries: Iterable[Job | tuple[int, int]],
    durations_ms: Sequence[float] | None = None,
) -> Call[int]:
    """Complete deliveries (jobs or ``(job_id, attempt)`` pairs); returns how many counted.

    A stale delivery (redelivered, failed or finished since) is not counted.
    ``durations_ms`` (one per delivery) records processing times for ``queue_stats``."""
    ids, attempts = _pairs(deliveries)
    return Call(
        "select pgmq_jobs.complete(%(queue)s, %(ids)s::bigint[], %(attempts)s::int[],"
        " %(durations)s::float8[])",
        {
            "queue": queue,
            "ids": ids,
            "attempts": attempts,
            "durations": None if durations_ms is None else list(durations_ms),
        },
        _int,
    )


def fail(
    queue: str,
    job_id: int,
    attempt: int,
    error: str | None,
    *,
    retry_after: Duration | None = None,
    permanent: bool = False,
) -> Call[FailResult]:
    """Report a failed delivery: it is retried with backoff, or dead-lettered."""
    return Call(
        "select outcome, attempt, next_attempt_at from pgmq_jobs.fail(%(queue)s,"
        " %(job_id)s::bigint, %(attempt)s::integer, %(error)s,"
        " retry_after => %(retry_after)s::interval, permanent => %(permanent)s)",
        {
            "queue": queue,
            "job_id": job_id,
            "attempt": attempt,
            "error": error,
            "retry_after": duration(retry_after),
            "permanent": permanent,
        },
        lambda rows: FailResult(*rows[0]),
    )


def fail_batch(queue: str, failures: Sequence[Failure]) -> Call[list[FailResult]]:
    """Report many failed deliveries of ``queue`` in one statement; one result per failure,
    in the order given, as ``fail`` would return it."""
    return Call(
        "select outcome, attempt, next_attempt_at from pgmq_jobs.fail_batch(%(queue)s,"
        " %(job_ids)s::bigint[], %(attempts)s::integer[], %(errors)s::text[],"
        " retry_after => %(retry_after)s::interval[], permanent => %(permanent)s::boolean[])",
        {
            "queue": queue,
            "job_ids": [f.job_id for f in failures],
            "attempts": [f.attempt for f in failures],
            "errors": [f.error for f in failures],
            "retry_after": [duration(f.retry_after) for f in failures],
            "permanent": [f.permanent for f in failures],
        },
        lambda rows: [FailResult(*r) for r in rows],
    )


def extend(queue: str, job_id: int, attempt: int, by: Duration) -> Call[datetime | None]:
    """Keep a delivery hidden for ``by`` from now; None when the delivery is stale."""
    return Call(
        "select pgmq_jobs.extend(%(queue)s, %(job_id)s::bigint, %(attempt)s::integer,"
        " %(by)s::interval)",
        {"queue": queue, "job_id": job_id, "attempt": attempt, "by": duration(by)},
        _scalar,
    )


def release(queue: str, deliveries: Iterable[Job | tuple[int, int]]) -> Call[int]:
    """Give back claimed, unstarted deliveries: visible now, the attempt not used up.

    Returns how many were released; a stale delivery is not counted."""
    ids, attempts = _pairs(deliveries)
    return Call(
        "select pgmq_jobs.release(%(queue)s, %(ids)s::bigint[], %(attempts)s::int[])",
        {"queue": queue, "ids": ids, "attempts": attempts},
        _int,
    )


# ---------------------------------------------------------------- dead letters


def dead_letters(
    queue: str,
    lim: int = 100,
    *,
    dead_id: int | None = None,
    error_text: str | None = None,
    older_than: Duration | None = None,
    newer_than: Duration | None = None,
    newest_first: bool = False,
) -> Call[list[DeadLetter]]:
    """The oldest ``lim`` dead letters of ``queue``, oldest first, optionally filtered; with
    ``newest_first`` the newest ``lim``, newest first (sorted by the database).

    ``error_text`` matches any recorded error (case-insensitive); ``older_than`` /
    ``newer_than`` compare with the time of death."""
    return Call(
        "select dead_id, job_id, original_job_id, payload, attempts, reason, errors, last_error,"
        " enqueued_at, died_at, replays from pgmq_jobs.dead_letters(%(queue)s, %(lim)s::integer,"
        " dead_id => %(dead_id)s::bigint, error_text => %(error_text)s::text,"
        " older_than => %(older_than)s::interval, newer_than => %(newer_than)s::interval,"
        " newest_first => %(newest_first)s::boolean)",
        {
            "queue": queue,
            "lim": lim,
            "dead_id": dead_id,
            "error_text": error_text,
            "older_than": duration(older_than),
            "newer_than": duration(newer_than),
            "newest_first": newest_first,
        },
        lambda rows: [DeadLetter(*r) for r in rows],
    )


def replay(queue: str, dead_ids: Sequence[int] | None = None, *, strict: bool = False) -> Call[int]:
    """Put dead letters (all when ``dead_ids`` is None) back as new jobs; returns the count.

    Ids that are not dead letters are ignored, or with ``strict`` refused (an error naming
    them, and nothing replayed)."""
    return Call(
        "select pgmq_jobs.replay(%(queue)s, %(ids)s::bigint[], strict => %(strict)s)",
        {"queue": queue, "ids": None if dead_ids is None else list(dead_ids), "strict": strict},
        _int,
    )


def purge_dead_letters(
    queue: str, older_than: Duration | None = None, dead_ids: Sequence[int] | None = None
) -> Call[int]:
    """Delete dead letters (all, those older than ``older_than``, and/or ``dead_ids``)."""
    return Call(
        "select pgmq_jobs.purge_dead_letters(%(queue)s, %(older_than)s::interval,"
        " %(ids)s::bigint[])",
        {
            "queue": queue,
            "older_than": duration(older_than),
            "ids": None if dead_ids is None else list(dead_ids),
        },
        _int,
    )


def failing_jobs(queue: str, lim: int = 100) -> Call[list[dict[str, Any]]]:
    """Jobs that failed at least once and are not dead yet, with their errors."""
    return Call(
        "select * from pgmq_jobs.failing_jobs(%(queue)s, %(lim)s::integer)",
        {"queue": queue, "lim": lim},
        _dicts,
        dicts=True,
    )


# ---------------------------------------------------------------- maintenance


def sweep(*, max_rows: int = 10000) -> Call[dict[str, Any]]:
    """Run the periodic maintenance once (pg_cron does it every minute where present)."""
    return Call(
        "select pgmq_jobs.sweep(max_rows => %(max_rows)s::integer)",
        {"max_rows": max_rows},
        lambda rows: cast("dict[str, Any]", rows[0][0]),
    )


def process(queue: str, max_jobs: int = 100, max_seconds: float = 10) -> Call[dict[str, Any]]:
    """Run ready jobs of ``queue`` through its SQL handler, inside the database."""
    return Call(
        "select pgmq_jobs.process(%(queue)s, %(max_jobs)s::integer, %(max_seconds)s)",
        {"queue": queue, "max_jobs": max_jobs, "max_seconds": float(max_seconds)},
        lambda rows: cast("dict[str, Any]", rows[0][0]),
    )


def schedule(name: str, cron: str, queue: str, payload: dict[str, Any] | None = None) -> Call[int]:
    """Create or update the cron schedule ``name``; returns the pg_cron job id."""
    return Call(
        "select pgmq_jobs.schedule(%(name)s, %(cron)s, %(queue)s, %(payload)s)",
        {"name": name, "cron": cron, "queue": queue, "payload": Jsonb(payload or {})},
        _int,
    )


def unschedule(name: str) -> Call[bool]:
    """Remove the cron schedule ``name``; False when there was none."""
    return Call("select pgmq_jobs.unschedule(%(name)s)", {"name": name}, _bool)


def schedules() -> Call[list[dict[str, Any]]]:
    """Every cron schedule with its last run (the ``pgmq_jobs.schedules`` view)."""
    return Call("select * from pgmq_jobs.schedules order by name", {}, _dicts, dicts=True)


def audit(queue: str | None = None, limit: int = 100) -> Call[list[dict[str, Any]]]:
    """The newest operator actions (the ``pgmq_jobs.audit`` view), optionally for one queue."""
    return Call(
        "select * from pgmq_jobs.audit where %(queue)s::text is null or queue = %(queue)s"
        " order by id desc limit %(limit)s",
        {"queue": queue, "limit": limit},
        _dicts,
        dicts=True,
    )


def schema_info() -> Call[SchemaInfo]:
    """The database's release and the oldest client release it serves (an
    ``UndefinedFunction`` error where pgmq-jobs is not installed, or is release 0.1.0)."""
    return Call(
        "select version, oldest_client from pgmq_jobs.schema_info()",
        {},
        lambda rows: SchemaInfo(*rows[0]),
    )


# ---------------------------------------------------------------- job control


def job(queue: str, job_id: int) -> Call[JobInfo | None]:
    """One job wherever it is (waiting … cancelled); None for an unknown id."""
    return Call(
        "select job_id, state, attempt, max_attempts, priority, payload, enqueued_at,"
        " visible_at, errors, group_key, dedupe_key"
        " from pgmq_jobs.job(%(queue)s, %(job_id)s::bigint)",
        {"queue": queue, "job_id": job_id},
        lambda rows: JobInfo(*rows[0]) if rows else None,
    )


def cancel(queue: str, job_ids: Sequence[int]) -> Call[int]:
    """Cancel jobs that are waiting, delayed, retrying, parked or in flight; returns how
    many were cancelled."""
    return Call(
        "select pgmq_jobs.cancel(%(queue)s, %(ids)s::bigint[])",
        {"queue": queue, "ids": list(job_ids)},
        _int,
    )


def reschedule(queue: str, job_ids: Sequence[int], run_at: datetime) -> Call[int]:
    """Move waiting, delayed or retrying jobs to run at ``run_at``; returns how many."""
    return Call(
        "select pgmq_jobs.reschedule(%(queue)s, %(ids)s::bigint[], %(run_at)s::timestamptz)",
        {"queue": queue, "ids": list(job_ids), "run_at": run_at},
        _int,
    )


def snooze(queue: str, job_id: int, attempt: int, by: Duration) -> Call[datetime | None]:
    """End a delivery and bring the job back after ``by`` without using up an attempt;
    None when the delivery is stale."""
    return Call(
        "select pgmq_jobs.snooze(%(queue)s, %(job_id)s::bigint, %(attempt)s::integer,"
        " %(by)s::interval)",
        {"queue": queue, "job_id": job_id, "attempt": attempt, "by": duration(by)},
        _scalar,
    )


def list_jobs(queue: str, state: str | None = None, limit: int = 100) -> Call[list[JobInfo]]:
    """Up to ``limit`` (1..1000) jobs of ``queue`` in ``state`` (waiting, delayed, in_flight,
    retrying, parked, completed, dead, cancelled; None: every job still in the queue), each
    as ``job`` returns it. A bounded index walk per state (sql/137_list_jobs.sql)."""
    return Call(
        "select job_id, state, attempt, max_attempts, priority, payload, enqueued_at,"
        " visible_at, errors, group_key, dedupe_key"
        " from pgmq_jobs.list_jobs(%(queue)s, %(state)s::text, %(limit)s::integer)",
        {"queue": queue, "state": state, "limit": limit},
        lambda rows: [JobInfo(*r) for r in rows],
    )


# ---------------------------------------------------------------- the worker's statements
# The worker's hot path: positional parameters and arrays sent as text literals (several
# times cheaper to send than lists, which the driver adapts element by element), and results
# read as plain rows. pgmq_jobs.worker.api runs them; see its WorkerApi protocol.


def array_literal(numbers: Iterable[float | None]) -> str:
    """A PostgreSQL array literal of numbers (None as NULL)."""
    return "{" + ",".join("NULL" if n is None else repr(n) for n in numbers) + "}"


def worker_claim(
    queue: str, qty: int, visibility_timeout: timedelta | None, worker: str
) -> Call[list[Row]]:
    """``claim`` for the worker: rows (job_id, attempt, max_attempts, payload, enqueued_at,
    lease seconds left, payload bytes)."""
    return Call(
        "select job_id, attempt, max_attempts, payload, enqueued_at,"
        " extract(epoch from visible_until - pg_catalog.clock_timestamp())::float8,"
        " pg_catalog.pg_column_size(payload)"
        " from pgmq_jobs.claim(%s, %s, visibility_timeout => %s, worker => %s)",
        (queue, qty, visibility_timeout, worker),
        list,
    )


def worker_complete(
    queue: str,
    job_ids: Sequence[int],
    attempts: Sequence[int],
    durations_ms: Sequence[float | None],
) -> Call[int]:
    """``complete`` of many deliveries of ``queue``, with their handlers' durations."""
    return Call(
        "select pgmq_jobs.complete(%s, %s::bigint[], %s::int[], %s::float8[])",
        (queue, array_literal(job_ids), array_literal(attempts), array_literal(durations_ms)),
        _int,
    )


def worker_release(queue: str, job_ids: Sequence[int], attempts: Sequence[int]) -> Call[int]:
    """``release`` of many unstarted deliveries of ``queue``."""
    return Call(
        "select pgmq_jobs.release(%s, %s::bigint[], %s::int[])",
        (queue, array_literal(job_ids), array_literal(attempts)),
        _int,
    )


def worker_fail_batch(
    queue: str,
    job_ids: Sequence[int],
    attempts: Sequence[int],
    errors: Sequence[str | None],
    retry_after: Sequence[timedelta | None],
    permanent: Sequence[bool],
) -> Call[list[Row]]:
    """``fail_batch`` for the worker: rows (job_id, outcome, seconds until the next attempt)."""
    return Call(
        "select job_id, outcome,"
        " extract(epoch from next_attempt_at - pg_catalog.clock_timestamp())::float8"
        " from pgmq_jobs.fail_batch(%s, %s::bigint[], %s::int[], %s::text[], %s::interval[],"
        " %s::boolean[])",
        (
            queue,
            array_literal(job_ids),
            array_literal(attempts),
            list(errors),
            list(retry_after),
            list(permanent),
        ),
        list,
    )


def worker_fail(
    queue: str,
    job_id: int,
    attempt: int,
    error: str | None,
    retry_after: timedelta | None,
    permanent: bool,
) -> Call[Row | None]:
    """``fail`` for the worker: the row (outcome, seconds until the next attempt)."""
    return Call(
        "select outcome,"
        " extract(epoch from next_attempt_at - pg_catalog.clock_timestamp())::float8"
        " from pgmq_jobs.fail(%s, %s, %s, %s, retry_after => %s, permanent => %s)",
        (queue, job_id, attempt, error, retry_after, permanent),
        lambda rows: rows[0] if rows else None,
    )


def extend_batch(
    queue: str, job_ids: Sequence[int], attempts: Sequence[int], by: Sequence[float]
) -> Call[list[Row]]:
    """``extend`` of many deliveries of ``queue`` in one statement, each by its own seconds:
    rows (job_id, attempt, visible_until), visible_until null for a stale delivery."""
    return Call(
        "select e.job_id, e.attempt,"
        " pgmq_jobs.extend(%s, e.job_id, e.attempt, pg_catalog.make_interval(secs => e.secs))"
        " from rows from (pg_catalog.unnest(%s::bigint[]), pg_catalog.unnest(%s::int[]),"
        " pg_catalog.unnest(%s::float8[])) as e(job_id, attempt, secs)",
        (queue, array_literal(job_ids), array_literal(attempts), array_literal(by)),
        list,
    )


def heartbeat(
    worker_id: str,
    queues: Sequence[str],
    *,
    host: str,
    pid: int,
    jobs_done: int,
    jobs_failed: int,
    in_flight: int,
    heartbeat_interval: timedelta,
    stopping: bool = False,
) -> Call[None]:
    """A worker's heartbeat (``stopping``: its last, which also clears its waiting marks)."""
    return Call(
        "select pgmq_jobs.heartbeat(worker_id => %s, queues => %s, host => %s, pid => %s,"
        " jobs_done => %s, jobs_failed => %s, in_flight => %s, heartbeat_interval => %s,"
        " stopping => %s)",
        (
            worker_id,
            list(queues),
            host,
            pid,
            jobs_done,
            jobs_failed,
            in_flight,
            heartbeat_interval,
            stopping,
        ),
        lambda rows: None,
    )


def wait_for_jobs(worker_id: str, queues: Sequence[str], waiting: bool) -> Call[None]:
    """Mark a worker waiting for wake-ups of ``queues`` (or busy again)."""
    return Call(
        "select pgmq_jobs.wait_for_jobs(%s, %s::text[], %s)",
        (worker_id, list(queues), waiting),
        lambda rows: None,
    )


def queues_present(queues: Sequence[str]) -> Call[list[str]]:
    """Which of ``queues`` exist in the database, from the catalog (readable by every role,
    unlike ``pgmq_jobs.queues``)."""
    return Call(
        "select pg_catalog.substr(c.relname, 3) from pg_catalog.pg_class as c"
        " join pg_catalog.pg_namespace as n on n.oid operator(pg_catalog.=) c.relnamespace"
        " where n.nspname operator(pg_catalog.=) 'pgmq'"
        " and c.relname operator(pg_catalog.=) any(%s::name[])",
        ([f"q_{q}" for q in queues],),
        lambda rows: [str(r[0]) for r in rows],
    )


def listen(channel: str) -> Call[None]:
    """LISTEN on ``channel`` (a queue's wake-ups: ``pgmq_jobs_<queue>``)."""
    return Call(sql.SQL("listen {}").format(sql.Identifier(channel)), (), lambda rows: None)


# ---------------------------------------------------------------- typed text and monitoring
# What the CLI and the exporter read: text typed by a person, parsed by the database, and the
# monitoring views.


def interval(text: str) -> Call[timedelta]:
    """``text`` parsed by the database as an ``interval`` (``'90 s'``, ``'1h30m'``,
    ``'PT10M'``, ``'90'`` = seconds); a bad one gets PostgreSQL's error."""
    return Call("select %(text)s::text::interval", {"text": text}, _scalar)


def timestamp(text: str) -> Call[datetime]:
    """``text`` parsed by the database as a ``timestamptz`` (ISO 8601, ``'now'``,
    ``'tomorrow'``, ``'2026-12-24 09:00 Europe/Paris'``)."""
    return Call("select %(text)s::text::timestamptz", {"text": text}, _scalar)


def time_from_now(by: str) -> Call[datetime]:
    """The database's clock plus ``by`` (interval text)."""
    return Call("select pg_catalog.clock_timestamp() + %(by)s::text::interval", {"by": by}, _scalar)


def queue_stats() -> Call[list[dict[str, Any]]]:
    """Metrics of every queue (the ``pgmq_jobs.queue_stats`` view)."""
    return Call("select * from pgmq_jobs.queue_stats order by queue", {}, _dicts, dicts=True)


def workers(include_gone: bool = False) -> Call[list[dict[str, Any]]]:
    """Worker processes and their health (the ``pgmq_jobs.workers`` view), live ones last
    seen first; ``include_gone`` adds those that are gone."""
    return Call(
        "select * from pgmq_jobs.workers where %(all)s or status <> 'gone'"
        " order by status = 'alive', last_seen_at desc",
        {"all": include_gone},
        _dicts,
        dicts=True,
    )


def worker_counts() -> Call[dict[str, int]]:
    """How many workers are alive, stale and gone."""
    return Call(
        "select status, count(*) from pgmq_jobs.workers group by status",
        {},
        lambda rows: {str(r[0]): int(r[1]) for r in rows},
    )


def alerts() -> Call[list[dict[str, Any]]]:
    """Alert conditions firing now (the ``pgmq_jobs.alerts`` view)."""
    return Call("select * from pgmq_jobs.alerts order by alert, queue", {}, _dicts, dicts=True)


def alert_thresholds() -> Call[list[dict[str, Any]]]:
    """Every alert threshold in effect: the defaults (queue null) and each queue's own."""
    return Call(
        "select alert, queue, threshold, updated_at from pgmq_jobs.alert_thresholds"
        " order by alert, queue nulls first",
        {},
        _dicts,
        dicts=True,
    )


def set_alert_threshold(
    alert: str, threshold: float | None, queue: str | None = None
) -> Call[float]:
    """Set ``alert``'s threshold (for ``queue``, or the default); None drops a queue's own;
    ``inf`` turns the alert off. Returns the threshold in effect."""
    return Call(
        "select pgmq_jobs.set_alert_threshold(%(alert)s, %(threshold)s, queue => %(queue)s)",
        {"alert": alert, "threshold": threshold, "queue": queue},
        lambda rows: float(rows[0][0]),
    )


def outcome_totals(since: datetime) -> Call[list[dict[str, Any]]]:
    """Per queue, the jobs completed, retried, dead-lettered and expired since ``since``."""
    return Call(
        "select * from pgmq_jobs.outcome_totals(%(since)s)", {"since": since}, _dicts, dicts=True
    )


def current_minute() -> Call[datetime]:
    """The database's clock, truncated to the minute."""
    return Call("select date_trunc('minute', pg_catalog.clock_timestamp())", {}, _scalar)


# ---------------------------------------------------------------- the dashboard's reads


def local_statement_timeout(milliseconds: int) -> Call[None]:
    """Bound every statement of the current transaction to ``milliseconds``."""
    return Call(
        "select pg_catalog.set_config('statement_timeout', %(ms)s::text, true)",
        {"ms": str(int(milliseconds))},
        lambda rows: None,
    )


def queue_stat(queue: str) -> Call[dict[str, Any] | None]:
    """Metrics of one queue (its ``pgmq_jobs.queue_stats`` row); None for an unknown queue."""
    return Call(
        "select * from pgmq_jobs.queue_stats where queue = %(queue)s",
        {"queue": queue},
        lambda rows: dict(rows[0]) if rows else None,
        dicts=True,
    )


def queue_history(since: datetime, queue: str | None = None) -> Call[list[dict[str, Any]]]:
    """``pgmq_jobs.queue_history`` rows from ``since`` on (of ``queue``, or of every queue),
    by queue and minute."""
    return Call(
        "select queue, minute, completed, retried, dead, expired, duration_count,"
        " duration_ms_sum, duration_buckets, ready, in_flight, delayed, dead_letters"
        " from pgmq_jobs.queue_history"
        " where minute >= %(since)s and (%(queue)s::text is null or queue = %(queue)s)"
        " order by queue, minute",
        {"since": since, "queue": queue},
        _dicts,
        dicts=True,
    )


def worker_trace_contexts(queue: str, job_ids: Sequence[int]) -> Call[list[Row]]:
    """``trace_contexts`` for a tracing worker: rows (job_id, trace_context) of the claimed
    ``job_ids`` of ``queue`` that carry a producer's trace context."""
    return Call(
        "select job_id, trace_context from pgmq_jobs.trace_contexts(%s, %s::bigint[])",
        (queue, array_literal(job_ids)),
        list,
    )
