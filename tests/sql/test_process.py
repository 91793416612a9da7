"""Queues handled entirely inside Postgres: a SQL handler run by process() / the drain loop.

Most tests run in a fresh database without pg_cron so that no scheduled drain races them;
the pg_cron registration tests use the shared database, where pg_cron lives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import drain_command, make_visible, queue_rows, wait_for

Connection = psycopg.Connection[Any]

HANDLERS = """
create schema if not exists app;
create table if not exists app.ledger (id serial primary key, payload jsonb, at timestamptz
    default clock_timestamp());
create or replace function app.record(payload jsonb) returns void language plpgsql as $$
begin
    insert into app.ledger (payload) values (payload);
    if payload ? 'fail' then
        raise exception 'handler failed for %', payload ->> 'fail';
    end if;
    if payload ? 'reject' then
        raise exception 'bad input' using errcode = 'PJ001', detail = 'cannot be retried';
    end if;
    if payload ? 'sleep' then
        perform pg_sleep((payload ->> 'sleep')::float8);
    end if;
end
$$;
"""


@pytest.fixture
def db(fresh_db: Callable[[], str]) -> str:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(HANDLERS)
    return dsn


@pytest.fixture
def conn(db: str) -> Iterator[Connection]:
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


def ledger(conn: Connection) -> list[dict[str, Any]]:
    return [r[0] for r in conn.execute("select payload from app.ledger order by id")]


def test_process_completes_jobs_with_the_sql_handler(conn: Connection) -> None:
    jobs.create_queue(conn, "sqlq", handler="app.record")
    ids = jobs.enqueue_batch(conn, "sqlq", [{"n": i} for i in range(25)])
    summary = jobs.process(conn, "sqlq", max_jobs=100)
    assert summary["claimed"] == 25 and summary["completed"] == 25 and summary["retry"] == 0
    assert ledger(conn) == [{"n": i} for i in range(25)]
    assert [r["msg_id"] for r in queue_rows(conn, "sqlq", "a")] == ids
    assert jobs.process(conn, "sqlq")["claimed"] == 0


def test_process_respects_max_jobs(conn: Connection) -> None:
    jobs.create_queue(conn, "maxq", handler="app.record")
    jobs.enqueue_batch(conn, "maxq", [{"n": i} for i in range(30)])
    assert jobs.process(conn, "maxq", max_jobs=12)["completed"] == 12
    assert len(queue_rows(conn, "maxq")) == 18


def test_failing_handler_retries_with_backoff_then_dead_letters(conn: Connection) -> None:
    jobs.create_queue(
        conn, "failq", handler="app.record", max_attempts=3, retry_base=30, jitter="none"
    )
    job_id = jobs.enqueue(conn, "failq", {"fail": "always"})
    ok_id = jobs.enqueue(conn, "failq", {"fine": True})
    first = jobs.process(conn, "failq")
    assert (first["completed"], first["retry"]) == (1, 1)
    [row] = queue_rows(conn, "failq")
    delay = conn.execute("select %s - clock_timestamp()", (row["vt"],)).fetchone()
    assert delay is not None and 25 < delay[0].total_seconds() <= 30  # retry_base, no jitter
    for _ in range(2):
        make_visible(conn, "failq", job_id)
        jobs.process(conn, "failq")
    [letter] = jobs.dead_letters(conn, "failq")
    assert (letter.job_id, letter.reason, letter.attempts) == (job_id, "exhausted", 3)
    assert all("handler failed for always (SQLSTATE P0001)" in e["error"] for e in letter.errors)
    # Each failed attempt rolled back its own effects; the good job's stayed.
    assert ledger(conn) == [{"fine": True}]
    assert [r["msg_id"] for r in queue_rows(conn, "failq", "a")] == [ok_id]


def test_handler_sqlstate_pj001_is_permanent(conn: Connection) -> None:
    jobs.create_queue(conn, "permq", handler="app.record", max_attempts=10)
    jobs.enqueue(conn, "permq", {"reject": True})
    assert jobs.process(conn, "permq")["dead"] == 1
    [letter] = jobs.dead_letters(conn, "permq")
    assert letter.reason == "permanent" and "cannot be retried" in (letter.last_error or "")


def test_process_without_handler_or_with_bad_handler(conn: Connection) -> None:
    jobs.create_queue(conn, "plainq")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="has no handler"):
        jobs.process(conn, "plainq")
    with pytest.raises(psycopg.errors.UndefinedFunction, match="not a function taking"):
        jobs.configure_queue(conn, "plainq", handler="app.missing")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="schema-qualified"):
        jobs.configure_queue(conn, "plainq", handler="record; drop table app.ledger")
    assert [q["handler"] for q in jobs.queues(conn) if q["queue"] == "plainq"] == [None]


def test_drain_commits_as_it_goes_and_stops_at_its_budget(db: str, conn: Connection) -> None:
    jobs.create_queue(conn, "drainq", handler="app.record")
    jobs.enqueue_batch(conn, "drainq", [{"n": i} for i in range(5)])
    done = threading.Event()

    def run() -> None:
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(drain_command(c, "drainq", 3))  # type: ignore[arg-type]
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    # Completions are visible while drain is still running (it commits per batch)...
    wait_for(lambda: len(queue_rows(conn, "drainq", "a")) == 5, what="5 completions")
    assert not done.is_set()
    # ...and it picks up a job enqueued while it idles.
    jobs.enqueue(conn, "drainq", {"late": True})
    wait_for(lambda: len(queue_rows(conn, "drainq", "a")) == 6, what="the late job")
    thread.join(timeout=10)
    assert done.is_set()


def test_slow_handler_does_not_block_the_sweep(db: str, conn: Connection) -> None:
    jobs.create_queue(conn, "slowq", handler="app.record", max_attempts=1)
    jobs.enqueue(conn, "slowq", {"sleep": 3})
    jobs.create_queue(conn, "otherq", max_attempts=1, visibility_timeout=0.05)
    jobs.enqueue(conn, "otherq", {})
    jobs.claim(conn, "otherq")  # its worker dies: the sweep must route it
    started = threading.Event()
    finished = threading.Event()

    def slow() -> None:
        with psycopg.connect(db, autocommit=True) as c:
            started.set()
            jobs.process(c, "slowq")
        finished.set()

    thread = threading.Thread(target=slow)
    thread.start()
    started.wait(5)
    wait_for(
        lambda: conn.execute(
            "select 1 from pg_stat_activity where query like '%%pgmq_jobs.process%%'"
            " and state = 'active' and pid <> pg_backend_pid()"
        ).fetchone(),
        what="the slow handler to be running",
    )
    summary = wait_for(
        lambda: (s := jobs.sweep(conn))["expired_to_dlq"] and s, what="sweep routing otherq"
    )
    assert summary["skipped"] is False
    assert not finished.is_set(), "the sweep should finish while the slow handler still runs"
    thread.join(timeout=15)
    assert finished.is_set()


def test_handler_queue_registers_and_removes_its_cron_job(db_dsn: str, queue_name: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        c.execute(HANDLERS)
        job_name = f"pgmq_jobs_process_{queue_name}"

        def cron_rows() -> list[tuple[Any, ...]]:
            return c.execute(
                "select schedule, command from cron.job where jobname = %s", (job_name,)
            ).fetchall()

        jobs.create_queue(c, queue_name, handler="app.record")
        assert cron_rows() == [("* * * * *", drain_command(c, queue_name, 55))]
        jobs.configure_queue(c, queue_name, max_attempts=3)
        assert len(cron_rows()) == 1
        jobs.configure_queue(c, queue_name, handler="")
        assert cron_rows() == []
        jobs.configure_queue(c, queue_name, handler="app.record")
        assert len(cron_rows()) == 1
        jobs.drop_queue(c, queue_name)
        assert cron_rows() == []
