"""The alerts view: each condition fires when the test creates it and clears when the test
removes it; thresholds per queue and by default; the ``pgmq-jobs alerts`` exit status.

Each test uses a fresh database (no pg_cron, no other sessions), so the database-wide
alerts only see what the test does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

import pgmq_jobs.client as jobs
from support import db_now, wait_for

Connection = psycopg.Connection[Any]
CLI = str(Path(sys.executable).with_name("pgmq-jobs"))


@pytest.fixture
def quiet(fresh_db: Callable[[], str]) -> Iterator[tuple[str, Connection]]:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield dsn, conn


def alerts(conn: Connection, alert: str | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from pgmq_jobs.alerts where %(a)s::text is null or alert = %(a)s"
            " order by alert, queue",
            {"a": alert},
        )
        return [dict(r) for r in cur.fetchall()]


def firing(conn: Connection, alert: str, queue: str | None = None) -> dict[str, Any] | None:
    rows = [r for r in alerts(conn, alert) if r["queue"] == queue]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def set_threshold(conn: Connection, alert: str, threshold: float | None, queue: str | None) -> Any:
    row = conn.execute(
        "select pgmq_jobs.set_alert_threshold(%s, %s, queue => %s)", (alert, threshold, queue)
    ).fetchone()
    assert row is not None
    return row[0]


def age_ready_jobs(conn: Connection, queue: str, by: timedelta) -> None:
    """Test-only time travel: the queue's ready jobs became ready ``by`` earlier."""
    conn.execute(
        sql.SQL("update pgmq.{} set vt = vt - %s where vt <= clock_timestamp()").format(
            sql.Identifier(f"q_{queue}")
        ),
        (by,),
    )


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    return subprocess.run(
        [CLI, *args, "--dsn", dsn], capture_output=True, text=True, timeout=60, env=env
    )


def test_no_alerts_on_a_healthy_database(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "calm")
    jobs.enqueue(conn, "calm", {})
    assert alerts(conn) == []


def test_queue_depth_with_a_per_queue_threshold(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "deep")
    jobs.create_queue(conn, "other")
    assert set_threshold(conn, "queue_depth", 5, "deep") == 5
    jobs.enqueue_batch(conn, "deep", [{"i": i} for i in range(6)])
    jobs.enqueue_batch(conn, "other", [{"i": i} for i in range(6)])
    row = firing(conn, "queue_depth", "deep")
    assert row is not None, alerts(conn)
    assert (row["value"], row["threshold"]) == (6, 5)
    # Since: when the 6th-oldest job now ready became ready (the backlog's crossing).
    [sixth] = conn.execute("select max(vt) from pgmq.q_deep").fetchone() or [None]
    assert row["since"] == sixth
    assert "deep has 6 jobs ready" in row["message"]
    assert firing(conn, "queue_depth", "other") is None  # the default (10000) applies there

    jobs.claim(conn, "deep")  # 5 ready: not above 5
    assert firing(conn, "queue_depth", "deep") is None
    # Removing the queue's own threshold brings back the default.
    assert set_threshold(conn, "queue_depth", None, "deep") == 10000


def test_queue_depth_with_the_default_threshold(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "busy")
    for start in (0, 5000, 10000):
        count = 5000 if start < 10000 else 1
        jobs.enqueue_batch(conn, "busy", [{"n": start + i} for i in range(count)])
    row = firing(conn, "queue_depth", "busy")
    assert row is not None
    assert (row["value"], row["threshold"]) == (10001, 10000)
    assert row["details"]["estimated"] is False
    jobs.claim(conn, "busy")
    assert firing(conn, "queue_depth", "busy") is None


def test_dead_letters(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "fragile", max_attempts=1)
    set_threshold(conn, "dead_letters", 2, "fragile")
    jobs.enqueue_batch(conn, "fragile", [{"i": i} for i in range(3)])
    for job in jobs.claim(conn, "fragile", 3):
        assert jobs.fail(conn, "fragile", job.job_id, job.attempt, "nope").outcome == "dead"
    row = firing(conn, "dead_letters", "fragile")
    assert row is not None
    assert (row["value"], row["threshold"]) == (3, 2)
    assert row["since"] is not None and row["since"] <= db_now(conn)
    jobs.purge_dead_letters(conn, "fragile")
    assert firing(conn, "dead_letters", "fragile") is None


