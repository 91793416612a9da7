"""Fault suite: at-least-once delivery through crashes, and each exhausted job in the DLQ once.

Every scenario runs real ``pgmq-jobs worker`` processes (``apps.fault_app``, which records
each handler execution in ``fault_ledger`` on its own connection), strikes real faults,
drains the queue with a healthy worker and hands the acknowledged enqueues to the ledger
checker (``ledger_checker``), whose table is printed per scenario and in the terminal
summary (``ledger_plugin``). Invariants, per scenario: nothing lost; duplicates only among
the jobs in flight at a fault; each exhausted job dead-lettered exactly once, never also
completed; acknowledged enqueues survive a database crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import ledger_plugin
import pgmq_jobs.client as jobs
from fault_harness import (
    Fault,
    Fleet,
    Producer,
    crash_and_restart,
    create_ledger,
    drain,
    finished,
    held,
    now_utc,
    present,
    quiesce,
    remaining,
    start_worker,
    started_between,
    terminate_workers,
)
from ledger_checker import LedgerReport, check
from pgmq_jobs.ops.cluster import EmbeddedCluster
from pgmq_jobs.ops.install import install
from support import wait_for

Connection = psycopg.Connection[Any]

FAST_WORKER = ("--concurrency", "8", "--poll-interval", "0.1")


@pytest.fixture(scope="module", autouse=True)
def _ledger_tables(request: pytest.FixtureRequest) -> None:
    ledger_plugin.ensure_registered(request.config)


@pytest.fixture
def fault_db(fresh_db: Callable[[], str]) -> str:
    """A database of its own (no pg_cron: sweeps run only when a scenario runs them)."""
    dsn = fresh_db()
    create_ledger(dsn)
    return dsn


@pytest.fixture
def conn(fault_db: str) -> Iterator[Connection]:
    with psycopg.connect(fault_db, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def durable_cluster() -> Iterator[EmbeddedCluster]:
    """A cluster of its own with durability on (fsync, synchronous_commit, full_page_writes)."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("crashes an embedded cluster; DATABASE_URL points at a shared server")
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-crash-"))
    os.chmod(base, 0o755)
    durable = {"fsync": True, "synchronous_commit": True, "full_page_writes": True}
    cluster = EmbeddedCluster(base / "data", settings=durable, quiet=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def durable_db(cluster: EmbeddedCluster) -> str:
    dsn = cluster.create_database(f"crash_{uuid.uuid4().hex[:8]}")
    install(dsn)
    create_ledger(dsn)
    with psycopg.connect(dsn) as conn:
        settings = conn.execute(
            "select current_setting('fsync'), current_setting('synchronous_commit')"
        ).fetchone()
    assert settings == ("on", "on")
    return dsn


def work(i: int) -> dict[str, Any]:
    """An ordinary job: 20 to 120 ms of work."""
    return {"kind": "work", "i": i, "sleep": 0.02 + (i % 6) * 0.02}


def finish(
    dsn: str,
    queue: str,
    acked: list[int],
    log_dir: Path,
    *,
    scenario: str,
    faults: list[Fault],
    note: str = "",
) -> LedgerReport:
    """Drain, check, publish the table, and assert the checker's invariants."""
    drain(dsn, queue, log_dir)
    with psycopg.connect(dsn, autocommit=True) as conn:
        in_flight = set().union(*(f.in_flight for f in faults)) if faults else set()
        report = check(conn, queue, acked, scenario=scenario, in_flight_at_fault=in_flight)
    ledger_plugin.publish(report, note)
    report.assert_ok()
    return report


def archive_read_ct(conn: Connection, queue: str) -> dict[int, int]:
    rows = conn.execute(
        sql.SQL("select msg_id, read_ct from pgmq.{}").format(sql.Identifier(f"a_{queue}"))
    ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def ledger_pids(conn: Connection, queue: str, event: str) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for job_id, pid in conn.execute(
        "select job_id, pid from fault_ledger where queue = %s and event = %s", (queue, event)
    ).fetchall():
        out.setdefault(int(job_id), set()).add(int(pid))
    return out


# ---------------------------------------------------------------- scenarios


def test_kill_9_a_worker_holding_jobs(fault_db: str, conn: Connection, tmp_path: Path) -> None:
    queue = "kill9"
    jobs.create_queue(conn, queue, visibility_timeout=2)
    acked = jobs.enqueue_batch(conn, queue, [work(i) for i in range(200)])
    fleet = Fleet(fault_db, [queue], tmp_path, *FAST_WORKER, size=2)
    try:
        victim = fleet.workers[0].worker_id
        wait_for(
            lambda: finished(conn, queue) >= 40 and len(held(conn, queue, victim)) >= 4,
            timeout=30,
            what="progress with jobs in flight on the victim",
        )
        fault = fleet.kill9(conn, 0)
        wait_for(lambda: finished(conn, queue) >= len(acked), timeout=40, what="every job done")
    finally:
        fleet.stop()
    report = finish(fault_db, queue, acked, tmp_path, scenario="kill -9", faults=fleet.faults)
    assert fault.in_flight and fleet.deaths == 0
    assert report.completed == set(acked)
    # Another worker finished the victim's jobs after their visibility timeout ran out.
    read_ct = archive_read_ct(conn, queue)
    assert all(read_ct[j] >= 2 for j in fault.in_flight)


def test_sigstop_past_the_visibility_timeout_then_sigcont(
    fault_db: str, conn: Connection, tmp_path: Path
) -> None:
    queue = "stopped"
    jobs.create_queue(conn, queue, visibility_timeout=2)
    acked = jobs.enqueue_batch(
        conn, queue, [{"kind": "work", "i": i, "sleep": 0.2} for i in range(100)]
    )
    stalled = start_worker(fault_db, [queue], "stalled", tmp_path, "--concurrency", "4")
    fresh = None
    try:
        wait_for(
            lambda: finished(conn, queue) >= 8 and len(held(conn, queue, "stalled")) == 4,
            timeout=30,
            what="the stalled-to-be worker busy with 4 jobs",
        )
        stalled.signal(signal.SIGSTOP)
        wait_for(stalled.stopped_state, timeout=5, what="SIGSTOP to take effect")
        quiesce(conn, stalled.pid)
        in_flight = held(conn, queue, "stalled")  # it can neither claim nor report now
        fresh = start_worker(
            fault_db, [queue], "fresh", tmp_path, "--concurrency", "16", "--poll-interval", "0.1"
        )
        # Its leases ran out and another worker holds (or finished) every one of its jobs.
        wait_for(
            lambda: not held(conn, queue, "stalled"),
            timeout=20,
            what="the stalled worker's jobs to be redelivered",
        )
        stalled.signal(signal.SIGCONT)
        assert stalled.stop() == 0
        summary = stalled.summary()
        wait_for(lambda: finished(conn, queue) >= len(acked), timeout=30, what="every job done")
    finally:
        stalled.kill()
        if fresh is not None:
            fresh.stop()
    assert summary is not None
    late = stalled.log.read_text().count("could not be reported in time")
    faults = [Fault("SIGSTOP stalled", in_flight)]
    note = f"stalled worker: {summary['stale']} late outcome(s) fenced off as stale"
    report = finish(
        fault_db, queue, acked, tmp_path, scenario="SIGSTOP/SIGCONT", faults=faults, note=note
    )
    assert report.completed == set(acked)
    # Every late outcome of the stalled worker was fenced off; the new holder's won.
    assert summary["stale"] >= 1 and summary["stale"] + late == len(in_flight)
    read_ct = archive_read_ct(conn, queue)
    assert all(read_ct[j] >= 2 for j in in_flight)
    done_by = ledger_pids(conn, queue, "done")
    started_by = ledger_pids(conn, queue, "start")
    for j in in_flight:
        # Another worker finished every one; the stalled worker also finished (late) those it
        # had started, and gave back unstarted any it had only prefetched.
        assert len(done_by[j] - {stalled.pid}) == 1, (j, done_by[j])
        assert (stalled.pid in done_by[j]) == (stalled.pid in started_by[j]), (j, started_by[j])
    assert any(stalled.pid in done_by[j] for j in in_flight)


def test_pg_terminate_backend_repeatedly_under_load(
    fault_db: str, conn: Connection, tmp_path: Path
) -> None:
    queue = "terminated"
    jobs.create_queue(conn, queue, visibility_timeout=2)
    producer = Producer(fault_db, queue, work, 300, batch=5, pause=0.1)
    fleet = Fleet(fault_db, [queue], tmp_path, *FAST_WORKER, size=2)
    terminated = 0
    try:
        producer.start()
        for _ in range(8):
            target = finished(conn, queue) + 15
            wait_for(lambda t=target: finished(conn, queue) >= t, timeout=20, what="progress")
            before = held(conn, queue)
            terminated += terminate_workers(conn)
            fleet.faults.append(Fault("pg_terminate_backend", before | held(conn, queue)))
        producer.join(timeout=30)
        assert not producer.is_alive()
        wait_for(
            lambda: finished(conn, queue) >= len(producer.acknowledged),
            timeout=40,
            what="every job done",
        )
        assert all(w.alive() for w in fleet.workers) and fleet.deaths == 0
    finally:
        producer.stop_event.set()
        fleet.stop()
    note = f"{terminated} worker connections terminated in 8 rounds"
    report = finish(
        fault_db,
        queue,
        producer.acknowledged,
        tmp_path,
        scenario="pg_terminate_backend x8",
        faults=fleet.faults,
        note=note,
    )
    assert terminated >= 8 and report.completed == set(producer.acknowledged)


def test_postgres_crash_immediate_under_load(
    durable_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    dsn = durable_db(durable_cluster)
    queue = "crashed"
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs.create_queue(conn, queue, visibility_timeout=2)
    producer = Producer(dsn, queue, work, 300, batch=5, pause=0.02)
    fleet = Fleet(dsn, [queue], tmp_path, *FAST_WORKER, size=2)
    try:
        producer.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(lambda: finished(conn, queue) >= 60, timeout=30, what="progress")
            since = now_utc()  # before the snapshot: a claim it misses starts after this
            before = held(conn, queue)
            acked_before = set(producer.acknowledged)
        crash_and_restart(durable_cluster)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Every enqueue acknowledged before the crash is still there (queue, archive, DLQ).
            survivors = present(conn, queue)
            missing = acked_before - survivors
            assert not missing, f"acknowledged enqueues lost in the crash: {sorted(missing)}"
            # In flight: open deliveries just before the crash, and deliveries whose handler
            # started from then until the server was back (claimed before it died).
            up = now_utc()
            in_flight = before | started_between(conn, queue, since, up)
            fleet.faults.append(Fault("pg_ctl stop -m immediate", in_flight))
            producer.join(timeout=40)
            assert not producer.is_alive()
            wait_for(
                lambda: finished(conn, queue) >= len(producer.acknowledged),
                timeout=40,
                what="every job done after the crash",
            )
        assert fleet.deaths == 0
    finally:
        producer.stop_event.set()
        fleet.stop()
    note = (
        f"{len(acked_before)} acknowledged before the crash, all present after it;"
        f" {producer.unanswered} enqueue batch(es) unanswered during the outage"
    )
    report = finish(
        dsn,
        queue,
        producer.acknowledged,
        tmp_path,
        scenario="postgres -m immediate",
        faults=fleet.faults,
        note=note,
    )
    assert report.completed == set(producer.acknowledged)


def test_unlogged_queue_loses_its_jobs_in_a_crash_a_logged_one_does_not(
    durable_cluster: EmbeddedCluster,
) -> None:
    dsn = durable_db(durable_cluster)
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs.create_queue(conn, "logged_q")
        jobs.create_queue(conn, "unlogged_q", unlogged=True)
        logged = jobs.enqueue_batch(conn, "logged_q", [{"i": i} for i in range(50)])
        unlogged = jobs.enqueue_batch(conn, "unlogged_q", [{"i": i} for i in range(50)])
        assert remaining(conn, "unlogged_q") == 50
    crash_and_restart(durable_cluster)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert present(conn, "logged_q") == set(logged)
        assert present(conn, "unlogged_q") & set(unlogged) == set()
        assert remaining(conn, "unlogged_q") == 0
        # The queue itself still works after the crash.
        assert jobs.enqueue(conn, "unlogged_q", {"after": "crash"}) > 0


def test_a_job_that_kills_its_worker_and_one_that_cannot_be_parsed(
    fault_db: str, conn: Connection, tmp_path: Path
) -> None:
    queue = "poison"
    jobs.create_queue(conn, queue, visibility_timeout=1, max_attempts=3)
    payloads: list[dict[str, Any]] = [work(i) for i in range(150)]
    payloads[20] = {"kind": "kill"}
    payloads[90] = {"kind": "kill"}
    for i in (5, 40, 75, 110, 140):
        payloads[i] = {"kind": "parse", "body": "{not json"}
    for i in (7, 60):
        payloads[i] = {"kind": "parse", "body": '{"n": 1}'}
    acked = jobs.enqueue_batch(conn, queue, payloads)
    poison = {acked[20], acked[90]}
    unparseable = {acked[i] for i in (5, 40, 75, 110, 140)}
    fleet = Fleet(fault_db, [queue], tmp_path, *FAST_WORKER, size=2)
    try:
        wait_for(lambda: remaining(conn, queue) == 0, timeout=45, what="the queue to empty")
    finally:
        fleet.stop()
    # Jobs claimed in the same batch as a poison job share its fate: redelivered together,
    # killed together, they too run out of attempts (reason expired). Only those may die.
    letters = {d.job_id: d for d in jobs.dead_letters(conn, queue, 1000)}
    collateral = set(letters) - poison - unparseable
    report = finish(
        fault_db,
        queue,
        acked,
        tmp_path,
        scenario="poison: kill + unparseable",
        faults=fleet.faults,
        note=f"{fleet.deaths} worker deaths; {len(collateral)} batch-mates of a poison job"
        " ran out of attempts with it",
    )
    assert report.dead == set(letters) and poison | unparseable <= report.dead
    assert collateral <= fleet.in_flight()
    assert report.completed == set(acked) - report.dead
    for job_id in poison | collateral:
        assert (letters[job_id].reason, letters[job_id].attempts) == ("expired", 3)
    for job_id in poison:
        assert report.executions[job_id] == 3
    for job_id in unparseable:
        letter = letters[job_id]
        if job_id not in fleet.in_flight():
            # Ran once and failed for good.
            assert (letter.reason, letter.attempts) == ("permanent", 1)
            assert report.executions[job_id] == 1
        elif letter.reason == "permanent":
            # A dying worker held it (claimed with a poison job: workers claim ahead of free
            # threads, so batch-mates share a worker's death); a later delivery ran it.
            assert report.executions[job_id] >= 1
        else:
            # Held by a dying worker on every delivery, like any batch-mate of a poison job
            # (redelivered together, claimed together again): it ran out of attempts.
            assert (letter.reason, letter.attempts) == ("expired", 3)
    assert fleet.deaths >= 3


def test_sweeps_racing_completions_and_each_other(
    fault_db: str, conn: Connection, tmp_path: Path
) -> None:
    queue = "swept"
    # One attempt and a 40 ms lease: completions, extends, claims and the sweep all race
    # for the same expiring deliveries.
    jobs.create_queue(conn, queue, visibility_timeout=timedelta(milliseconds=40), max_attempts=1)
    acked = jobs.enqueue_batch(
        conn, queue, [{"kind": "work", "i": i, "sleep": (i % 7) * 0.01} for i in range(300)]
    )
    stop = threading.Event()
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def sweeper() -> None:
        try:
            with psycopg.connect(fault_db, autocommit=True) as c:
                while not stop.is_set():
                    results.append(jobs.sweep(c))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=sweeper, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    fleet = Fleet(fault_db, [queue], tmp_path, "--concurrency", "16", "--poll-interval", "0.05")
    try:
        wait_for(lambda: remaining(conn, queue) == 0, timeout=45, what="the queue to empty")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        fleet.stop()
    assert not errors, errors
    swept = sum(int(r.get("expired_to_dlq", 0)) for r in results)
    skipped = sum(1 for r in results if r.get("skipped"))
    report = check(conn, queue, acked, scenario="sweep races")
    done = set(ledger_pids(conn, queue, "done"))
    lost_race = report.dead & done
    stale = sum(int(s["stale"]) for s in fleet.summaries())
    note = (
        f"{len(results)} sweeps ({skipped} skipped: another was running), {swept} routed by"
        f" a sweep; {len(lost_race)} finished by their handler after losing the race,"
        f" {stale} completion(s) fenced off as stale"
    )
    report = finish(fault_db, queue, acked, tmp_path, scenario="sweep races", faults=[], note=note)
    # One attempt each: nothing may run twice, and every job has exactly one outcome.
    assert not report.duplicated
    assert report.completed | report.dead == set(acked)
    assert report.completed and report.dead and skipped > 0
