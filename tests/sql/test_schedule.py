"""Cron schedules through pg_cron: schedule, unschedule, the schedules view, bad input."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import queue_rows

Connection = psycopg.Connection[Any]
YEARLY = "0 0 1 1 *"  # never fires during a test run


def cron_job(conn: Connection, name: str) -> tuple[Any, ...] | None:
    return conn.execute(
        "select jobid, schedule, command, database, active from cron.job where jobname = %s",
        (f"pgmq_jobs_schedule_{name}",),
    ).fetchone()


def test_schedule_creates_a_cron_job_that_enqueues_one_job(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    name = f"{queue_name}_nightly"
    jobid = jobs.schedule(conn, name, YEARLY, queue_name, {"report": "daily", "n": 1})
    row = cron_job(conn, name)
    assert row is not None
    assert row[0] == jobid and row[1] == YEARLY and row[4] is True
    assert row[3] == conn.info.dbname
    assert queue_name in row[2]

    conn.execute(row[2])  # what pg_cron runs
    [job] = queue_rows(conn, queue_name)
    assert job["message"] == {"report": "daily", "n": 1}

    [view] = [s for s in jobs.schedules(conn) if s["name"] == name]
    assert (view["cron"], view["queue"], view["payload"], view["active"]) == (
        YEARLY,
        queue_name,
        {"report": "daily", "n": 1},
        True,
    )
    assert view["jobid"] == jobid and view["last_run_at"] is None


def test_schedule_upserts_by_name_and_unschedule_removes(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    name = f"{queue_name}_s"
    first = jobs.schedule(conn, name, YEARLY, queue_name)
    second = jobs.schedule(conn, name, "*/5 * * * *", queue_name, {"v": 2})
    assert first == second
    count = conn.execute(
        "select count(*) from cron.job where jobname = %s", (f"pgmq_jobs_schedule_{name}",)
    ).fetchone()
    assert count == (1,)
    row = cron_job(conn, name)
    assert row is not None and row[1] == "*/5 * * * *" and '{"v": 2}' in row[2]

    assert jobs.unschedule(conn, name) is True
    assert cron_job(conn, name) is None
    assert name not in {s["name"] for s in jobs.schedules(conn)}
    assert jobs.unschedule(conn, name) is False


def test_schedule_last_run_shows_in_view(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    name = f"{queue_name}_r"
    jobid = jobs.schedule(conn, name, YEARLY, queue_name)
    conn.execute(
        "insert into cron.job_run_details (jobid, runid, job_pid, database, username, command,"
        " status, return_message, start_time, end_time)"
        " values (%s, nextval('cron.runid_seq'), 1, current_database(), current_user, 'x',"
        " 'succeeded', '1 row', now() - interval '1 minute', now())",
        (jobid,),
    )
    [view] = [s for s in jobs.schedules(conn) if s["name"] == name]
    assert view["last_status"] == "succeeded" and view["last_run_at"] is not None
    jobs.unschedule(conn, name)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "must not be empty"),
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute field '60' is out of range 0-59"),
        ("* 24 * * *", "hour field '24' is out of range 0-23"),
        ("* * 32 * *", "day of month field '32' is out of range 1-31"),
        ("* * * 13 *", "month field '13' is out of range 1-12"),
        ("* * * * 8", "day of week field '8' is out of range 0-7"),
        ("* * * foo *", "bad month field 'foo'"),
        ("*/0 * * * *", "step 0 out of range"),
        ("5-1 * * * *", "runs backwards"),
        ("* * * * * *", "expected 5 fields"),
        ("30 seconds", "need pg_cron 1.5 or later"),
        ("1; drop table x", "expected 5 fields"),
    ],
)
def test_bad_cron_expressions_never_reach_pg_cron(
    conn: Connection, queue_name: str, expr: str, message: str
) -> None:
    jobs.create_queue(conn, queue_name)
    before = conn.execute("select count(*) from cron.job").fetchone()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        jobs.schedule(conn, f"{queue_name}_bad", expr, queue_name)
    assert conn.execute("select count(*) from cron.job").fetchone() == before
    assert f"{queue_name}_bad" not in {s["name"] for s in jobs.schedules(conn)}


@pytest.mark.parametrize(
    "expr",
    [
        "*/15 * * * *",
        "0 9-17 * * mon-fri",
        "0,30 8 1,15 jan-jun *",
        "@hourly",
        "@daily",
        "0 0 * * 7",
    ],
)
def test_valid_cron_expressions_are_accepted(conn: Connection, queue_name: str, expr: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.schedule(conn, f"{queue_name}_ok", expr, queue_name)
    row = cron_job(conn, f"{queue_name}_ok")
    assert row is not None and row[1] == expr
    jobs.unschedule(conn, f"{queue_name}_ok")


def test_schedule_into_unknown_queue_or_with_bad_name(conn: Connection, queue_name: str) -> None:
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue"):
        jobs.schedule(conn, "s1", YEARLY, "no_such_queue")
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid schedule name"):
        jobs.schedule(conn, "Bad Name;", YEARLY, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="payload must be a JSON object"):
        conn.execute("select pgmq_jobs.schedule('s2', %s, %s, '[1]')", (YEARLY, queue_name))


def test_schedule_without_pg_cron_says_so(fresh_db: Any) -> None:
    with psycopg.connect(fresh_db(), autocommit=True) as other:
        jobs.create_queue(other, "q")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="pg_cron is not"):
            jobs.schedule(other, "s", YEARLY, "q")
        assert jobs.schedules(other) == []


def test_install_registered_the_sweep_once(conn: Connection) -> None:
    rows = conn.execute(
        "select schedule, command from cron.job where jobname = 'pgmq_jobs_sweep'"
    ).fetchall()
    assert rows == [("* * * * *", "select pgmq_jobs.sweep()")]


def test_drop_queue_removes_its_schedules(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.schedule(conn, f"{queue_name}_gone", YEARLY, queue_name)
    jobs.drop_queue(conn, queue_name)
    assert cron_job(conn, f"{queue_name}_gone") is None
    assert f"{queue_name}_gone" not in {s["name"] for s in jobs.schedules(conn)}


def test_a_step_without_a_range_is_refused_as_pg_cron_does(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="a step needs a range"):
        jobs.schedule(conn, f"{queue_name}_step", "5/15 * * * *", queue_name)
    jobs.schedule(conn, f"{queue_name}_step", "5-59/15 * * * *", queue_name)
    jobs.unschedule(conn, f"{queue_name}_step")