def test_low_throughput_and_oldest_job_age(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "slow")
    jobs.enqueue_batch(conn, "slow", [{"i": i} for i in range(3)])
    # Just enqueued: nothing has waited long enough to call throughput low.
    assert alerts(conn) == []
    age_ready_jobs(conn, "slow", timedelta(minutes=2))
    low = firing(conn, "low_throughput", "slow")
    assert low is not None and (low["value"], low["threshold"]) == (0, 10)
    assert firing(conn, "oldest_job_age", "slow") is None  # 2 min < 300 s
    set_threshold(conn, "oldest_job_age", 60, "slow")
    old = firing(conn, "oldest_job_age", "slow")
    assert old is not None and 120 <= old["value"] < 180 and old["threshold"] == 60
    oldest = conn.execute("select min(vt) from pgmq.q_slow").fetchone()
    assert oldest is not None and old["since"] == oldest[0] + timedelta(seconds=60)

    # Completing the waiting work clears both.
    claimed = jobs.claim(conn, "slow", 3)
    jobs.complete(conn, "slow", claimed)
    assert firing(conn, "low_throughput", "slow") is None
    assert firing(conn, "oldest_job_age", "slow") is None


def test_low_throughput_respects_a_fast_enough_rate(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "steady")
    jobs.enqueue_batch(conn, "steady", [{"i": i} for i in range(21)])
    jobs.complete(conn, "steady", jobs.claim(conn, "steady", 20))
    age_ready_jobs(conn, "steady", timedelta(minutes=2))
    # 20 completions over the 1m window (60-120 s) are 0.17-0.33 jobs/s.
    set_threshold(conn, "low_throughput", 0.1, "steady")
    assert firing(conn, "low_throughput", "steady") is None
    set_threshold(conn, "low_throughput", 0.5, "steady")
    assert firing(conn, "low_throughput", "steady") is not None


def test_stalled_worker(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "served")
    conn.execute("select pgmq_jobs.heartbeat('w-ok', '{served}')")
    conn.execute("select pgmq_jobs.heartbeat('w-stuck', '{served}')")
    assert firing(conn, "stalled_workers", "served") is None
    # Test-only time travel: w-stuck missed its heartbeats (every 5 s) for a minute.
    conn.execute(
        "update pgmq_jobs.worker_heartbeats set last_seen_at = now() - interval '1 minute'"
        " where worker_id = 'w-stuck'"
    )
    row = firing(conn, "stalled_workers", "served")
    assert row is not None
    assert (row["value"], row["threshold"], row["details"]) == (1, 0, {"workers": ["w-stuck"]})
    seen = conn.execute(
        "select last_seen_at from pgmq_jobs.worker_heartbeats where worker_id = 'w-stuck'"
    ).fetchone()
    assert seen is not None and row["since"] == seen[0] + timedelta(seconds=15)
    # It beats again: cleared.
    conn.execute("select pgmq_jobs.heartbeat('w-stuck', '{served}')")
    assert firing(conn, "stalled_workers", "served") is None
    # A worker that stops cleanly is gone, not stalled; one silent for 20 minutes is.
    conn.execute("select pgmq_jobs.heartbeat('w-ok', '{served}', stopping => true)")
    assert firing(conn, "stalled_workers", "served") is None
    conn.execute(
        "update pgmq_jobs.worker_heartbeats set last_seen_at = now() - interval '20 minutes'"
        " where worker_id = 'w-stuck'"
    )
    assert firing(conn, "stalled_workers", "served") is not None


def test_idle_in_transaction_session_holding_xmin(quiet: tuple[str, Connection]) -> None:
    dsn, conn = quiet
    assert firing(conn, "xmin_horizon") is None
    with psycopg.connect(dsn, application_name="sleepy") as holder:
        holder.execute("set transaction isolation level repeatable read")
        holder.execute("select count(*) from pgmq_jobs.queue_settings")  # takes a snapshot
        pid = holder.info.backend_pid
        # Idle in transaction now; the default threshold (300 s) is far away.
        assert firing(conn, "xmin_horizon") is None
        set_threshold(conn, "xmin_horizon", 0.05, None)

        def fired() -> dict[str, Any] | None:
            return firing(conn, "xmin_horizon")

        row = wait_for(fired, what="the xmin_horizon alert")
        assert row["queue"] is None and row["threshold"] == 0.05
        assert row["details"]["pid"] == pid
        assert row["details"]["state"] == "idle in transaction"
        assert row["details"]["application_name"] == "sleepy"
        assert "sleepy" in row["message"]
        holder.rollback()
        assert firing(conn, "xmin_horizon") is None


