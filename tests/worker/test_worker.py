"""The worker as a real process (``pgmq-jobs worker``) with the ledger test app.

Every handler execution is recorded in the ``ledger`` table, so each test asserts exactly
what ran, and where.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from apps.harness import (
    CLI,
    archived_ids,
    create_ledger,
    done_ids,
    ledger,
    remaining,
    running_worker,
    start_worker,
    stop_process,
    worker_env,
)
from pgmq_jobs.ops.cluster import free_port
from support import queue_rows, wait_for

Connection = psycopg.Connection[Any]


@pytest.fixture(scope="module", autouse=True)
def _ledger(db_dsn: str) -> None:
    create_ledger(db_dsn)


def heartbeat(conn: Connection, pid: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "select jobs_done, jobs_failed, in_flight, stopped_at from pgmq_jobs.workers"
        " where pid = %s order by last_seen_at desc limit 1",
        (pid,),
    ).fetchone()


def listening(conn: Connection, pid: int) -> bool:
    """The worker process ``pid`` has its LISTEN connection up."""
    row = conn.execute(
        "select count(*) from pg_stat_activity where application_name = %s"
        " and query ilike 'listen %%' and state = 'idle'",
        (f"pgmq-jobs listen {pid}",),
    ).fetchone()
    return bool(row and row[0])


def drain_summary(db_dsn: str, queue: str) -> dict[str, Any]:
    """Run ``pgmq-jobs worker --drain`` (20 s budget, polling) to its end; its JSON summary."""
    proc = start_worker(db_dsn, [queue], "--drain", "--max-seconds", "20", "--no-listen")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def test_notify_wakes_an_idle_worker_within_two_seconds(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    # Polling every 30 s: only the NOTIFY sent at enqueue commit can explain a fast start.
    with running_worker(db_dsn, [queue_name], "--poll-interval", "30") as proc:
        wait_for(lambda: listening(conn, proc.pid), timeout=15, what="the worker's LISTEN")
        # A warm-up job: once it is done the worker has nothing left to do and idles.
        warm_up = jobs.enqueue(conn, queue_name, {"i": "warm-up"})
        wait_for(lambda: warm_up in archived_ids(conn, queue_name), timeout=10, what="warm-up")
        started = time.monotonic()
        job_ids = [jobs.enqueue(conn, queue_name, {"i": i}) for i in range(3)]
        wait_for(lambda: set(job_ids) <= done_ids(conn, queue_name), timeout=10, what="the jobs")
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"picked up after {elapsed:.2f}s; poll interval is 30s"
        wait_for(lambda: archived_ids(conn, queue_name) == {warm_up, *job_ids}, timeout=5)
        assert remaining(conn, queue_name) == 0


def test_sigterm_finishes_the_slow_job_claims_nothing_new_and_exits_0(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    slow = jobs.enqueue(conn, queue_name, {"sleep": 1.5})
    with running_worker(
        db_dsn, [queue_name], "--concurrency", "1", "--poll-interval", "0.1"
    ) as proc:
        wait_for(lambda: ledger(conn, queue_name, "start"), timeout=15, what="the slow job")
        later = jobs.enqueue(conn, queue_name, {"i": "after sigterm"})
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    assert done_ids(conn, queue_name) == {slow}
    assert [row[0] for row in ledger(conn, queue_name, "start")] == [slow]
    assert archived_ids(conn, queue_name) == {slow}
    # The later job was never claimed: still attempt 0, ready for the next worker.
    [job] = jobs.claim(conn, queue_name)
    assert (job.job_id, job.attempt) == (later, 1)
    [row] = conn.execute(
        "select stopped_at is not null, jobs_done from pgmq_jobs.workers where pid = %s",
        (proc.pid,),
    ).fetchall()
    assert row == (True, 1)


def test_sigterm_gives_back_prefetched_jobs_unstarted_and_unspent(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    # One attempt each: a prefetched job that kept its claim would be dead-lettered next time.
    jobs.create_queue(conn, queue_name, max_attempts=1)
    slow = jobs.enqueue(conn, queue_name, {"sleep": 1.5})
    waiting = jobs.enqueue_batch(conn, queue_name, [{"i": 1}, {"i": 2}])
    # Concurrency 1 with its default prefetch of 1: the first claim takes slow and waiting[0].
    with running_worker(db_dsn, [queue_name], "--concurrency", "1") as proc:
        wait_for(lambda: ledger(conn, queue_name, "start"), timeout=15, what="the slow job")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    assert "giving back 1 prefetched job(s)" in err
    assert done_ids(conn, queue_name) == {slow}
    assert [row[0] for row in ledger(conn, queue_name, "start")] == [slow]
    claimed = jobs.claim(conn, queue_name, qty=10)
    assert sorted((j.job_id, j.attempt) for j in claimed) == [(waiting[0], 1), (waiting[1], 1)]
    assert jobs.dead_letters(conn, queue_name) == []


def test_drain_waits_for_the_retries_it_scheduled(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, retry_base=1, jitter="none", max_attempts=3)
    flaky = jobs.enqueue(conn, queue_name, {"action": "flaky", "fail_times": 1})
    summary = drain_summary(db_dsn, queue_name)
    assert (summary["failed"], summary["completed"]) == (1, 1), summary
    assert done_ids(conn, queue_name) == {flaky}
    assert remaining(conn, queue_name) == 0


def test_drain_leaves_retries_due_after_its_budget(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(
        conn, queue_name, retry_base=3600, retry_max=3600, jitter="none", max_attempts=3
    )
    flaky = jobs.enqueue(conn, queue_name, {"action": "flaky", "fail_times": 1})
    summary = drain_summary(db_dsn, queue_name)
    assert (summary["failed"], summary["completed"]) == (1, 0), summary
    assert summary["seconds"] < 15, summary  # it did not sit out its budget
    assert done_ids(conn, queue_name) == set() and remaining(conn, queue_name) == 1
    [row] = queue_rows(conn, queue_name)
    assert row["msg_id"] == flaky and row["read_ct"] == 1


def test_kill_9_with_jobs_in_flight_loses_nothing(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    n = 4
    jobs.create_queue(conn, queue_name, visibility_timeout=2)
    job_ids = jobs.enqueue_batch(conn, queue_name, [{"sleep": 30} for _ in range(n)])
    victim = start_worker(db_dsn, [queue_name], "--concurrency", str(n))
    try:
        wait_for(lambda: len(ledger(conn, queue_name, "start")) == n, timeout=15, what="N starts")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        stop_process(victim)
    # The second worker caps the 30 s sleeps (LEDGER_SLEEP_CAP) so the test stays short.
    env = worker_env(db_dsn, [queue_name], LEDGER_SLEEP_CAP="0.1")
    with running_worker(db_dsn, [queue_name], "--poll-interval", "0.2", env=env):
        wait_for(lambda: done_ids(conn, queue_name) == set(job_ids), timeout=20, what="all N")
        wait_for(lambda: archived_ids(conn, queue_name) == set(job_ids), timeout=5)
    starts = Counter(row[0] for row in ledger(conn, queue_name, "start"))
    assert starts == dict.fromkeys(job_ids, 2)
    pids = {row[3] for row in ledger(conn, queue_name, "done")}
    assert victim.pid not in pids


def test_a_job_that_kills_its_worker_lands_in_the_dlq_as_expired(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    max_attempts = 3
    jobs.create_queue(conn, queue_name, max_attempts=max_attempts, visibility_timeout=1)
    poison = jobs.enqueue(conn, queue_name, {"action": "kill"})
    deadline = time.monotonic() + 40
    runs = 0
    while not jobs.dead_letters(conn, queue_name):
        assert time.monotonic() < deadline, "the poison job never reached the DLQ"
        runs += 1
        assert runs <= max_attempts + 3
        proc = start_worker(db_dsn, [queue_name], "--poll-interval", "0.2")
        try:
            # Each worker either dies on the poison job or routes it to the DLQ while claiming.
            wait_for(
                lambda p=proc: p.poll() is not None or jobs.dead_letters(conn, queue_name),
                timeout=15,
                what="the worker to die or the job to be dead-lettered",
            )
        finally:
            stop_process(proc)
    [dead] = jobs.dead_letters(conn, queue_name)
    assert (dead.job_id, dead.reason, dead.attempts) == (poison, "expired", max_attempts)
    assert len(ledger(conn, queue_name, "start")) == max_attempts
    assert all("visibility timeout expired" in e["error"] for e in dead.errors)


def test_drain_mode_prints_a_json_summary(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(5)])
    jobs.enqueue(conn, queue_name, {"action": "fail"})
    summary = drain_summary(db_dsn, queue_name)
    assert {k: summary[k] for k in ("claimed", "completed", "failed", "dead", "stale")} == {
        "claimed": 6,
        "completed": 5,
        "failed": 1,
        "dead": 1,
        "stale": 0,
    }
    assert summary["seconds"] < 20


def worker_connections(conn: Connection, pid: int) -> list[str]:
    rows = conn.execute(
        "select application_name from pg_stat_activity where application_name like %s",
        (f"pgmq-jobs % {pid}",),
    ).fetchall()
    return sorted(r[0] for r in rows)


def test_a_busy_worker_uses_at_most_two_connections(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_ids = jobs.enqueue_batch(conn, queue_name, [{"sleep": 1} for _ in range(8)])
    with running_worker(db_dsn, [queue_name], "--concurrency", "8") as proc:
        wait_for(lambda: len(ledger(conn, queue_name, "start")) == 8, timeout=15, what="8 jobs")
        assert worker_connections(conn, proc.pid) == [
            f"pgmq-jobs listen {proc.pid}",
            f"pgmq-jobs worker {proc.pid}",
        ]
        wait_for(lambda: archived_ids(conn, queue_name) == set(job_ids), timeout=15)


def test_without_listen_or_with_a_dead_listen_dsn_it_polls(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    no_listen = ("--no-listen", "--poll-interval", "0.2")
    broken_listen = ("--listen-dsn", nowhere, "--poll-interval", "0.2")
    for args in (no_listen, broken_listen):
        with running_worker(db_dsn, [queue_name], *args) as proc:
            wait_for(lambda p=proc: heartbeat(conn, p.pid), timeout=15, what="a heartbeat")
            job_id = jobs.enqueue(conn, queue_name, {"i": args[0]})
            wait_for(lambda j=job_id: j in archived_ids(conn, queue_name), timeout=5, what="poll")
            assert worker_connections(conn, proc.pid) == [f"pgmq-jobs worker {proc.pid}"]


def test_a_second_signal_exits_at_once(db_dsn: str, conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, visibility_timeout=60)
    job_id = jobs.enqueue(conn, queue_name, {"sleep": 30})
    with running_worker(db_dsn, [queue_name]) as proc:
        wait_for(lambda: ledger(conn, queue_name, "start"), timeout=15, what="the slow job")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "stop requested" in (proc.stderr.readline() if proc.stderr else ""),
                 timeout=10, what="the first signal to be handled")  # fmt: skip
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
        assert time.monotonic() - started < 2
        assert proc.returncode == 128 + signal.SIGINT
    # The job was not reported: it stays claimed until its visibility timeout runs out.
    [row] = queue_rows(conn, queue_name)
    assert (row["msg_id"], row["read_ct"]) == (job_id, 1)


@pytest.mark.parametrize(
    ("queue", "app", "message"),
    [
        ("t_unhandled", "apps.ledger_app:app", "no handler for queue(s) t_unhandled"),
        ("t_x", "apps.no_such_module:app", "No module named 'apps.no_such_module'"),
        ("t_x", "apps.ledger_app", "--app must look like module:registry"),
    ],
)
def test_startup_errors_are_one_line(db_dsn: str, queue: str, app: str, message: str) -> None:
    env = worker_env(db_dsn, ["t_x"])
    proc = subprocess.run(
        [CLI, "worker", "--dsn", db_dsn, "--queue", queue, "--app", app],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_queue_missing_in_the_database_stops_the_worker_with_a_clear_error(
    db_dsn: str, queue_name: str
) -> None:
    proc = start_worker(db_dsn, [queue_name], "--no-listen")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and queue_name in err.splitlines()[-1]
    assert "Traceback" not in err


def test_the_demo_tells_its_story(fresh_db: Callable[[], str]) -> None:
    dsn = fresh_db()
    proc = subprocess.run([CLI, "demo", "--dsn", dsn], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "↻" in out and "dead letter: job" in out and "reason exhausted" in out
    assert "replayed 1 job(s)" in out and "47/47 done" in out and "final:" in out
