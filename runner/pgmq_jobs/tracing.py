"""OpenTelemetry spans around job execution, where ``opentelemetry-api`` is installed.

Without it (it is an optional dependency: ``pip install 'pgmq-jobs[otel]'``) every call here
is a no-op. With it, each handler run is a CONSUMER span ``process <queue>`` with the
messaging attributes of the semantic conventions; a failed run records its exception and an
ERROR status. Spans go wherever the application's tracer provider sends them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:  # pragma: no cover - exercised with and without the package installed
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover
    _trace = None


@contextlib.contextmanager
def job_span(queue: str, job_id: int, attempt: int) -> Iterator[Any]:
    """A span around one handler run (None when OpenTelemetry is absent)."""
    if _trace is None or isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider):
        # No OpenTelemetry, or no tracer provider set (yet): a span would go nowhere, and
        # making one costs more than running a no-op job.
        yield None
        return
    tracer = _trace.get_tracer("pgmq_jobs")
    with tracer.start_as_current_span(
        f"process {queue}",
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "pgmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": str(job_id),
            "pgmq_jobs.attempt": attempt,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def record_failure(span: Any, exc: BaseException) -> None:
    """Mark a span failed with the handler's exception."""
    if span is None or _trace is None:
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