def churn(conn: Connection, queue: str, n: int) -> None:
    """n jobs through the queue (enqueue, claim, complete): 2n dead tuples on a queue that
    keeps no completions (each claim's update and each completion's delete)."""
    jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(n)])
    claimed = jobs.claim(conn, queue, n)
    assert jobs.complete(conn, queue, claimed) == n


def sample(conn: Connection, at: datetime) -> None:
    """The sweep's table sample, taken as of ``at`` (a test plays the sweep's clock), after
    this session's statistics are flushed."""
    conn.execute("select pg_stat_force_next_flush()")
    conn.execute("select pgmq_jobs._sample_tables(%s)", (at,))


def samples(conn: Connection, queue: str) -> list[tuple[int, int]]:
    rows = conn.execute(
        "select n_dead, n_live from pgmq_jobs.table_samples where queue = %s and not dlq"
        " order by at",
        (queue,),
    ).fetchall()
    return [(int(d), int(live)) for d, live in rows]


def bloat_queue(conn: Connection, queue: str) -> None:
    """A queue whose table only the test vacuums (standing in for autovacuum), with one
    live job left in it, as on the queue of issue 20 (1,120 dead tuples, 1 live)."""
    jobs.create_queue(conn, queue, keep_completed=0)
    conn.execute(
        sql.SQL("alter table pgmq.{} set (autovacuum_enabled = false)").format(
            sql.Identifier(f"q_{queue}")
        )
    )
    jobs.enqueue(conn, queue, {"left": 1}, delay=3600)
    # The floor of 0.1.0 (1000 dead tuples), so that each sample below would have fired.
    conn.execute("set pgmq_jobs.table_bloat_min_dead_tuples = 1000")


def test_table_bloat_quiet_across_autovacuum_cycles_of_a_healthy_queue(
    quiet: tuple[str, Connection],
) -> None:
    _, conn = quiet
    bloat_queue(conn, "steady")
    start = db_now(conn)
    # Thirteen minutes at a steady rate (600 jobs, 1,200 dead tuples, between two vacuums),
    # each sweep sample taken at the worst moment: just before the next vacuum.
    for k in range(13):
        churn(conn, "steady", 600)
        conn.execute("vacuum pgmq.q_steady")
        churn(conn, "steady", 600)
        sample(conn, start - timedelta(minutes=13 - k))
        assert firing(conn, "table_bloat", "steady") is None, k
    # Every sample was over 0.1.0's condition (>= 1000 dead tuples, over half the rows),
    # which fired on each: dead tuples are there, but each vacuum clears them.
    taken = samples(conn, "steady")
    assert len(taken) == 13
    assert all(dead >= 1000 and dead / (dead + live) > 0.5 for dead, live in taken), taken
    assert firing(conn, "table_bloat", "steady") is None


def test_table_bloat_fires_when_vacuum_cannot_remove_dead_tuples(
    quiet: tuple[str, Connection],
) -> None:
    dsn, conn = quiet
    bloat_queue(conn, "stuck")
    start = db_now(conn)
    with psycopg.connect(dsn) as holder:
        # A repeatable-read snapshot held open: vacuum runs, and removes nothing newer.
        holder.execute("set transaction isolation level repeatable read")
        holder.execute("select 1")
        times = [start - timedelta(minutes=12 - k) for k in range(13)]
        for at in times:
            churn(conn, "stuck", 600)
            conn.execute("vacuum pgmq.q_stuck")
            sample(conn, at)
        dead = [d for d, _ in samples(conn, "stuck")]
        assert dead == sorted(dead) and dead[-1] >= 13 * 1200, dead

        row = firing(conn, "table_bloat", "stuck")
        assert row is not None
        assert row["details"]["table"] == "pgmq.q_stuck"
        assert row["details"]["n_dead_tup"] >= 13 * 1200 and row["value"] > 0.99
        assert row["details"]["min_dead_tuples"] == 1000
        assert row["threshold"] == 0.5 and row["must_hold"] == timedelta(minutes=10)
        # The first sample has none before it to judge by; from the second on, vacuum
        # left more dead tuples behind than were written since the sample before.
        assert row["since"] == times[1]
        assert "for 11 minutes" in row["message"]
        # It must hold that long: asked for 12 minutes, it does not fire yet.
        conn.execute("set pgmq_jobs.table_bloat_minutes = 12")
        assert firing(conn, "table_bloat", "stuck") is None
        conn.execute("reset pgmq_jobs.table_bloat_minutes")
        assert firing(conn, "table_bloat", "stuck") is not None
        holder.rollback()

    # The snapshot gone, a vacuum removes them and the alert clears at once.
    conn.execute("vacuum pgmq.q_stuck")
    assert firing(conn, "table_bloat", "stuck") is None


