"""Bad input: a clear error naming the problem, and nothing half-applied."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import queue_rows

Connection = psycopg.Connection[Any]


def snapshot(conn: Connection) -> tuple[Any, ...]:
    """Every queue with its settings, PGMQ's queue list and every relation in schema pgmq."""
    queues = conn.execute("select * from pgmq_jobs.queues order by queue").fetchall()
    pgmq = conn.execute("select queue_name from pgmq.list_queues() order by 1").fetchall()
    relations = conn.execute(
        "select relname from pg_class where relnamespace = 'pgmq'::regnamespace order by 1"
    ).fetchall()
    return queues, pgmq, relations


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("Orders", "invalid queue name"),
        ("ORDERS", "invalid queue name"),
        ("orders; drop table x", "invalid queue name"),
        ("o'rders", "invalid queue name"),
        ('o"rders', "invalid queue name"),
        ("1orders", "invalid queue name"),
        ("_orders", "invalid queue name"),
        ("or-ders", "invalid queue name"),
        (" orders", "invalid queue name"),
        ("orders\n", "invalid queue name"),
        ("ordérs", "invalid queue name"),
        ("a" * 44, "too long"),
        ("x" * 5000, "too long"),
        ("orders_dlq", "reserved for dead-letter queues"),
    ],
)
def test_hostile_queue_names_are_refused_untouched(
    conn: Connection, name: str, message: str
) -> None:
    before = snapshot(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        jobs.create_queue(conn, name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        jobs.enqueue(conn, name, {})
    assert snapshot(conn) == before


def test_null_queue_name(conn: Connection) -> None:
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="queue name must not be null"):
        conn.execute("select pgmq_jobs.create_queue(null)")


def test_longest_valid_name_works(conn: Connection) -> None:
    name = "q" + "x" * 42
    assert jobs.create_queue(conn, name) is True
    jobs.enqueue(conn, name, {})
    assert len(jobs.claim(conn, name)) == 1
    jobs.drop_queue(conn, name)


@pytest.mark.parametrize(
    "call",
    [
        "select pgmq_jobs.enqueue('no_such_queue', '{}')",
        "select pgmq_jobs.enqueue_batch('no_such_queue', array['{}'::jsonb])",
        "select * from pgmq_jobs.claim('no_such_queue')",
        "select pgmq_jobs.complete('no_such_queue', array[1]::bigint[], array[1])",
        "select * from pgmq_jobs.fail('no_such_queue', 1, 1, 'e')",
        "select pgmq_jobs.extend('no_such_queue', 1, 1, '1 s')",
        "select * from pgmq_jobs.dead_letters('no_such_queue')",
        "select pgmq_jobs.replay('no_such_queue')",
        "select pgmq_jobs.purge_dead_letters('no_such_queue')",
        "select pgmq_jobs.configure_queue('no_such_queue', max_attempts => 2)",
        "select pgmq_jobs.drop_queue('no_such_queue')",
    ],
)
def test_unknown_queue_is_named(conn: Connection, call: str) -> None:
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue 'no_such_queue'"):
        conn.execute(call)


@pytest.fixture
def queue(conn: Connection, queue_name: str) -> str:
    jobs.create_queue(conn, queue_name, max_payload_bytes=1000)
    return queue_name


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("null", "payload must be a JSON object, got null"),
        ("'[1,2]'", "payload must be a JSON object, got array"),
        ("'\"text\"'", "payload must be a JSON object, got string"),
        ("'42'", "payload must be a JSON object, got number"),
        ("'true'", "payload must be a JSON object, got boolean"),
        ("'null'", "payload must be a JSON object, got null"),
        ("jsonb_build_object('big', repeat('x', 2000))", "over the queue's limit of 1000 bytes"),
    ],
)
def test_bad_payloads_are_refused(conn: Connection, queue: str, payload: str, message: str) -> None:
    with pytest.raises(psycopg.errors.DatabaseError, match=message):
        conn.execute(f"select pgmq_jobs.enqueue(%s, {payload}::jsonb)", (queue,))
    assert queue_rows(conn, queue) == []


