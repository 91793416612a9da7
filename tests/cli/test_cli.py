"""The `pgmq-jobs` CLI verbs over the SQL API, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import pgmq_jobs.client as jobs
from support import make_visible

Connection = psycopg.Connection[Any]
CLI = str(Path(sys.executable).with_name("pgmq-jobs"))


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    return subprocess.run(
        [CLI, *args, "--dsn", dsn], capture_output=True, text=True, timeout=60, env=env
    )


def test_queue_create_enqueue_and_list(db_dsn: str, conn: Connection, queue_name: str) -> None:
    out = cli(db_dsn, "queues", "create", queue_name, "--max-attempts", "2", "--retry-base", "3s")
    assert out.returncode == 0, out.stderr
    out = cli(db_dsn, "enqueue", queue_name, '{"hello": "world"}', "--delay", "0")
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout)
    [job] = jobs.claim(conn, queue_name)
    assert (job.job_id, job.payload, job.max_attempts) == (job_id, {"hello": "world"}, 2)
    for args in (("queues", "list", "--json"), ("queues", "--json", "list")):
        listing = json.loads(cli(db_dsn, *args).stdout)
        [row] = [q for q in listing if q["queue"] == queue_name]
        assert row["retry_base"] == 3.0


def test_dlq_list_replay_purge(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}])
    for job in jobs.claim(conn, queue_name, 2):
        jobs.fail(conn, queue_name, job.job_id, 1, f"Traceback...\nValueError: bad {job.job_id}")

    out = cli(db_dsn, "dlq", "list", queue_name)
    assert out.returncode == 0, out.stderr
    assert "ValueError: bad" in out.stdout and "exhausted" in out.stdout
    letters = json.loads(cli(db_dsn, "dlq", "list", queue_name, "--json").stdout)
    assert len(letters) == 2 and letters[0]["errors"][0]["attempt"] == 1

    out = cli(db_dsn, "dlq", "replay", queue_name, str(letters[0]["dead_id"]))
    assert out.returncode == 0 and "replayed 1" in out.stdout, out.stderr
    assert [j.payload for j in jobs.claim(conn, queue_name)] == [letters[0]["payload"]]

    refused = cli(db_dsn, "dlq", "purge", queue_name)
    assert refused.returncode != 0 and "--all" in refused.stderr
    out = cli(db_dsn, "dlq", "purge", queue_name, "--all")
    assert out.returncode == 0 and "purged 1" in out.stdout
    assert jobs.dead_letters(conn, queue_name) == []


def test_errors_are_one_clear_line(db_dsn: str) -> None:
    out = cli(db_dsn, "enqueue", "no_such_queue", "{}")
    assert out.returncode == 1
    assert out.stderr.strip() == "pgmq-jobs: error: unknown queue 'no_such_queue'"
    out = cli(db_dsn, "enqueue", "q", "[1, 2]")
    assert out.returncode == 1 and "payload must be a JSON object" in out.stderr
    # Nested deeper than Python's parser goes (found by the fuzz test): no traceback.
    out = cli(db_dsn, "enqueue", "q", '{"d": ' + "[" * 5000 + "]" * 5000 + "}")
    assert out.returncode == 1 and "payload is nested too deeply" in out.stderr
    assert "Traceback" not in out.stderr
    # Durations are parsed by the database; the error names the flag.
    out = cli(db_dsn, "enqueue", "q", "{}", "--delay", "soon")
    assert out.returncode == 1
    assert out.stderr == (
        "pgmq-jobs: error: --delay 'soon': invalid input syntax for type interval: \"soon\"\n"
    )
    # A name with a newline in it (found by the fuzz test) is quoted on the same line.
    out = cli(db_dsn, "queues", "create", "bad\nname")
    assert out.returncode == 1
    assert (
        out.stderr == "pgmq-jobs: error: invalid queue name 'bad\\nname': use lowercase"
        " letters, digits and underscores, starting with a letter\n"
    )


def test_sweep_and_schedules_without_pg_cron(fresh_db: Any) -> None:
    """Where pg_cron is absent, `pgmq-jobs sweep` does the sweep's work."""
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs.create_queue(conn, "nocron", max_attempts=1)
        jobs.enqueue(conn, "nocron", {})
        [job] = jobs.claim(conn, "nocron")
        make_visible(conn, "nocron", job.job_id)  # its worker died: the timeout lapsed
        out = cli(dsn, "sweep")
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["skipped"] is False and summary["expired_to_dlq"] == 1
        assert [d.job_id for d in jobs.dead_letters(conn, "nocron")] == [job.job_id]
        out = cli(dsn, "schedules", "add", "nightly", "0 3 * * *", "nocron")
        assert out.returncode == 1 and "pg_cron is not installed" in out.stderr


def test_dlq_filters_and_show(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}, {"i": 3}])
    errors = {0: "Traceback...\nTimeoutError: smtp", 1: "ValueError: bad", 2: "timeouterror again"}
    for n, job in enumerate(jobs.claim(conn, queue_name, 3)):
        jobs.fail(conn, queue_name, job.job_id, 1, errors[n])
    conn.execute(
        sql.SQL("update pgmq.{} set vt = vt - interval '2 days' where msg_id = 1").format(
            sql.Identifier(f"q_{queue_name}_dlq")
        )
    )
    listed = json.loads(
        cli(db_dsn, "dlq", "list", queue_name, "--error", "TIMEOUT", "--json").stdout
    )
    assert [d["last_error"] for d in listed] == [errors[0], errors[2]]
    old = json.loads(cli(db_dsn, "dlq", "list", queue_name, "--older-than", "1d", "--json").stdout)
    assert [d["dead_id"] for d in old] == [1]
    new = json.loads(cli(db_dsn, "dlq", "list", queue_name, "--newer-than", "1h", "--json").stdout)
    assert [d["dead_id"] for d in new] == [2, 3]

    out = cli(db_dsn, "dlq", "show", queue_name, "1")
    assert out.returncode == 0, out.stderr
    assert "Traceback...\nTimeoutError: smtp" in out.stdout and "--- attempt 1" in out.stdout
    missing = cli(db_dsn, "dlq", "show", queue_name, "99")
    assert missing.returncode == 1 and "no dead letter 99" in missing.stderr
