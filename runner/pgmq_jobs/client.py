"""A thin, typed Python API over the ``pgmq_jobs`` SQL functions, on a ``psycopg.Connection``.

Every function takes a psycopg connection and runs one SQL call on it, inside whatever
transaction the caller has open: enqueue a job in the same transaction as the business row it
belongs to, and a rollback undoes both. Nothing here commits; with an autocommit connection
each call is its own transaction. Errors are the database's (``psycopg.Error`` subclasses)
with messages that name the problem. The asyncio twin is :mod:`pgmq_jobs.aio`; both are faces
of the one binding in :mod:`pgmq_jobs.api`.
"""

from __future__ import annotations

from pgmq_jobs.api.sync import (
    audit,
    cancel,
    claim,
    complete,
    configure_queue,
    create_queue,
    dead_letters,
    drop_queue,
    enqueue,
    enqueue_batch,
    extend,
    fail,
    fail_batch,
    failing_jobs,
    job,
    process,
    purge_dead_letters,
    queues,
    release,
    replay,
    reschedule,
    run,
    schedule,
    schedules,
    schema_info,
    snooze,
    sweep,
    unschedule,
)
from pgmq_jobs.api.types import (
    DeadLetter,
    Duration,
    FailResult,
    Failure,
    Job,
    JobInfo,
    Outcome,
    QueueSettings,
    SchemaInfo,
)

__all__ = [
    "DeadLetter",
    "Duration",
    "FailResult",
    "Failure",
    "Job",
    "JobInfo",
    "Outcome",
    "QueueSettings",
    "SchemaInfo",
    "audit",
    "cancel",
    "claim",
    "complete",
    "configure_queue",
    "create_queue",
    "dead_letters",
    "drop_queue",
    "enqueue",
    "enqueue_batch",
    "extend",
    "fail",
    "fail_batch",
    "failing_jobs",
    "job",
    "process",
    "purge_dead_letters",
    "queues",
    "release",
    "replay",
    "reschedule",
    "run",
    "schedule",
    "schedules",
    "schema_info",
    "snooze",
    "sweep",
    "unschedule",
]
