"""pgmq-jobs: a Postgres-native job system on top of PGMQ."""

from __future__ import annotations

from pgmq_jobs.ops.versions import PACKAGE_VERSION
from pgmq_jobs.outcomes import Permanent, Retry, Snooze
from pgmq_jobs.registry import JobContext, Registry
from pgmq_jobs.worker import Summary, Worker, WorkerOptions

__version__ = PACKAGE_VERSION

__all__ = [
    "JobContext",
    "Permanent",
    "Registry",
    "Retry",
    "Snooze",
    "Summary",
    "Worker",
    "WorkerOptions",
    "__version__",
]
