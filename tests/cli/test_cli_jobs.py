"""`pgmq-jobs enqueue`'s job options, `jobs show/list/cancel/reschedule` and `dlq replay` of
ids that are not dead letters, run as real processes against the real database (issues 20
and 21)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
from test_cli import cli

import pgmq_jobs.client as jobs
from support import db_now

Connection = psycopg.Connection[Any]


def _enqueue(dsn: str, queue: str, *args: str) -> int:
    out = cli(dsn, "enqueue", queue, *args)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_enqueue_priority_group_and_dedupe_keys(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    low = _enqueue(db_dsn, queue_name, '{"n": 1}', "--priority", "-1")
    high = _enqueue(db_dsn, queue_name, '{"n": 2}', "--priority", "5", "--group-key", "g1")
    keyed = _enqueue(db_dsn, queue_name, '{"n": 3}', "--dedupe-key", "k1")
    # The same key while the first is unfinished: its id, nothing enqueued.
    assert _enqueue(db_dsn, queue_name, '{"n": 4}', "--dedupe-key", "k1") == keyed
    info = jobs.job(conn, queue_name, high)
    assert info is not None and (info.priority, info.group_key) == (5, "g1")
    keyed_info = jobs.job(conn, queue_name, keyed)
    assert keyed_info is not None and keyed_info.dedupe_key == "k1"
    # Highest priority first, then the oldest.
    claimed = [j.job_id for _ in range(3) for j in jobs.claim(conn, queue_name)]
    assert claimed == [high, keyed, low]


def test_enqueue_run_at_relative_and_absolute(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    soon = _enqueue(db_dsn, queue_name, "{}", "--run-at", "+10m")
    info = jobs.job(conn, queue_name, soon)
    assert info is not None and info.state == "delayed" and info.visible_at is not None
    ahead = info.visible_at - db_now(conn)
    assert timedelta(minutes=9) < ahead <= timedelta(minutes=10)
    when = (db_now(conn) + timedelta(hours=2)).isoformat()
    later = _enqueue(db_dsn, queue_name, "{}", "--run-at", when)
    later_info = jobs.job(conn, queue_name, later)
    assert later_info is not None and later_info.visible_at is not None
    assert later_info.visible_at.isoformat() == when


def test_jobs_show_and_list(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3)
    ready = jobs.enqueue(conn, queue_name, {"to": "a@example.com"}, priority=2)
    delayed = jobs.enqueue(conn, queue_name, {"to": "b"}, delay=timedelta(hours=1))
    out = cli(db_dsn, "jobs", "show", queue_name, str(ready))
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    assert (fields["state"], fields["priority"], fields["max_attempts"]) == ("waiting", "2", "3")
    assert json.loads(fields["payload"]) == {"to": "a@example.com"}
    shown = json.loads(cli(db_dsn, "jobs", "show", queue_name, str(delayed), "--json").stdout)
    assert (shown["job_id"], shown["state"]) == (delayed, "delayed")

    listed = json.loads(
        cli(db_dsn, "jobs", "list", queue_name, "--state", "delayed", "--json").stdout
    )
    assert [j["job_id"] for j in listed] == [delayed]
    out = cli(db_dsn, "jobs", "list", queue_name, "--state", "waiting")
    assert out.returncode == 0, out.stderr
    [header, row] = out.stdout.splitlines()
    assert header.split()[:2] == ["job_id", "state"] and row.split()[:2] == [str(ready), "waiting"]

    [job] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job.job_id, job.attempt, "Traceback...\nValueError: bad")
    out = cli(db_dsn, "jobs", "show", queue_name, str(ready))
    assert "retrying" in out.stdout and "ValueError: bad" in out.stdout
    listed = json.loads(
        cli(db_dsn, "jobs", "list", queue_name, "--state", "retrying", "--json").stdout
    )
    assert [(j["job_id"], j["errors"][0]["error"]) for j in listed] == [
        (ready, "Traceback...\nValueError: bad")
    ]


def test_jobs_cancel_for_real(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    keep, waiting, delayed = jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}, {"i": 3}])
    jobs.reschedule(conn, queue_name, [delayed], db_now(conn) + timedelta(hours=1))
    out = cli(db_dsn, "jobs", "cancel", queue_name, str(waiting), str(delayed))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"cancelled 2 job(s) of {queue_name}"
    for job_id in (waiting, delayed):
        info = jobs.job(conn, queue_name, job_id)
        assert info is not None and info.state == "cancelled"
    # Never delivered again: only the job left alone is claimed, even once all are due.
    [delivery] = jobs.claim(conn, queue_name, 10)
    assert delivery.job_id == keep

    # The in-flight one is cancelled too; its worker's complete then counts nothing.
    out = cli(db_dsn, "jobs", "cancel", queue_name, str(keep), "999999")
    assert out.returncode == 1
    assert out.stdout.strip() == f"cancelled 1 job(s) of {queue_name}"
    assert out.stderr == "pgmq-jobs: error: not cancelled: 999999 (no such job)\n"
    assert jobs.complete(conn, queue_name, [delivery]) == 0
    # Cancelling again says which and why.
    again = cli(db_dsn, "jobs", "cancel", queue_name, str(waiting))
    assert again.returncode == 1
    assert again.stderr == f"pgmq-jobs: error: not cancelled: {waiting} (cancelled)\n"


def test_jobs_reschedule_for_real(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    first, second = jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}])
    out = cli(db_dsn, "jobs", "reschedule", queue_name, str(first), str(second), "--at", "+1h")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"rescheduled 2 job(s) of {queue_name} to ")
    assert jobs.claim(conn, queue_name) == []  # both moved an hour ahead
    info = jobs.job(conn, queue_name, first)
    assert info is not None and info.state == "delayed" and info.visible_at is not None
    assert timedelta(minutes=59) < info.visible_at - db_now(conn) <= timedelta(hours=1)

    out = cli(db_dsn, "jobs", "reschedule", queue_name, str(second), "--at", "now")
    assert out.returncode == 0, out.stderr
    [job] = jobs.claim(conn, queue_name)
    assert job.job_id == second

    # In flight: not moved, and the error says which and why.
    out = cli(db_dsn, "jobs", "reschedule", queue_name, str(second), "--at", "+5m")
    assert out.returncode == 1
    assert out.stderr == (
        "pgmq-jobs: error: not rescheduled (only waiting, delayed and retrying jobs move): "
        f"{second} (in_flight)\n"
    )
    bad = cli(db_dsn, "jobs", "reschedule", queue_name, str(first), "--at", "whenever")
    assert bad.returncode == 1 and bad.stderr.startswith("pgmq-jobs: error: --at 'whenever': ")


def test_dlq_replay_of_ids_that_are_not_dead_letters(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue(conn, queue_name, {"i": 1})
    [job] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job.job_id, job.attempt, "boom")
    [letter] = jobs.dead_letters(conn, queue_name)
    audit_before = jobs.audit(conn, queue_name)

    out = cli(db_dsn, "dlq", "replay", queue_name, str(letter.dead_id), "777", "778")
    assert out.returncode == 1
    assert out.stderr == (
        f"pgmq-jobs: error: not dead letters of queue {queue_name}: 777, 778;"
        " nothing was replayed\n"
    )
    # Nothing changed: the letter is still dead, no job came back, no audit row.
    assert [d.dead_id for d in jobs.dead_letters(conn, queue_name)] == [letter.dead_id]
    assert jobs.claim(conn, queue_name) == []
    assert jobs.audit(conn, queue_name) == audit_before

    out = cli(db_dsn, "dlq", "replay", queue_name, str(letter.dead_id))
    assert out.returncode == 0 and "replayed 1" in out.stdout, out.stderr
    assert len(jobs.audit(conn, queue_name)) == len(audit_before) + 1
