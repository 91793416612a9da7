"""``pgmq_jobs.testing``: ``drain`` runs the ready jobs inline against the real database and
reports what happened (failures with their errors), also inside the test's own transaction,
which a rollback then leaves without a trace; ``enqueued`` lists what a test enqueued."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

import pgmq_jobs
import pgmq_jobs.client as client
from pgmq_jobs import outcomes, testing
from support import queue_rows

Connection = psycopg.Connection[Any]


def make_app(queue: str, effects: str, conn_of: Callable[[], Connection]) -> pgmq_jobs.Registry:
    """A task that records ``n`` in the table ``effects`` on the test's connection, then
    does what ``action`` says."""
    app = pgmq_jobs.Registry()

    @app.task(queue)
    def work(n: int, action: str = "ok") -> None:
        conn_of().execute(f"insert into {effects} (n) values (%s)", (n,))  # type: ignore[arg-type]
        if action == "fail":
            raise ValueError(f"boom {n}")
        if action == "permanent":
            raise outcomes.Permanent(f"bad input {n}")
        if action == "retry_now":
            raise outcomes.Retry("again", after=0)

    return app


def effects_of(conn: Connection, effects: str) -> list[int]:
    return [r[0] for r in conn.execute(f"select n from {effects} order by n").fetchall()]  # type: ignore[arg-type]


def test_drain_runs_the_ready_jobs_inline_and_reports_failures_with_their_errors(
    conn: Connection, queue_name: str
) -> None:
    client.create_queue(conn, queue_name, max_attempts=3)
    effects = f"effects_{queue_name}"
    conn.execute(f"create table {effects} (n int)")  # type: ignore[arg-type]
    app = make_app(queue_name, effects, lambda: conn)
    work = app.tasks[queue_name]
    ok1 = work.defer(conn, n=1)
    failing = work.defer(conn, n=2, action="fail")
    poison = work.defer(conn, n=3, action="permanent")
    delayed = work.configure(delay="1 hour").defer(conn, n=4)

    summary = testing.drain(conn, app)

    assert (summary.completed, summary.failed, summary.dead, summary.snoozed) == (1, 2, 1, 0)
    assert summary.jobs == [(queue_name, ok1), (queue_name, failing), (queue_name, poison)]
    by_job = {e.job_id: e for e in summary.errors}
    assert set(by_job) == {failing, poison}
    assert by_job[failing].outcome == "retry" and by_job[failing].message == "ValueError: boom 2"
    assert isinstance(by_job[failing].exception, ValueError)
    assert "Traceback" in by_job[failing].error and by_job[failing].payload == {
        "n": 2,
        "action": "fail",
    }
    assert by_job[poison].outcome == "dead" and "Permanent: bad input 3" in by_job[poison].error
    with pytest.raises(ValueError, match="boom 2"):
        summary.raise_errors()

    # Through the SQL API, as a worker would have left them.
    done = client.job(conn, queue_name, ok1)
    retrying = client.job(conn, queue_name, failing)
    assert done is not None and done.state == "completed"
    assert retrying is not None and retrying.state == "retrying" and retrying.attempt == 1
    assert "ValueError: boom 2" in retrying.errors[-1]["error"]
    [dead] = client.dead_letters(conn, queue_name)
    assert dead.original_job_id == poison and dead.reason == "permanent"
    still = client.job(conn, queue_name, delayed)
    assert still is not None and still.state == "delayed"  # not ready: not run
    # A failing handler's own writes are rolled back (autocommit: each job its transaction).
    assert effects_of(conn, effects) == [1]  # only the completed job's row


def test_each_job_runs_once_per_drain_and_again_in_the_next(
    conn: Connection, queue_name: str
) -> None:
    """A retry that is due at once is not looped on: the next drain runs it, until the
    queue's max_attempts dead-letters it."""
    client.create_queue(conn, queue_name, max_attempts=2)
    effects = f"effects_{queue_name}"
    conn.execute(f"create table {effects} (n int)")  # type: ignore[arg-type]
    app = make_app(queue_name, effects, lambda: conn)
    job_id = app.tasks[queue_name].defer(conn, n=1, action="retry_now")

    first = testing.drain(conn, app)
    assert (first.failed, first.dead, first.ran) == (1, 0, 1)
    info = client.job(conn, queue_name, job_id)
    # Due now, claimed again by the drain loop and given back unstarted: attempt 1 still.
    assert info is not None and (info.state, info.attempt) == ("retrying", 1)
    second = testing.drain(conn, app)
    assert (second.failed, second.dead, second.ran) == (1, 1, 1)
    assert [e.outcome for e in second.errors] == ["dead"]
    assert testing.drain(conn, app).ran == 0


