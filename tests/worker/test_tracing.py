"""OpenTelemetry spans around job execution (optional dependency opentelemetry-api)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

import pgmq_jobs
import pgmq_jobs.client as jobs
from pgmq_jobs import tracing
from pgmq_jobs.api import calls

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


# Trace context across the queue (issue 20, item 10).

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def headers_of(conn: psycopg.Connection[Any], queue: str, job_id: int) -> Any:
    row = conn.execute(
        sql.SQL("select headers from pgmq.{} where msg_id = %s").format(
            sql.Identifier(f"q_{queue}")
        ),
        (job_id,),
    ).fetchone()
    assert row is not None
    return row[0]


def test_enqueue_keeps_the_trace_context_in_the_headers(
    conn: psycopg.Connection[Any], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    context = {"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"}
    row = conn.execute(
        "select pgmq_jobs.enqueue(%s, '{}', trace_context => %s)", (queue_name, Jsonb(context))
    ).fetchone()
    assert row is not None
    assert headers_of(conn, queue_name, row[0]) == context
    # Beside the job's own options, which it cannot replace.
    row = conn.execute(
        "select pgmq_jobs.enqueue(%s, '{}', priority => 3, max_attempts => 2, trace_context => %s)",
        (queue_name, Jsonb({"traceparent": TRACEPARENT})),
    ).fetchone()
    assert row is not None
    assert headers_of(conn, queue_name, row[0]) == {
        "traceparent": TRACEPARENT,
        "priority": 3,
        "max_attempts": 2,
    }
    # enqueue_batch: every job of the batch, in each of its three ways of inserting.
    one = Jsonb({"traceparent": TRACEPARENT})
    for extra in ("", ", priorities => array[1, 0]", ", group_keys => array['a', 'b']"):
        ids = [
            r[0]
            for r in conn.execute(
                f"select pgmq_jobs.enqueue_batch(%s, array['{{}}', '{{}}']::jsonb[]{extra},"
                " trace_context => %s)",
                (queue_name, one),
            ).fetchall()
        ]
        assert len(ids) == 2
        for job_id in ids:
            assert headers_of(conn, queue_name, job_id)["traceparent"] == TRACEPARENT, extra
    # Without one, a plain job still has no headers at all.
    plain = jobs.enqueue(conn, queue_name, {})
    assert headers_of(conn, queue_name, plain) is None


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ([TRACEPARENT], "must be a JSON object with a traceparent"),
        ({"tracestate": "a=b"}, "must be a JSON object with a traceparent"),
        ({"traceparent": TRACEPARENT, "priority": 9}, "traceparent, tracestate and baggage only"),
        ({"traceparent": 7}, "trace_context.traceparent must be a string of at most 512"),
        ({"traceparent": TRACEPARENT, "tracestate": "x" * 513}, "tracestate must be a string"),
    ],
)
def test_a_bad_trace_context_is_refused_and_nothing_enqueued(
    conn: psycopg.Connection[Any], queue_name: str, context: Any, message: str
) -> None:
    jobs.create_queue(conn, queue_name)
    for statement in (
        "select pgmq_jobs.enqueue(%s, '{}', trace_context => %s)",
        "select pgmq_jobs.enqueue_batch(%s, array['{}']::jsonb[], trace_context => %s)",
    ):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            conn.execute(statement, (queue_name, Jsonb(context)))
    assert jobs.claim(conn, queue_name, 10) == []


def test_inject_and_job_span_carry_the_trace(spans: Any) -> None:
    tracer = trace.get_tracer("producer")
    assert tracing.inject() is None  # no current span: nothing to carry
    with tracer.start_as_current_span("produce") as producer:
        context = tracing.inject()
    assert context is not None
    producer_ctx = producer.get_span_context()
    version, trace_id, span_id, _flags = context["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{producer_ctx.trace_id:032x}",
        f"{producer_ctx.span_id:016x}",
    )
    spans.clear()
    headers = {**context, "priority": 2, "max_attempts": 3}
    with tracing.job_span("q", 7, 1, headers) as span:
        assert span is not None
    [finished] = spans.get_finished_spans()
    assert finished.context.trace_id == producer_ctx.trace_id
    assert finished.parent is not None and finished.parent.span_id == producer_ctx.span_id
    # No trace context in the headers: a new trace.
    with tracing.job_span("q", 8, 1, {"priority": 2}):
        pass
    assert spans.get_finished_spans()[-1].parent is None
    assert tracing.extract(None) is None and tracing.extract({"traceparent": 5}) is None


def test_a_trace_id_set_at_enqueue_appears_in_the_worker_span(
    spans: Any, db_dsn: str, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    tracer = trace.get_tracer("producer")
    with tracer.start_as_current_span("produce") as producer:
        row = conn.execute(
            "select pgmq_jobs.enqueue(%s, '{}', trace_context => %s)",
            (queue_name, Jsonb(tracing.inject())),
        ).fetchone()
    assert row is not None
    app = pgmq_jobs.Registry()

    @app.handler(queue_name)
    def handle(payload: dict[str, Any], ctx: Any) -> None:
        pass

    spans.clear()
    options = pgmq_jobs.WorkerOptions([queue_name], drain=True, max_seconds=20, listen=False)
    assert pgmq_jobs.Worker(db_dsn, app, options).run().completed == 1
    [span] = [s for s in spans.get_finished_spans() if s.name == f"process {queue_name}"]
    assert span.attributes["messaging.message.id"] == str(row[0])
    assert span.context.trace_id == producer.get_span_context().trace_id
    assert span.parent is not None and span.parent.span_id == producer.get_span_context().span_id


def test_the_client_enqueues_the_current_trace_context(
    spans: Any, conn: psycopg.Connection[Any], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    tracer = trace.get_tracer("producer")
    with tracer.start_as_current_span("produce") as producer:
        one = jobs.enqueue(conn, queue_name, {})
        many = jobs.enqueue_batch(conn, queue_name, [{}, {}], priorities=[1, 0])
        keyed = jobs.enqueue(conn, queue_name, {}, priority=2, group_key="g")
    ctx = producer.get_span_context()
    expected = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    for job_id in (one, *many, keyed):
        assert headers_of(conn, queue_name, job_id)["traceparent"] == expected
    assert headers_of(conn, queue_name, keyed)["group_key"] == "g"
    # Outside a span: none, and the plain enqueue keeps its two-parameter statement.
    assert calls.enqueue(queue_name, {}).query == calls.ENQUEUE_PLAIN
    plain = jobs.enqueue(conn, queue_name, {})
    assert headers_of(conn, queue_name, plain) is None
    # An explicit trace_context wins over the current one.
    with tracer.start_as_current_span("produce"):
        given = jobs.enqueue(conn, queue_name, {}, trace_context={"traceparent": TRACEPARENT})
        [batch] = jobs.enqueue_batch(
            conn, queue_name, [{}], trace_context={"traceparent": TRACEPARENT}
        )
    assert headers_of(conn, queue_name, given) == {"traceparent": TRACEPARENT}
    assert headers_of(conn, queue_name, batch) == {"traceparent": TRACEPARENT}


def test_trace_contexts_gives_each_claimed_jobs_context(
    conn: psycopg.Connection[Any], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    context = {"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE", "baggage": "k=v"}
    traced = jobs.enqueue(conn, queue_name, {}, priority=1, trace_context=context)
    plain = jobs.enqueue(conn, queue_name, {}, priority=1, trace_context=None)
    short = jobs.enqueue(conn, queue_name, {}, trace_context={"traceparent": TRACEPARENT})
    claimed = [j.job_id for j in jobs.claim(conn, queue_name, 10)]
    assert sorted(claimed) == sorted([traced, plain, short])
    rows = conn.execute(
        "select job_id, trace_context from pgmq_jobs.trace_contexts(%s, %s)",
        (queue_name, [*claimed, 999_999]),
    ).fetchall()
    # Only the trace keys (not priority and the worker's marks), only jobs that carry one.
    assert rows == [(traced, context), (short, {"traceparent": TRACEPARENT})]
    assert conn.execute(
        "select count(*) from pgmq_jobs.trace_contexts(%s, '{}')", (queue_name,)
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("queue", "job_ids", "error", "message"),
    [
        ("nosuchqueue", [1], psycopg.errors.UndefinedObject, "unknown queue 'nosuchqueue'"),
        (None, None, psycopg.errors.NullValueNotAllowed, "job_ids must not be null"),
        (None, list(range(1, 1002)), psycopg.errors.InvalidParameterValue, "at most 1000 job_ids"),
    ],
)
def test_trace_contexts_refuses_bad_calls(
    conn: psycopg.Connection[Any],
    queue_name: str,
    queue: str | None,
    job_ids: Any,
    error: type[Exception],
    message: str,
) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(error, match=message):
        conn.execute(
            "select * from pgmq_jobs.trace_contexts(%s, %s::bigint[])",
            (queue or queue_name, job_ids),
        )


def test_trace_contexts_walks_the_primary_key(
    conn: psycopg.Connection[Any], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    ids = jobs.enqueue_batch(
        conn, queue_name, [{}] * 5000, trace_context={"traceparent": TRACEPARENT}
    )
    conn.execute(sql.SQL("analyze {}").format(sql.Identifier("pgmq", f"q_{queue_name}")))

    def scans() -> tuple[int, int]:
        # This transaction's scans of the queue table (not flushed to pg_stat_* yet).
        row = conn.execute(
            "select coalesce(seq_scan, 0), coalesce(idx_scan, 0) from pg_stat_xact_user_tables"
            " where relid = %s::regclass",
            (f"pgmq.q_{queue_name}",),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    wanted = [ids[10], ids[2000], ids[4999]]
    with conn.transaction():
        before = scans()
        rows = conn.execute(
            "select job_id from pgmq_jobs.trace_contexts(%s, %s::bigint[])", (queue_name, wanted)
        ).fetchall()
        after = scans()
    assert [r[0] for r in rows] == wanted
    assert after[0] == before[0], "a sequential scan of the queue table"
    assert after[1] > before[1], "no index scan of the queue table"