def test_batch_with_one_bad_payload_enqueues_nothing(conn: Connection, queue: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"payloads\[3\] .* got array"):
        jobs.enqueue_batch(conn, queue, [{"a": 1}, {"b": 2}, [3], {"d": 4}])  # type: ignore[list-item]
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match=r"payloads\[2\] .* got null"):
        conn.execute("select pgmq_jobs.enqueue_batch(%s, array['{}', null]::jsonb[])", (queue,))
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="payloads must be an array"):
        conn.execute("select pgmq_jobs.enqueue_batch(%s, null)", (queue,))
    assert queue_rows(conn, queue) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("select pgmq_jobs.enqueue(%s, '{}', delay => '-1 s')", "delay must be at least"),
        ("select pgmq_jobs.enqueue(%s, '{}', delay => '100 years')", "delay must be at most"),
        (
            "select pgmq_jobs.enqueue(%s, '{}', delay => '1 s', run_at => now())",
            "either delay or run_at",
        ),
        ("select pgmq_jobs.enqueue(%s, '{}', run_at => 'infinity')", "run_at must be a finite"),
        ("select pgmq_jobs.enqueue(%s, '{}', max_attempts => 0)", "max_attempts must be between"),
        ("select pgmq_jobs.enqueue_batch(%s, array['{}'::jsonb], '-1 s')", "delay must be at"),
        ("select * from pgmq_jobs.claim(%s, 0)", "qty must be between 1 and 1000, got 0"),
        ("select * from pgmq_jobs.claim(%s, 1001)", "qty must be between 1 and 1000, got 1001"),
        ("select * from pgmq_jobs.claim(%s, null)", "qty must be between 1 and 1000, got null"),
        ("select * from pgmq_jobs.claim(%s, 1, '0 s')", "visibility_timeout must be greater"),
        ("select * from pgmq_jobs.claim(%s, 1, '2 days')", "visibility_timeout must be at most"),
        ("select * from pgmq_jobs.fail(%s, 1, 0, 'e')", "attempt must be at least 1"),
        ("select * from pgmq_jobs.fail(%s, -5, 1, 'e')", "job_id must be positive"),
        ("select * from pgmq_jobs.fail(%s, null, 1, 'e')", "job_id must not be null"),
        ("select * from pgmq_jobs.fail(%s, 1, null, 'e')", "attempt must not be null"),
        ("select * from pgmq_jobs.fail(%s, 1, 1, 'e', '-1 s')", "retry_after must be at least"),
        ("select * from pgmq_jobs.fail(%s, 1, 1, 'e', null, null)", "permanent must not be null"),
        ("select pgmq_jobs.extend(%s, 1, 1, '0 s')", "by must be greater than"),
        ("select pgmq_jobs.extend(%s, 1, 1, null)", "by must not be null"),
        (
            "select pgmq_jobs.complete(%s, array[1,2]::bigint[], array[1])",
            "must have the same length",
        ),
        ("select pgmq_jobs.complete(%s, null, array[1])", "must not be null"),
        (
            "select pgmq_jobs.complete(%s, array[null]::bigint[], array[1])",
            "must not contain nulls",
        ),
        (
            "select pgmq_jobs.release(%s, array[1]::bigint[], array[1,2])",
            "must have the same length",
        ),
        ("select pgmq_jobs.release(%s, array[1]::bigint[], null)", "must not be null"),
        ("select pgmq_jobs.release(%s, array[1]::bigint[], array[null]::int[])", "contain nulls"),
        ("select pgmq_jobs.replay(%s, array[null]::bigint[])", "must not contain nulls"),
        ("select * from pgmq_jobs.dead_letters(%s, 0)", "lim must be between"),
        ("select pgmq_jobs.purge_dead_letters(%s, '-1 day')", "older_than must be at least"),
    ],
)
def test_bad_arguments_are_named(conn: Connection, queue: str, call: str, message: str) -> None:
    jobs.enqueue(conn, queue, {"keep": 1})
    before = queue_rows(conn, queue)
    with pytest.raises(psycopg.errors.DatabaseError, match=message):
        conn.execute(call, (queue,))
    assert queue_rows(conn, queue) == before


def test_outcomes_for_jobs_the_queue_never_issued_are_errors(conn: Connection, queue: str) -> None:
    job_id = jobs.enqueue(conn, queue, {})
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="does not exist in queue"):
        jobs.fail(conn, queue, job_id + 1000, 1, "e")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="does not exist in queue"):
        jobs.extend(conn, queue, job_id + 1000, 1, 10)
    # complete takes batches of possibly-finished jobs: an unknown id is simply not counted.
    assert jobs.complete(conn, queue, [(job_id + 1000, 1)]) == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be between 1 and 1000, got 0"),
        ({"max_attempts": 1001}, "max_attempts must be between 1 and 1000"),
        ({"visibility_timeout": 0}, "visibility_timeout must be greater than"),
        ({"retry_base": 0}, "retry_base must be greater than"),
        ({"retry_base": 10, "retry_max": 5}, "retry_max .* must be at least retry_base"),
        ({"retry_factor": 0.5}, "retry_factor must be between 1 and 100"),
        ({"retry_factor": float("nan")}, "retry_factor must be between 1 and 100"),
        ({"jitter": "random"}, "jitter must be one of none, full, equal"),
        ({"keep_completed": -1}, "keep_completed must be at least"),
        ({"max_payload_bytes": 1}, "max_payload_bytes must be between"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_created(
    conn: Connection, queue_name: str, settings: dict[str, Any], message: str
) -> None:
    before = snapshot(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        jobs.create_queue(conn, queue_name, **settings)
    assert snapshot(conn) == before
    jobs.create_queue(conn, queue_name, max_attempts=4)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        # A valid change beside the bad one must not be applied either.
        jobs.configure_queue(conn, queue_name, **{"max_attempts": 2, **settings})
    [row] = [q for q in jobs.queues(conn) if q["queue"] == queue_name]
    assert row["max_attempts"] == 4  # the valid part of the bad call was not applied


def test_error_text_is_bounded(conn: Connection, queue: str) -> None:
    jobs.enqueue(conn, queue, {})
    [job] = jobs.claim(conn, queue)
    jobs.fail(conn, queue, job.job_id, 1, "x" * 100_000, permanent=True)
    [letter] = jobs.dead_letters(conn, queue)
    assert letter.last_error is not None
    assert letter.last_error.startswith("x" * 8192) and letter.last_error.endswith("[truncated]")