def test_table_bloat_fires_when_vacuum_never_runs(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    bloat_queue(conn, "novac")
    start = db_now(conn)
    for minutes_ago in (12, 11, 6, 1):
        churn(conn, "novac", 600)
        sample(conn, start - timedelta(minutes=minutes_ago))
    # No vacuum between the samples: the condition has held since the second (the first
    # has none before it to judge by).
    row = firing(conn, "table_bloat", "novac")
    assert row is not None and row["since"] == start - timedelta(minutes=11)
    assert row["details"]["n_dead_tup"] >= 4 * 1200
    # Below the floor of dead tuples (the default, 10000), nothing fires.
    conn.execute("reset pgmq_jobs.table_bloat_min_dead_tuples")
    assert firing(conn, "table_bloat", "novac") is None
    conn.execute("set pgmq_jobs.table_bloat_min_dead_tuples = 1000")
    # A per-queue threshold above the dead share turns it off for that queue.
    set_threshold(conn, "table_bloat", 0.9999, "novac")
    assert firing(conn, "table_bloat", "novac") is None
    set_threshold(conn, "table_bloat", None, "novac")
    conn.execute("vacuum pgmq.q_novac")
    assert firing(conn, "table_bloat", "novac") is None


def test_sweep_samples_the_queue_tables(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "sampled")
    jobs.sweep(conn)
    rows = conn.execute(
        "select dlq, n_dead, n_live, written, vacuums from pgmq_jobs.table_samples"
        " where queue = 'sampled' order by dlq"
    ).fetchall()
    assert [r[0] for r in rows] == [False, True]
    # Samples older than two hours are dropped.
    conn.execute("update pgmq_jobs.table_samples set at = at - interval '3 hours'")
    jobs.sweep(conn)
    assert conn.execute("select count(*) from pgmq_jobs.table_samples").fetchone() == (2,)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at must be a finite time"):
        conn.execute("select pgmq_jobs._sample_tables('infinity')")


def test_every_alert_says_how_long_it_must_hold(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "deep")
    jobs.enqueue_batch(conn, "deep", [{"i": i} for i in range(3)])
    set_threshold(conn, "queue_depth", 2, "deep")
    set_threshold(conn, "wraparound", 1e-9, None)
    holds = {r["alert"]: r["must_hold"] for r in alerts(conn)}
    assert holds == {"queue_depth": timedelta(0), "wraparound": timedelta(0)}
    row = conn.execute(
        "select obj_description('pgmq_jobs.alerts'::regclass, 'pg_class')"
    ).fetchone()
    assert row is not None and "must_hold" in row[0] and "table_bloat_minutes" in row[0]


def test_wraparound_against_a_lowered_threshold(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    # A real wraparound risk needs 100 million transactions; a tiny threshold stands in.
    assert firing(conn, "wraparound") is None
    set_threshold(conn, "wraparound", 1e-9, None)
    row = firing(conn, "wraparound")
    assert row is not None and row["details"]["xid_age"] > 0
    assert row["value"] == pytest.approx(
        row["details"]["xid_age"] / row["details"]["autovacuum_freeze_max_age"]
    )
    set_threshold(conn, "wraparound", 0.5, None)
    assert firing(conn, "wraparound") is None


def test_set_alert_threshold_rejects_bad_input(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "known")
    for args, message in (
        (("queue_dept", 1, None), "unknown alert 'queue_dept'"),
        (("queue_depth", -1, None), "non-negative"),
        (("queue_depth", float("nan"), None), "non-negative"),
        (("queue_depth", None, None), "must not be null"),
        (("queue_depth", 1, "nope"), "unknown queue 'nope'"),
        (("xmin_horizon", 1, "known"), "whole database"),
    ):
        with pytest.raises(psycopg.Error, match=message):
            set_threshold(conn, *args)
    # 'infinity' turns an alert off; the change is audited.
    set_threshold(conn, "queue_depth", float("inf"), "known")
    action = conn.execute(
        "select change from pgmq_jobs.audit_log where action = 'set_alert_threshold'"
        " order by id desc limit 1"
    ).fetchone()
    assert action is not None and action[0]["alert"] == "queue_depth"


def test_alerts_are_for_admins_only(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "q")
    set_threshold(conn, "queue_depth", 0, "q")
    jobs.enqueue(conn, "q", {})
    conn.execute("set role pgmq_jobs_admin")
    try:
        assert [r["alert"] for r in alerts(conn)] == ["queue_depth"]
        set_threshold(conn, "queue_depth", None, "q")
    finally:
        conn.execute("reset role")
    for role in ("pgmq_jobs_worker", "pgmq_jobs_producer"):
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                alerts(conn)
        finally:
            conn.execute("reset role")
    for relation in ("pgmq_jobs.alerts", "pgmq_jobs.alert_thresholds"):
        public = conn.execute(
            "select has_table_privilege('public', %s, 'select')", (relation,)
        ).fetchone()
        assert public == (False,), relation


def test_alerts_cli_exit_status_and_json(quiet: tuple[str, Connection]) -> None:
    dsn, conn = quiet
    jobs.create_queue(conn, "watched")
    out = cli(dsn, "alerts")
    assert (out.returncode, out.stdout.strip()) == (0, "no alerts"), out.stderr
    assert json.loads(cli(dsn, "alerts", "--json").stdout) == []

    out = cli(dsn, "alerts", "set", "dead_letters", "0", "--queue", "watched")
    assert out.returncode == 0 and "dead_letters threshold for queue watched: 0" in out.stdout
    jobs.enqueue(conn, "watched", {})
    [job] = jobs.claim(conn, "watched")
    jobs.fail(conn, "watched", job.job_id, job.attempt, "broken", permanent=True)

    out = cli(dsn, "alerts")
    assert out.returncode == 2, out.stderr
    assert "dead_letters" in out.stdout and "watched has 1 dead letters" in out.stdout
    out = cli(dsn, "alerts", "--json")
    assert out.returncode == 2
    [row] = json.loads(out.stdout)
    assert (row["alert"], row["queue"], row["value"], row["threshold"]) == (
        "dead_letters",
        "watched",
        1,
        0,
    )

    out = cli(dsn, "alerts", "set", "dead_letters", "default", "--queue", "watched")
    assert out.returncode == 0 and "100" in out.stdout
    assert cli(dsn, "alerts").returncode == 0
    thresholds = json.loads(cli(dsn, "alerts", "thresholds", "--json").stdout)
    assert {"alert": "dead_letters", "queue": None, "threshold": 100.0} in [
        {k: t[k] for k in ("alert", "queue", "threshold")} for t in thresholds
    ]
    # A database error is still exit status 1, not 2.
    bad = cli("postgresql://127.0.0.1:1/nowhere", "alerts")
    assert bad.returncode == 1


def test_workers_cli(quiet: tuple[str, Connection]) -> None:
    dsn, conn = quiet
    conn.execute("select pgmq_jobs.heartbeat('w1', '{a,b}', jobs_done => 5)")
    conn.execute("select pgmq_jobs.heartbeat('w2', '{a}', stopping => true)")
    out = cli(dsn, "workers")
    assert out.returncode == 0, out.stderr
    assert "w1" in out.stdout and "alive" in out.stdout and "a,b" in out.stdout
    assert "w2" not in out.stdout
    rows = json.loads(cli(dsn, "workers", "--all", "--json").stdout)
    assert {r["worker_id"]: r["status"] for r in rows} == {"w1": "alive", "w2": "gone"}
