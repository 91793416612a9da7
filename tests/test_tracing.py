"""OpenTelemetry spans around job execution (optional dependency opentelemetry-api)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pgmq_jobs
import pgmq_jobs.client as jobs

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")


@pytest.fixture(scope="module")
def spans() -> Any:
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def test_each_job_runs_in_a_consumer_span(
    spans: Any, db_dsn: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    ok = jobs.enqueue(conn, queue_name, {"ok": True})
    bad = jobs.enqueue(conn, queue_name, {"ok": False})
    app = pgmq_jobs.Registry()

    @app.handler(queue_name)
    def handle(payload: dict[str, Any], ctx: Any) -> None:
        if not payload["ok"]:
            raise ValueError("no good")

    spans.clear()
    options = pgmq_jobs.WorkerOptions([queue_name], drain=True, max_seconds=20, listen=False)
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert (summary.completed, summary.dead) == (1, 1)
    finished = {s.attributes["messaging.message.id"]: s for s in spans.get_finished_spans()}
    assert set(finished) == {str(ok), str(bad)}
    good, failed = finished[str(ok)], finished[str(bad)]
    assert good.name == f"process {queue_name}" and good.kind == trace.SpanKind.CONSUMER
    assert good.attributes["messaging.system"] == "pgmq"
    assert good.attributes["messaging.destination.name"] == queue_name
    assert good.attributes["pgmq_jobs.attempt"] == 1
    assert good.status.status_code == trace.StatusCode.UNSET
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert "ValueError: no good" in (failed.status.description or "")
    assert [e.name for e in failed.events] == ["exception"]
