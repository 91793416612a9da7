"""queue_stats: gauges, outcome counts and rates over their windows, retry rate and
processing times, against traffic the tests cause; the stats CLI; and the cost at depth.

Most tests use a fresh database without pg_cron, so no background sweep folds the outcome
log while they look (one test folds it on purpose and checks nothing changes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

import pgmq_jobs.client as jobs
from pgmq_jobs.cli.observe import stats_table
from support import wait_for

Connection = psycopg.Connection[Any]
CLI = str(Path(sys.executable).with_name("pgmq-jobs"))

N_COMPLETED = 7  # complete on their first attempt
M_RETRIED = 3  # fail once (retry), then complete
K_DEAD = 2  # fail permanently


def stats(conn: Connection, queue: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from pgmq_jobs.queue_stats where queue = %s", (queue,))
        row = cur.fetchone()
    assert row is not None, f"no queue_stats row for {queue}"
    return dict(row)


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    return subprocess.run(
        [CLI, *args, "--dsn", dsn], capture_output=True, text=True, timeout=60, env=env
    )


def known_traffic(conn: Connection, queue: str) -> None:
    """N completed, M failed once then completed, K dead; plus one ready, one in flight
    and two delayed jobs left in the queue."""
    jobs.create_queue(conn, queue, max_attempts=3)
    jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(N_COMPLETED + M_RETRIED + K_DEAD)])
    done = jobs.claim(conn, queue, N_COMPLETED)
    assert jobs.complete(conn, queue, done) == N_COMPLETED
    for job in jobs.claim(conn, queue, K_DEAD):
        result = jobs.fail(conn, queue, job.job_id, job.attempt, "bad input", permanent=True)
        assert result.outcome == "dead"
    for job in jobs.claim(conn, queue, M_RETRIED):
        assert jobs.fail(conn, queue, job.job_id, job.attempt, "boom", retry_after=0).outcome == (
            "retry"
        )
    again = jobs.claim(conn, queue, M_RETRIED)
    assert {j.attempt for j in again} == {2}
    assert jobs.complete(conn, queue, again) == M_RETRIED
    assert jobs.claim(conn, queue) == []
    jobs.enqueue(conn, queue, {"left": "in flight"})
    assert len(jobs.claim(conn, queue)) == 1
    jobs.enqueue(conn, queue, {"left": "ready"})
    jobs.enqueue(conn, queue, {"left": "delayed"}, delay=3600)
    jobs.enqueue(conn, queue, {"left": "delayed"}, delay=3600)


@pytest.fixture
def quiet(fresh_db: Callable[[], str]) -> Iterator[tuple[str, Connection]]:
    """A fresh database (no pg_cron: no background sweep) and an autocommit connection."""
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield dsn, conn


def test_known_traffic_counts_rates_and_gauges(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    known_traffic(conn, "traffic")
    s = stats(conn, "traffic")

    assert (s["ready"], s["in_flight"], s["delayed"], s["dead"]) == (1, 1, 2, K_DEAD)
    assert not s["ready_estimated"] and not s["dead_estimated"]
    assert s["enqueued_total"] == N_COMPLETED + M_RETRIED + K_DEAD + 4
    assert timedelta(0) <= s["oldest_ready_age"] < timedelta(seconds=30)
    for window in ("1m", "5m", "1h"):
        assert s[f"completed_{window}"] == N_COMPLETED + M_RETRIED, window
        assert s[f"retried_{window}"] == M_RETRIED, window
        assert s[f"dead_lettered_{window}"] == K_DEAD, window
    # Rates are the counts per second over the span each window covers: 60-120 s for 1m,
    # 5-6 min for 5m, 60-61 min for 1h.
    for window, lo, hi in (("1m", 60, 120), ("5m", 300, 360), ("1h", 3600, 3660)):
        for kind in ("completed", "retried", "dead_lettered"):
            span = s[f"{kind}_{window}"] / s[f"{kind}_rate_{window}"]
            assert lo <= span <= hi + 1, (kind, window, span)
    finished = N_COMPLETED + M_RETRIED + M_RETRIED + K_DEAD
    assert s["retry_rate_5m"] == pytest.approx(M_RETRIED / finished)
    assert s["retry_rate_1h"] == pytest.approx(M_RETRIED / finished)
    # Nothing reported timings yet, no worker is alive.
    assert (s["timed_jobs_5m"], s["avg_processing_ms_5m"], s["p95_processing_ms_5m"]) == (
        0,
        None,
        None,
    )
    assert s["live_workers"] == 0


def complete_with_durations(conn: Connection, queue: str, durations: list[float]) -> None:
    claimed = jobs.claim(conn, queue, len(durations))
    assert len(claimed) == len(durations)
    assert jobs.complete(conn, queue, claimed, durations_ms=durations) == len(durations)


def test_processing_times_from_the_durations_workers_report(
    quiet: tuple[str, Connection],
) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "timed")
    jobs.enqueue_batch(conn, "timed", [{"i": i} for i in range(106)])
    # Two complete calls (two batches of a worker): 1..100 ms, in two halves.
    complete_with_durations(conn, "timed", [float(d) for d in range(1, 51)])
    complete_with_durations(conn, "timed", [float(d) for d in range(51, 101)])
    s = stats(conn, "timed")
    assert s["timed_jobs_5m"] == 100
    assert s["avg_processing_ms_5m"] == pytest.approx(50.5)
    assert s["avg_processing_ms_1h"] == pytest.approx(50.5)
    # The 95th of 1..100 ms lies in the power-of-two bucket [64, 128) ms; the view
    # interpolates inside it, so it is right within that bucket.
    assert 64 <= s["p95_processing_ms_5m"] < 128

    # Six slow jobs (4 s) among 106: p95 moves into their bucket [2048, 4096) ms.
    complete_with_durations(conn, "timed", [4000.0] * 6)
    s = stats(conn, "timed")
    assert s["timed_jobs_5m"] == 106
    assert s["avg_processing_ms_5m"] == pytest.approx((5050 + 24000) / 106)
    assert 2048 <= s["p95_processing_ms_5m"] < 4096

    # Folded into queue_history by the sweep, the same numbers come out.
    conn.execute("update pgmq_jobs.outcome_log set at = at - interval '1 minute'")
    jobs.sweep(conn)
    folded = stats(conn, "timed")
    for key in ("timed_jobs_5m", "avg_processing_ms_5m", "p95_processing_ms_5m"):
        assert folded[key] == pytest.approx(s[key]), key

    # Completions without durations count as completions, not as timings.
    jobs.enqueue(conn, "timed", {})
    [job] = jobs.claim(conn, "timed")
    jobs.complete(conn, "timed", [job])
    after = stats(conn, "timed")
    assert (after["completed_5m"], after["timed_jobs_5m"]) == (107, 106)


def test_duration_buckets_have_exact_power_of_two_bounds(conn: Connection) -> None:
    durations = [-5.0, 0.0, 2.0**-11, 2.0**-10, 0.055, 0.4999, 0.5, 0.999, 1.0, 1.999, 2.0]
    durations += [3.9, 4.0, 2.0**22, 2.0**23, 1e12]
    row = conn.execute(
        "select n, total, buckets from pgmq_jobs._duration_histogram(%s::float8[])",
        ([*durations, None, float("nan"), float("inf")],),
    ).fetchone()
    assert row is not None
    n, total, buckets = row
    # Unmeasurable times (null, NaN, infinity) are left out; negative ones count as 0 ms.
    assert n == len(durations)
    assert total == pytest.approx(sum(max(d, 0) for d in durations))
    # Buckets 1..25 as in 0.1.0 (bucket 1 now [0.5, 1) ms), then 26: [0, 2^-10) ms and
    # 27..35: [2^(i-37), 2^(i-36)) ms below half a millisecond.
    expected = [0] * 35
    for bucket in (26, 26, 26, 27, 32, 35, 1, 1, 2, 2, 3, 3, 4, 24, 25, 25):
        expected[bucket - 1] += 1
    assert buckets == expected


def p95_of(conn: Connection, queue: str, *histograms: list[int]) -> float | None:
    """queue_stats' p95 over queue_history minutes holding these histograms (one minute each,
    within the 5m window)."""
    conn.execute("delete from pgmq_jobs.queue_history where queue = %s", (queue,))
    for k, buckets in enumerate(histograms):
        conn.execute(
            "insert into pgmq_jobs.queue_history (queue, minute, duration_count, duration_buckets)"
            " values (%s, date_trunc('minute', now()) - make_interval(mins => %s), %s, %s)",
            (queue, k, sum(buckets), buckets),
        )
    return stats(conn, queue)["p95_processing_ms_5m"]


def test_p95_of_sub_millisecond_handlers(quiet: tuple[str, Connection]) -> None:
    """Handlers averaging 0.055 ms: p95 reads about 0.06 ms, not 0.95 ms (issue 20, item 7)."""
    _, conn = quiet
    jobs.create_queue(conn, "quick")
    durations = [0.050 + 0.010 * i / 99 for i in range(100)]  # 0.050 .. 0.060 ms
    jobs.enqueue_batch(conn, "quick", [{"i": i} for i in range(100)])
    complete_with_durations(conn, "quick", durations)
    s = stats(conn, "quick")
    assert s["avg_processing_ms_5m"] == pytest.approx(0.055)
    # All in the bucket [2^-5, 2^-4) ms: within it, a factor of two at most.
    assert 2**-5 <= s["p95_processing_ms_5m"] < 2**-4
    assert s["p95_processing_ms_5m"] == pytest.approx(2**-5 * 1.95)
    # Folded into queue_history by the sweep, the same.
    conn.execute("update pgmq_jobs.outcome_log set at = at - interval '1 minute'")
    jobs.sweep(conn)
    assert stats(conn, "quick")["p95_processing_ms_5m"] == pytest.approx(2**-5 * 1.95)


def test_p95_reads_both_histogram_layouts(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "layouts")
    # This release's 35 buckets: 95 jobs under a microsecond, 5 at 3 ms.
    new = [0] * 35
    new[26 - 1], new[3 - 1] = 95, 5
    assert p95_of(conn, "layouts", new) == pytest.approx(2**-10)
    # 0.1.0's 25 buckets: bucket 1 was all of [0, 1) ms, read as before.
    assert p95_of(conn, "layouts", [100] + [0] * 24) == pytest.approx(0.95)
    assert p95_of(conn, "layouts", [0, 0, 0, 0, 100] + [0] * 20) == pytest.approx(8 * 1.95)
    assert p95_of(conn, "layouts", [0] * 24 + [3]) == 2**23
    # A 0.1.0 minute beside a new one: they add up element by element, the old sub-ms
    # counts read as [0.5, 1) ms (an upper bound).
    old = [10] + [0] * 24
    assert p95_of(conn, "layouts", old, new) == pytest.approx(0.5 + 0.5 * (104.5 - 95) / 10)
    folded = conn.execute(
        "select pgmq_jobs._add_buckets(%s::bigint[], %s::bigint[])", (old, new)
    ).fetchone()
    assert folded is not None and len(folded[0]) == 35 and sum(folded[0]) == 110
    assert p95_of(conn, "layouts", folded[0]) == pytest.approx(0.5 + 0.5 * (104.5 - 95) / 10)
    assert p95_of(conn, "layouts", [0] * 35) is None


def rolled_back(dsn: str, action: Callable[[Connection], object]) -> None:
    with psycopg.connect(dsn) as tx:
        action(tx)
        tx.rollback()


def test_enqueued_total_counts_committed_jobs_only(quiet: tuple[str, Connection]) -> None:
    dsn, conn = quiet
    jobs.create_queue(conn, "sent")
    jobs.enqueue(conn, "sent", {"kept": 1})
    jobs.enqueue_batch(conn, "sent", [{"kept": i} for i in range(3)])
    rolled_back(dsn, lambda tx: jobs.enqueue(tx, "sent", {"rolled": "back"}))
    rolled_back(dsn, lambda tx: jobs.enqueue_batch(tx, "sent", [{"rolled": i} for i in range(5)]))
    # A dedupe hit enqueues nothing and counts nothing.
    jobs.enqueue(conn, "sent", {"kept": 2}, dedupe_key="k")
    assert jobs.enqueue(conn, "sent", {"again": 1}, dedupe_key="k") is not None
    # Per-key batches go through enqueue and count there.
    jobs.enqueue_batch(conn, "sent", [{"g": 1}, {"g": 2}], group_keys=["a", "b"])
    assert stats(conn, "sent")["enqueued_total"] == 7
    # The sequence moved past the rolled-back ids: reading it would have said 13.
    row = conn.execute("select last_value from pgmq.q_sent_msg_id_seq").fetchone()
    assert row == (13,)

    # Folded by the sweep (the log of a finished minute), the total stays.
    conn.execute("update pgmq_jobs.outcome_log set at = at - interval '1 minute'")
    jobs.sweep(conn)
    assert conn.execute("select count(*) from pgmq_jobs.outcome_log").fetchone() == (0,)
    assert conn.execute(
        "select enqueued from pgmq_jobs.queue_totals where queue = 'sent'"
    ).fetchone() == (7,)
    assert conn.execute(
        "select sum(enqueued) from pgmq_jobs.queue_history where queue = 'sent'"
    ).fetchone() == (7,)
    jobs.enqueue(conn, "sent", {"after": "the sweep"})
    rolled_back(dsn, lambda tx: jobs.enqueue(tx, "sent", {"rolled": "back"}))
    assert stats(conn, "sent")["enqueued_total"] == 8
    jobs.sweep(conn)  # the snapshot of this minute records the same committed total
    assert conn.execute(
        "select enqueued_total from pgmq_jobs.queue_history where queue = 'sent'"
        " order by minute desc limit 1"
    ).fetchone() == (8,)
    # A dropped queue's total goes with it.
    jobs.drop_queue(conn, "sent")
    assert conn.execute("select count(*) from pgmq_jobs.queue_totals").fetchone() == (0,)


def test_counts_survive_the_sweep_folding_them_into_history(
    quiet: tuple[str, Connection],
) -> None:
    _, conn = quiet
    known_traffic(conn, "folded")
    before = stats(conn, "folded")
    # Test-only time travel: the outcome rows happened a minute earlier, so the sweep
    # folds them into queue_history (it folds finished minutes only).
    conn.execute("update pgmq_jobs.outcome_log set at = at - interval '1 minute'")
    summary = jobs.sweep(conn)
    assert summary["history_rows_folded"] >= 1
    assert conn.execute(
        "select count(*) from pgmq_jobs.outcome_log where queue = 'folded'"
    ).fetchone() == (0,)
    after = stats(conn, "folded")
    for key in ("completed", "retried", "dead_lettered"):
        for window in ("1m", "5m", "1h"):
            assert after[f"{key}_{window}"] == before[f"{key}_{window}"], (key, window)
    # Outcomes older than the window are not counted in it.
    conn.execute("update pgmq_jobs.queue_history set minute = minute - interval '10 minutes'")
    old = stats(conn, "folded")
    assert (old["completed_1m"], old["completed_5m"], old["completed_1h"]) == (0, 0, 10)


def test_live_workers_count_alive_workers_of_the_queue(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "served")
    for worker, queues in (("w1", ["served"]), ("w2", ["served", "other"]), ("w3", ["other"])):
        conn.execute("select pgmq_jobs.heartbeat(%s, %s)", (worker, queues))
    assert stats(conn, "served")["live_workers"] == 2
    conn.execute(
        "update pgmq_jobs.worker_heartbeats set last_seen_at = now() - interval '1 minute'"
        " where worker_id = 'w1'"
    )
    conn.execute("select pgmq_jobs.heartbeat('w2', '{served}', stopping => true)")
    assert stats(conn, "served")["live_workers"] == 0


def test_deep_counts_stop_at_the_cap_and_become_estimates(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    jobs.create_queue(conn, "deep")
    jobs.enqueue_batch(conn, "deep", [{"i": i} for i in range(40)])
    # Make the live-tuple statistics current now rather than within a second or ten.
    conn.execute("select pg_stat_force_next_flush()")
    conn.execute("select 1")
    conn.execute("set pgmq_jobs.stats_count_cap = 10")

    def estimated() -> dict[str, Any] | None:
        s = stats(conn, "deep")
        return s if s["ready"] == 40 else None

    s = wait_for(estimated, what="the live-tuple estimate of 40 ready jobs")
    assert s["ready_estimated"] is True
    conn.execute("reset pgmq_jobs.stats_count_cap")
    s = stats(conn, "deep")
    assert (s["ready"], s["ready_estimated"]) == (40, False)


def test_queue_stats_needs_admin_and_admin_can_read_it(quiet: tuple[str, Connection]) -> None:
    _, conn = quiet
    known_traffic(conn, "roles")
    conn.execute("set role pgmq_jobs_admin")
    try:
        assert stats(conn, "roles")["completed_5m"] == 10
    finally:
        conn.execute("reset role")
    for role in ("pgmq_jobs_worker", "pgmq_jobs_producer"):
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select * from pgmq_jobs.queue_stats")
        finally:
            conn.execute("reset role")
    assert conn.execute(
        "select has_table_privilege('public', 'pgmq_jobs.queue_stats', 'select')"
    ).fetchone() == (False,)


def test_stats_cli_table_and_json(quiet: tuple[str, Connection]) -> None:
    dsn, conn = quiet
    known_traffic(conn, "shown")
    out = cli(dsn, "stats")
    assert out.returncode == 0, out.stderr
    header, line = out.stdout.splitlines()
    assert header.split()[:6] == ["queue", "ready", "in_flight", "delayed", "dead", "oldest"]
    assert line.split()[:5] == ["shown", "1", "1", "2", "2"]
    assert "20.0%" in line  # retry rate: 3 of 15 finished attempts

    rows = json.loads(cli(dsn, "stats", "--json").stdout)
    [row] = rows
    assert (row["queue"], row["completed_1h"], row["retried_1h"], row["dead_lettered_1h"]) == (
        "shown",
        10,
        3,
        2,
    )


def test_stats_table_marks_estimates() -> None:
    row: dict[str, Any] = {
        "queue": "q",
        "ready": 1_000_000,
        "ready_estimated": True,
        "in_flight": 3,
        "delayed": 0,
        "dead": 5,
        "dead_estimated": False,
        "oldest_ready_age": timedelta(seconds=3725),
        "completed_rate_1m": 123.456,
        "completed_rate_5m": 1.234,
        "retried_5m": 4,
        "dead_lettered_5m": 0,
        "retry_rate_5m": 0.25,
        "avg_processing_ms_5m": 12.345,
        "p95_processing_ms_5m": None,
        "live_workers": 2,
    }
    [cells] = stats_table([row])
    assert cells["ready"] == "~1000000" and cells["dead"] == "5"
    assert (cells["oldest"], cells["done/s 1m"], cells["done/s 5m"]) == ("1h02m", "123", "1.23")
    assert (cells["retry% 5m"], cells["avg ms"], cells["p95 ms"]) == ("25.0%", "12.3", "-")


def test_stats_watch_refreshes_in_place(quiet: tuple[str, Connection]) -> None:
    dsn, conn = quiet
    jobs.create_queue(conn, "watched")
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    proc = subprocess.Popen(
        [CLI, "stats", "--watch", "0.2s", "--dsn", dsn],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []

        def two_screens() -> bool:
            line = proc.stdout.readline() if proc.stdout else ""
            seen.append(line)
            return sum("\x1b[H\x1b[2J" in s for s in seen) >= 2

        wait_for(two_screens, what="two refreshes of pgmq-jobs stats --watch")
        assert any(s.startswith("watched ") for s in seen)
    finally:
        proc.send_signal(2)
        assert proc.wait(timeout=10) == 0
