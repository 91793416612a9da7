"""The invoker moved to :mod:`pgmq_jobs.web.invoker`; this name re-exports it."""

from __future__ import annotations

from pgmq_jobs.web.invoker import (
    DEFAULT_MAX_SECONDS,
    MAX_BODY_BYTES,
    BadRequest,
    DatabaseUnavailable,
    Invocation,
    InvokerConfig,
    InvokerServer,
    authorised,
    check_database,
    invoke,
    parse_invocation,
    serve,
)

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "MAX_BODY_BYTES",
    "BadRequest",
    "DatabaseUnavailable",
    "Invocation",
    "InvokerConfig",
    "InvokerServer",
    "authorised",
    "check_database",
    "invoke",
    "parse_invocation",
    "serve",
]
