"""The types of the SQL API's arguments and results, shared by the sync and asyncio faces."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

Duration = timedelta | float | int | str
"""A duration: a ``timedelta``, a number of seconds, or text that PostgreSQL's ``interval``
accepts (``'90 s'``, ``'10 minutes'``, ``'PT10M'``), checked by the database."""

Outcome = Literal["retry", "dead", "stale"]

JobState = Literal[
    "waiting", "delayed", "in_flight", "retrying", "parked", "completed", "dead", "cancelled"
]


@dataclass(frozen=True, slots=True)
class Job:
    """A delivery returned by ``claim``; ``attempt`` is its fencing token."""

    job_id: int
    attempt: int
    max_attempts: int
    payload: dict[str, Any]
    enqueued_at: datetime
    visible_until: datetime


@dataclass(frozen=True, slots=True)
class FailResult:
    """What ``fail`` did: ``retry`` (at ``next_attempt_at``), ``dead`` or ``stale``."""

    outcome: Outcome
    attempt: int
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed delivery for ``fail_batch``, with the options of ``fail``."""

    job_id: int
    attempt: int
    error: str | None
    retry_after: Duration | None = None
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job in a queue's dead-letter queue, as returned by ``dead_letters``."""

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


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job wherever it is, as returned by ``job``."""

    job_id: int
    state: JobState
    attempt: int
    max_attempts: int
    priority: int
    payload: dict[str, Any]
    enqueued_at: datetime | None
    visible_at: datetime | None
    errors: list[dict[str, Any]]
    group_key: str | None
    dedupe_key: str | None


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """The release a database runs and the oldest client release it serves."""

    version: str
    oldest_client: str


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Every setting ``configure_queue`` takes, with its SQL type: the one list that the
    clients' keyword checks and the CLI's flags are built from. ``create_queue`` takes these
    and :data:`CREATE_ONLY`. tests/test_api_catalog.py holds it equal to the SQL function's
    arguments."""

    max_attempts: int | None = None
    visibility_timeout: Duration | None = None
    retry_base: Duration | None = None
    retry_max: Duration | None = None
    retry_factor: float | None = None
    jitter: Literal["none", "full", "equal"] | None = None
    keep_completed: Duration | None = None
    max_payload_bytes: int | None = None
    notify: bool | None = None
    handler: str | None = None
    dead_letter_retention: Duration | None = None
    concurrency: int | None = None
    payload_schema: dict[str, Any] | None = None


# SQL type of each setting (the cast its parameter gets).
SETTING_SQL_TYPES: dict[str, str] = {
    "max_attempts": "integer",
    "visibility_timeout": "interval",
    "retry_base": "interval",
    "retry_max": "interval",
    "retry_factor": "double precision",
    "jitter": "text",
    "keep_completed": "interval",
    "max_payload_bytes": "integer",
    "notify": "boolean",
    "handler": "text",
    "dead_letter_retention": "interval",
    "concurrency": "integer",
    "payload_schema": "jsonb",
    "unlogged": "boolean",
    "partitioned": "boolean",
    "partition_interval": "text",
    "retention_interval": "text",
}

SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(QueueSettings))
"""The names of :class:`QueueSettings`, in the SQL function's order."""

CREATE_ONLY: tuple[str, ...] = (
    "unlogged",
    "partitioned",
    "partition_interval",
    "retention_interval",
)
"""Settings fixed when a queue is created (``create_queue`` only)."""

DURATION_SETTINGS = frozenset(
    name for name in SETTING_SQL_TYPES if SETTING_SQL_TYPES[name] == "interval"
)
