"""``pgmq_jobs.aio``: the SQL API on a ``psycopg.AsyncConnection``, awaitable, in the
caller's transaction. Every function of the module is called here against the real
database (``test_every_aio_function_is_called_here`` holds that list complete)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

import pgmq_jobs.aio as aio
import pgmq_jobs.client as client
from pgmq_jobs.api.types import DeadLetter, FailResult, Failure, Job, JobInfo

T = TypeVar("T")
AsyncConnection = psycopg.AsyncConnection[Any]


def run(db_dsn: str, body: Callable[[AsyncConnection], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(db_dsn, **kwargs) as aconn:
            return await body(aconn)

    return asyncio.run(main())


def test_aio_has_the_sync_clients_functions_with_the_same_arguments() -> None:
    for name in client.__all__:
        sync_fn = getattr(client, name)
        async_fn = getattr(aio, name)
        if not inspect.isfunction(sync_fn) or name == "run":
            assert async_fn is sync_fn or name == "run", name
            continue
        assert inspect.iscoroutinefunction(async_fn), name
        sync_params = list(inspect.signature(sync_fn).parameters)
        async_params = list(inspect.signature(async_fn).parameters)
        assert sync_params == async_params, name


def test_a_request_handler_enqueues_in_its_own_transaction(db_dsn: str, queue_name: str) -> None:
    """FastAPI-style: one AsyncConnection transaction inserts the business row and enqueues
    the job; a rollback leaves neither, a commit both."""
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        client.create_queue(conn, queue_name)
        conn.execute(f"create table orders_{queue_name} (id int primary key)")

    class Rollback(Exception):
        pass

    async def handle(aconn: AsyncConnection, order_id: int, fail: bool) -> int:
        async with aconn.transaction():
            await aconn.execute(
                f"insert into orders_{queue_name} (id) values (%s)",  # type: ignore[arg-type]
                (order_id,),
            )
            job_id = await aio.enqueue(aconn, queue_name, {"order_id": order_id})
            if fail:
                raise Rollback
        return job_id

    async def scenario(aconn: AsyncConnection) -> int:
        with pytest.raises(Rollback):
            await handle(aconn, 1, fail=True)
        return await handle(aconn, 2, fail=False)

    kept = run(db_dsn, scenario, autocommit=True)

    with psycopg.connect(db_dsn, autocommit=True) as conn:
        rows = conn.execute(f"select id from orders_{queue_name}").fetchall()  # type: ignore[arg-type]
        jobs = client.claim(conn, queue_name, 10)
    assert rows == [(2,)]
    assert [(j.job_id, j.payload) for j in jobs] == [(kept, {"order_id": 2})]


def test_every_aio_function_against_the_database(db_dsn: str, queue_name: str) -> None:
    called: set[str] = set()

    def note(name: str) -> None:
        called.add(name)

    async def body(aconn: AsyncConnection) -> None:
        assert await aio.create_queue(aconn, queue_name, max_attempts=2, retry_base="1 s")
        note("create_queue")
        settings = await aio.configure_queue(aconn, queue_name, retry_max="90 s")
        assert settings["retry_max"] == timedelta(seconds=90)
        note("configure_queue")
        assert queue_name in [q["queue"] for q in await aio.queues(aconn)]
        note("queues")
        first = await aio.enqueue(aconn, queue_name, {"n": 1})
        note("enqueue")
        more = await aio.enqueue_batch(aconn, queue_name, [{"n": 2}, {"n": 3}, {"n": 4}])
        assert more == [first + 1, first + 2, first + 3]
        note("enqueue_batch")
        claimed = await aio.claim(aconn, queue_name, 4, visibility_timeout="1 minute")
        assert sorted(j.job_id for j in claimed) == [first, *more]
        assert all(isinstance(j, Job) for j in claimed)
        note("claim")
        by_id = {j.job_id: j for j in claimed}
        assert await aio.complete(aconn, queue_name, [by_id[first]]) == 1
        note("complete")
        result = await aio.fail(aconn, queue_name, more[0], 1, "boom", permanent=True)
        assert result == FailResult("dead", 1, None)
        note("fail")
        [retried] = await aio.fail_batch(aconn, queue_name, [Failure(more[1], 1, "again")])
        assert retried.outcome == "retry"
        note("fail_batch")
        assert await aio.extend(aconn, queue_name, more[2], 1, 30) is not None
        note("extend")
        assert await aio.release(aconn, queue_name, [(more[2], 1)]) == 1
        note("release")
        [dead] = await aio.dead_letters(aconn, queue_name)
        assert isinstance(dead, DeadLetter) and dead.job_id == more[0]
        note("dead_letters")
        failing = await aio.failing_jobs(aconn, queue_name)
        assert [f["job_id"] for f in failing] == [more[1]]
        note("failing_jobs")
        assert await aio.replay(aconn, queue_name, [dead.dead_id]) == 1
        note("replay")
        assert await aio.purge_dead_letters(aconn, queue_name) == 0
        note("purge_dead_letters")
        info = await aio.job(aconn, queue_name, more[2])
        assert isinstance(info, JobInfo) and info.state == "waiting"
        assert await aio.job(aconn, queue_name, 10**12) is None
        note("job")
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await aio.reschedule(aconn, queue_name, [more[2]], later) == 1
        note("reschedule")
        delayed = await aio.list_jobs(aconn, queue_name, "delayed")
        assert [(j.job_id, j.state) for j in delayed] == [(more[2], "delayed")]
        note("list_jobs")
        assert await aio.cancel(aconn, queue_name, [more[2]]) == 1
        note("cancel")
        snoozed = await aio.enqueue(aconn, queue_name, {"n": 5})
        deliveries = await aio.claim(aconn, queue_name, 10)
        [delivery] = [d for d in deliveries if d.job_id == snoozed]
        assert await aio.snooze(aconn, queue_name, snoozed, delivery.attempt, "1 hour")
        assert await aio.snooze(aconn, queue_name, snoozed, delivery.attempt, "1 hour") is None
        note("snooze")
        summary = await aio.sweep(aconn)
        assert isinstance(summary, dict)
        note("sweep")
        name = f"s_{queue_name}"
        assert await aio.schedule(aconn, name, "0 3 * * *", queue_name, {"k": 1}) > 0
        note("schedule")
        assert name in [s["name"] for s in await aio.schedules(aconn)]
        note("schedules")
        assert await aio.unschedule(aconn, name)
        note("unschedule")
        actions = {a["action"] for a in await aio.audit(aconn, queue_name)}
        assert {"configure_queue", "replay", "cancel", "reschedule"} <= actions
        note("audit")
        info_row = await aio.schema_info(aconn)
        assert info_row is not None and info_row.version == pgmq_jobs_version()
        note("schema_info")
        await aio.local_statement_timeout(aconn, 5000)
        note("local_statement_timeout")
        stat = await aio.queue_stat(aconn, queue_name)
        assert stat is not None and stat["queue"] == queue_name
        assert await aio.queue_stat(aconn, f"{queue_name}_none") is None
        note("queue_stat")
        since = datetime.now(UTC) - timedelta(hours=1)
        history = await aio.queue_history(aconn, since, queue_name)
        assert {(r["queue"], r["minute"] >= since) for r in history} <= {(queue_name, True)}
        assert await aio.queue_history(aconn, since, f"{queue_name}_none") == []
        note("queue_history")
        assert await aio.interval(aconn, "1h30m") == timedelta(minutes=90)
        note("interval")
        assert (await aio.timestamp(aconn, "2026-12-24 09:00+00")).hour == 9
        note("timestamp")
        assert await aio.time_from_now(aconn, "1 hour") > datetime.now(UTC)
        note("time_from_now")
        assert queue_name in [q["queue"] for q in await aio.queue_stats(aconn)]
        note("queue_stats")
        assert isinstance(await aio.workers(aconn, include_gone=True), list)
        note("workers")
        assert set(await aio.worker_counts(aconn)) <= {"alive", "stale", "gone"}
        note("worker_counts")
        assert isinstance(await aio.alerts(aconn), list)
        note("alerts")
        assert await aio.set_alert_threshold(aconn, "queue_depth", 12345, queue_name) == 12345
        note("set_alert_threshold")
        own = [
            t
            for t in await aio.alert_thresholds(aconn)
            if t["queue"] == queue_name and t["alert"] == "queue_depth"
        ]
        assert [t["threshold"] for t in own] == [12345]
        note("alert_thresholds")
        minute = await aio.current_minute(aconn)
        assert minute.second == 0 and minute.microsecond == 0
        note("current_minute")
        totals = await aio.outcome_totals(aconn, since)
        assert queue_name in {t["queue"] for t in totals}
        note("outcome_totals")
        assert await aio.drop_queue(aconn, queue_name)
        note("drop_queue")

    run(db_dsn, body, autocommit=True)
    # process needs a SQL handler: a queue of its own.
    handled = f"{queue_name}_h"

    async def with_handler(aconn: AsyncConnection) -> None:
        await aconn.execute(
            "create or replace function public.aio_noop(payload jsonb) returns void"
            " language sql as 'select'"
        )
        await aio.create_queue(aconn, handled, handler="public.aio_noop")
        await aio.enqueue(aconn, handled, {})
        result = await aio.process(aconn, handled)
        assert result["completed"] == 1
        note("process")
        await aio.drop_queue(aconn, handled)

    run(db_dsn, with_handler, autocommit=True)
    expected = {n for n in aio.__all__ if callable(getattr(aio, n)) and n[0].islower()}
    assert called == expected - {"run"}


def pgmq_jobs_version() -> str:
    from pgmq_jobs.ops.versions import PACKAGE_VERSION

    return PACKAGE_VERSION


def test_durations_as_people_type_them(db_dsn: str, queue_name: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        client.create_queue(conn, queue_name, retry_base=timedelta(seconds=2))
        for typed, seconds in (("90 s", 90), ("10 minutes", 600), ("PT10M", 600), (45, 45)):
            settings = client.configure_queue(conn, queue_name, retry_max=typed)
            assert settings["retry_max"] == timedelta(seconds=seconds), typed
        with pytest.raises(psycopg.errors.InvalidDatetimeFormat, match="soon"):
            client.enqueue(conn, queue_name, {}, delay="soon")
        with pytest.raises(TypeError, match="a duration must be"):
            client.enqueue(conn, queue_name, {}, delay=[1])  # type: ignore[arg-type]


def test_unknown_settings_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    class NoConnection:
        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("nothing may be sent")

    with pytest.raises(TypeError, match=r"unknown queue setting.*max_tries"):
        client.configure_queue(NoConnection(), "q", max_tries=3)  # type: ignore[arg-type]