def test_drain_works_inside_the_tests_transaction_and_a_rollback_leaves_nothing(
    connect: Callable[..., Connection], queue_name: str
) -> None:
    setup = connect(autocommit=True)
    client.create_queue(setup, queue_name, max_attempts=5)
    effects = f"effects_{queue_name}"
    setup.execute(f"create table {effects} (n int)")  # type: ignore[arg-type]

    tx = connect()  # psycopg's default: everything below is one transaction
    app = make_app(queue_name, effects, lambda: tx)
    work = app.tasks[queue_name]
    ok = work.defer(tx, n=1)
    failing = work.defer(tx, n=2, action="fail")
    assert [j.job_id for j in testing.enqueued(tx, queue_name)] == [ok, failing]

    summary = testing.drain(tx, app, queue_name)

    assert (summary.completed, summary.failed, summary.dead) == (1, 1, 0)
    assert summary.errors[0].message == "ValueError: boom 2"
    assert tx.info.transaction_status == TransactionStatus.INTRANS  # nothing committed
    # Inside the transaction: the good job's effect and completion, the failing job's
    # failure recorded, its own insert rolled back to its savepoint.
    assert effects_of(tx, effects) == [1]
    done = client.job(tx, queue_name, ok)
    retrying = client.job(tx, queue_name, failing)
    assert done is not None and done.state == "completed"
    assert retrying is not None and retrying.state == "retrying"
    assert "ValueError: boom 2" in retrying.errors[-1]["error"]
    # Outside it: nothing yet.
    assert queue_rows(setup, queue_name) == [] and effects_of(setup, effects) == []

    tx.rollback()
    for table in ("q", "a"):
        assert queue_rows(setup, queue_name, table) == []
    assert queue_rows(setup, f"{queue_name}_dlq") == [] and effects_of(setup, effects) == []


def test_drain_runs_what_handlers_enqueue_and_only_the_queue_asked_for(
    conn: Connection, queue_name: str
) -> None:
    other = f"{queue_name}_b"
    for queue in (queue_name, other):
        client.create_queue(conn, queue)
    app = pgmq_jobs.Registry()
    seen: list[tuple[str, int]] = []

    @app.task(other)
    def follow_up(n: int) -> None:
        seen.append((other, n))

    @app.task(queue_name)
    def first(n: int) -> None:
        seen.append((queue_name, n))
        if n < 3:
            first.defer(conn, n=n + 1)

    first.defer(conn, n=1)
    follow_up.defer(conn, n=9)
    summary = testing.drain(conn, app, queue=queue_name)
    assert summary.completed == 3 and seen == [(queue_name, 1), (queue_name, 2), (queue_name, 3)]
    assert [j.payload for j in testing.enqueued(conn, other)] == [{"n": 9}]
    assert testing.drain(conn, app).completed == 1 and seen[-1] == (other, 9)
    assert testing.enqueued(conn, other) == []


def test_drain_awaits_async_handlers_also_from_a_running_event_loop(
    conn: Connection, queue_name: str
) -> None:
    client.create_queue(conn, queue_name)
    app = pgmq_jobs.Registry()
    seen: list[tuple[str, int]] = []

    @app.task(queue_name, context=True)
    async def resize(ctx: pgmq_jobs.JobContext, image_id: int) -> None:
        await asyncio.sleep(0)
        seen.append((ctx.queue, image_id))

    resize.defer(conn, image_id=1)
    assert testing.drain(conn, app).completed == 1

    async def from_an_async_test() -> testing.DrainSummary:
        resize.defer(conn, image_id=2)
        return testing.drain(conn, app)

    assert asyncio.run(from_an_async_test()).completed == 1
    assert seen == [(queue_name, 1), (queue_name, 2)]


def test_drain_reports_a_snooze_like_the_worker(conn: Connection, queue_name: str) -> None:
    snooze = getattr(outcomes, "Snooze", None)
    if snooze is None:
        pytest.skip("pgmq_jobs.outcomes.Snooze is not there yet")
    client.create_queue(conn, queue_name)
    app = pgmq_jobs.Registry()

    @app.handler(queue_name)
    def later(payload: dict[str, Any], ctx: pgmq_jobs.JobContext) -> None:
        raise snooze(after=3600)

    job_id = client.enqueue(conn, queue_name, {})
    summary = testing.drain(conn, app)
    assert (summary.snoozed, summary.failed, summary.completed) == (1, 0, 0)
    info = client.job(conn, queue_name, job_id)
    assert info is not None and info.state == "delayed" and info.attempt == 0


def test_enqueued_lists_jobs_not_run_yet_in_enqueue_order(
    conn: Connection, queue_name: str
) -> None:
    client.create_queue(conn, queue_name)
    a = client.enqueue(conn, queue_name, {"k": "a"}, priority=5)
    b = client.enqueue(conn, queue_name, {"k": "b"}, delay="10 minutes")
    c = client.enqueue(conn, queue_name, {"k": "c"}, group_key="g")
    d = client.enqueue(conn, queue_name, {"k": "d"}, group_key="g")  # parked behind c
    listed = testing.enqueued(conn, queue_name)
    assert [(j.job_id, j.state) for j in listed] == [
        (a, "waiting"), (b, "delayed"), (c, "waiting"), (d, "parked")
    ]  # fmt: skip
    assert listed[0].payload == {"k": "a"} and listed[0].priority == 5
    client.claim(conn, queue_name, 1)  # a (highest priority) runs: no longer "enqueued"
    assert [j.job_id for j in testing.enqueued(conn, queue_name)] == [b, c, d]


def test_drain_of_a_queue_without_a_handler_names_it(conn: Connection, queue_name: str) -> None:
    with pytest.raises(LookupError, match=queue_name):
        testing.drain(conn, pgmq_jobs.Registry(), queue_name)
