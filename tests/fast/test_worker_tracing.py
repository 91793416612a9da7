"""Trace context in the worker's loop (issue 20, item 10), against the fake api: the claimed
batch's trace contexts are asked for once per claim while OpenTelemetry traces, never
otherwise, and each job's context reaches its handler's span. tests/test_tracing.py runs the
same against PostgreSQL with a real tracer provider."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fake_api import FakeApi

import pgmq_jobs
from pgmq_jobs import tracing
from pgmq_jobs.registry import JobContext
from pgmq_jobs.worker import Worker, WorkerOptions, executor

Q = "q"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CONTEXT = {"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"}


def noop(payload: dict[str, Any], ctx: JobContext) -> None:
    return None


async def async_noop(payload: dict[str, Any], ctx: JobContext) -> None:
    return None


def make_worker(api: FakeApi, handler: Any = noop, **options: Any) -> Worker:
    app = pgmq_jobs.Registry()
    app.add(Q, handler)
    settings: dict[str, Any] = {"drain": True, "listen": False, "max_seconds": 20, **options}
    return Worker("fake://", app, WorkerOptions([Q], **settings), api=api)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """(job_id, the trace context given to job_span) of every handler run."""
    seen: list[tuple[int, Any]] = []

    @contextlib.contextmanager
    def recording_span(
        queue: str, job_id: int, attempt: int, headers: Any = None
    ) -> Iterator[None]:
        seen.append((job_id, headers))
        yield None

    monkeypatch.setattr(executor, "job_span", recording_span)
    return seen


def no_tracer_provider(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "without OpenTelemetry":
        monkeypatch.setattr(tracing, "_trace", None)
        return
    trace = pytest.importorskip("opentelemetry.trace")
    provider = trace.ProxyTracerProvider() if how == "no provider" else trace.NoOpTracerProvider()
    monkeypatch.setattr(tracing._trace, "get_tracer_provider", lambda: provider)


@pytest.mark.parametrize("how", ["without OpenTelemetry", "no provider", "the no-op provider"])
def test_without_tracing_the_worker_never_asks_for_trace_contexts(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, spans: list[tuple[int, Any]], how: str
) -> None:
    no_tracer_provider(monkeypatch, how)
    assert not tracing.active()
    assert tracing.inject() is None
    ids = api.add_jobs(Q, [{"i": i} for i in range(30)], trace_context=CONTEXT)
    summary = make_worker(api, concurrency=2).run()
    assert summary.completed == 30
    assert api.called("claim")  # it did claim...
    assert api.called("trace_contexts") == []  # ... and sent nothing more for tracing
    assert sorted(spans) == [(job_id, None) for job_id in ids]


@pytest.mark.parametrize("handler", [noop, async_noop], ids=["def", "async def"])
def test_while_tracing_each_claimed_batch_brings_its_trace_contexts_to_the_spans(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, spans: list[tuple[int, Any]], handler: Any
) -> None:
    monkeypatch.setattr(tracing, "active", lambda: True)
    traced = api.add_jobs(Q, [{"i": i} for i in range(20)], trace_context=CONTEXT)
    untraced = api.add_jobs(Q, [{"i": i} for i in range(20, 40)])
    summary = make_worker(api, handler, concurrency=2).run()
    assert summary.completed == 40
    claims = api.called("claim")
    asked = api.called("trace_contexts")
    # One call per claim that returned jobs, for exactly the jobs it returned.
    assert 1 <= len(asked) <= len(claims)
    asked_ids = [job_id for queue, ids in asked for job_id in ids]
    assert {queue for queue, _ in asked} == {Q}
    assert sorted(asked_ids) == sorted(traced + untraced)
    # Each job's span got its own producer's context; jobs without one got none.
    assert sorted(spans) == sorted(
        [(job_id, CONTEXT) for job_id in traced] + [(job_id, None) for job_id in untraced]
    )


def test_a_failed_trace_contexts_call_costs_no_job(
    api: FakeApi,
    monkeypatch: pytest.MonkeyPatch,
    spans: list[tuple[int, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(tracing, "active", lambda: True)
    ids = api.add_jobs(Q, [{"i": i} for i in range(3)], trace_context=CONTEXT)
    api.errors["trace_contexts"] = [
        psycopg.errors.InsufficientPrivilege("permission denied for function trace_contexts")
        for _ in range(5)
    ]
    caplog.set_level(logging.WARNING, logger="pgmq_jobs.worker")
    summary = make_worker(api, concurrency=1, prefetch=0).run()
    assert summary.completed == 3
    assert sorted(spans) == [(job_id, None) for job_id in ids]  # new traces, not lost jobs
    [warning] = [r for r in caplog.records if "trace contexts" in r.getMessage()]
    assert "permission denied for function trace_contexts" in warning.getMessage()
