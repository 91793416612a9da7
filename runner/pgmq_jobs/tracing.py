"""OpenTelemetry spans around job execution, where ``opentelemetry-api`` is installed.

Without it (it is an optional dependency: ``pip install 'pgmq-jobs[otel]'``) every call here
is a no-op. With it, each handler run is a CONSUMER span ``process <queue>`` with the
messaging attributes of the semantic conventions; a failed run records its exception and an
ERROR status. Spans go wherever the application's tracer provider sends them.

Trace context across the queue: the producer passes :func:`inject`'s result as
``enqueue(..., trace_context => ...)`` (and ``enqueue_batch``), which keeps it in the job's
PGMQ headers (``traceparent``, ``tracestate``, ``baggage``: W3C trace context, as the
application's propagator writes it); ``pgmq_jobs.client.enqueue`` and ``enqueue_batch``
pass it by themselves. A worker that traces (:func:`active`) reads the claimed batch's
contexts with ``pgmq_jobs.trace_contexts(queue, job_ids)`` and passes each job's to
:func:`job_span`, whose span then continues the producer's trace (its parent is the
producer's span).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

try:  # pragma: no cover - exercised with and without the package installed
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    # What get_tracer_provider() returns while the application has set none (or the no-op).
    _NO_PROVIDER: tuple[type, ...] = (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)
except ImportError:  # pragma: no cover
    _trace = None
    _propagate = None
    _NO_PROVIDER = ()

#: The header keys a trace context may use (what ``pgmq_jobs.enqueue`` accepts).
TRACE_KEYS = ("traceparent", "tracestate", "baggage")


def active() -> bool:
    """OpenTelemetry is installed and the application has set a tracer provider (not the
    no-op one): only then do spans go anywhere, and only then does the worker ask for the
    claimed jobs' trace contexts. Cheap (no allocation) either way."""
    return _trace is not None and not isinstance(_trace.get_tracer_provider(), _NO_PROVIDER)


def inject() -> dict[str, str] | None:
    """The current trace context as ``enqueue``'s ``trace_context`` argument (the W3C
    ``traceparent`` and, when set, ``tracestate`` and ``baggage``), written by the
    application's global propagator; None without OpenTelemetry, a tracer provider or a
    current span (then the job carries none)."""
    if (
        not active()
        or _propagate is None
        or not _trace.get_current_span().get_span_context().is_valid
    ):
        return None
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    context = {k: v for k, v in carrier.items() if k in TRACE_KEYS and isinstance(v, str)}
    return context if "traceparent" in context else None


def extract(headers: Mapping[str, Any] | None) -> Any:
    """The OpenTelemetry context a job's headers carry (None when they carry none): the
    parent of the worker's span. Only the trace keys are read, and only strings."""
    if _propagate is None or not headers:
        return None
    carrier = {k: v for k, v in headers.items() if k in TRACE_KEYS and isinstance(v, str)}
    if "traceparent" not in carrier:
        return None
    return _propagate.extract(carrier)


@contextlib.contextmanager
def job_span(
    queue: str, job_id: int, attempt: int, headers: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """A span around one handler run (None when OpenTelemetry is absent). Given the claimed
    job's headers, the span continues the trace context the producer put there."""
    if not active():
        # No OpenTelemetry, or no tracer provider set (yet): a span would go nowhere, and
        # making one costs more than running a no-op job.
        yield None
        return
    tracer = _trace.get_tracer("pgmq_jobs")
    with tracer.start_as_current_span(
        f"process {queue}",
        context=extract(headers),
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
