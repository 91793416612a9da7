"""Claim, sweep and the stats helpers walk only the index entries they need.

Each search for rows "due by now" (claim's ready jobs, sweep's expired deliveries and its
retention of completions, dead letters and dedupe keys) must stop at the first entry past its
cut-off. A cut-off written as ``clock_timestamp()`` is volatile and so never an index
condition: the walk then reads every entry behind it (every delayed job of an idle queue,
every fresh completion in the archive), which is what these tests catch. The count is the
transaction's own ``pg_stat_xact_user_tables`` figure: rows fetched by index or sequential
scans of one table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs

Connection = psycopg.Connection[Any]

N = 3000  # jobs waiting behind the cut-off in each test
FEW = 20  # what a bounded walk may read besides the rows it acts on


def _fetched(conn: Connection, tables: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        "select relname, coalesce(idx_tup_fetch, 0), coalesce(seq_tup_read, 0)"
        " from pg_catalog.pg_stat_xact_user_tables where relname = any(%s)",
        (list(tables),),
    ).fetchall()
    found = {str(r[0]): (int(r[1]), int(r[2])) for r in rows}
    return {t: found.get(t, (0, 0)) for t in tables}


@contextmanager
def counting(conn: Connection, *tables: str) -> Iterator[dict[str, tuple[int, int]]]:
    """Inside a rolled-back transaction: (rows fetched by index scans, rows read by
    sequential scans) of each table, filled in after the block. A difference of two
    readings in one transaction, since the view also holds counts of the session's earlier
    transactions that have not been flushed to the statistics yet."""
    out: dict[str, tuple[int, int]] = {}
    with conn.transaction(force_rollback=True):
        before = _fetched(conn, tables)
        yield out
        after = _fetched(conn, tables)
    for t in tables:
        out[t] = (after[t][0] - before[t][0], after[t][1] - before[t][1])


def capped_sweep(conn: Connection, count_cap: int) -> dict[str, Any]:
    """sweep() with its gauges stopping at ``count_cap`` rows; its summary."""
    row = conn.execute("select pgmq_jobs.sweep(count_cap => %s)", (count_cap,)).fetchone()
    assert row is not None
    return dict(row[0])


@pytest.fixture
def fresh(fresh_db: Callable[[], str]) -> Iterator[Connection]:
    """A database of its own: no pg_cron sweep, no other test's queues for sweep to visit."""
    with psycopg.connect(fresh_db(), autocommit=True) as connection:
        yield connection


def test_claim_on_a_queue_of_delayed_jobs_reads_none_of_them(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(N)], delay=3600)
    conn.execute(f"analyze pgmq.q_{queue_name}")
    table = f"q_{queue_name}"
    with counting(conn, table) as read:
        assert jobs.claim(conn, queue_name, 10) == []
    assert sum(read[table]) <= FEW

    ready = jobs.enqueue_batch(conn, queue_name, [{"ready": i} for i in range(3)])
    with counting(conn, table) as read:
        claimed = jobs.claim(conn, queue_name, 10)
    assert sorted(j.job_id for j in claimed) == ready
    assert sum(read[table]) <= FEW


def test_queue_stats_stop_at_the_cap_even_on_stale_statistics(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(N)])
    table = f"q_{queue_name}"
    # The statistics say every job is ready; then all of them move an hour ahead (test-only
    # time travel, as a burst of retries would) and a vacuum clears the old index entries
    # but leaves the statistics as they were.
    conn.execute(f"analyze pgmq.{table}")
    conn.execute(f"update pgmq.{table} set vt = vt + interval '1 hour'")
    conn.execute(f"vacuum (analyze false) pgmq.{table}")
    with counting(conn, table) as read:
        conn.execute("set local pgmq_jobs.stats_count_cap = 2")
        row = conn.execute(
            "select ready, delayed, ready_estimated from pgmq_jobs.queue_stats where queue = %s",
            (queue_name,),
        ).fetchone()
    assert row is not None and row[0] == 0 and row[2] is True  # delayed: at least the cap
    # None ready: the count of ready jobs reads nothing, the count of delayed ones two rows.
    assert sum(read[table]) <= FEW


def test_sweep_reads_fresh_completions_dead_letters_and_dedupe_keys_not_at_all(
    fresh: Connection,
) -> None:
    conn = fresh
    jobs.create_queue(conn, "walkq", dead_letter_retention=3600)
    ids = jobs.enqueue_batch(
        conn,
        "walkq",
        [{"i": i} for i in range(2 * N)],
        dedupe_keys=[f"k{i}" for i in range(2 * N)],
        dedupe_window=3600,
    )
    claimed = [job for _ in range(2 * N // 1000) for job in jobs.claim(conn, "walkq", 1000)]
    assert sorted(j.job_id for j in claimed) == ids
    jobs.complete(conn, "walkq", claimed[:N])
    for start in range(N, 2 * N, 1000):
        failures = [
            jobs.Failure(j.job_id, j.attempt, "x", permanent=True)
            for j in claimed[start : start + 1000]
        ]
        jobs.fail_batch(conn, "walkq", failures)
    conn.execute("analyze pgmq.a_walkq, pgmq.q_walkq_dlq, pgmq_jobs.dedupe_keys")

    with counting(conn, "a_walkq", "dedupe_keys", "q_walkq_dlq") as read:
        summary = capped_sweep(conn, 1)
    assert summary["skipped"] is False
    assert (summary["completed_deleted"], summary["dead_letters_deleted"]) == (0, 0)
    walks = {
        "completions": sum(read["a_walkq"]),
        "dedupe keys": sum(read["dedupe_keys"]),
        # count_cap=1: the dead-letter gauge stops at one row.
        "dead letters": sum(read["q_walkq_dlq"]),
    }
    assert all(n <= FEW for n in walks.values()), walks


def test_sweep_counts_jobs_in_flight_up_to_the_cap_and_not_again_for_expiry(
    fresh: Connection,
) -> None:
    conn = fresh
    jobs.create_queue(conn, "flightq")
    jobs.enqueue_batch(conn, "flightq", [{"i": i} for i in range(N)])
    assert sum(len(jobs.claim(conn, "flightq", 1000)) for _ in range(N // 1000)) == N
    conn.execute("vacuum analyze pgmq.q_flightq")  # as autovacuum would: no dead index entries
    with counting(conn, "q_flightq") as read:
        summary = capped_sweep(conn, 2)
        [in_flight] = conn.execute(
            "select in_flight from pgmq_jobs.queue_history where queue = 'flightq'"
        ).fetchone() or [None]
    assert (summary["expired_to_dlq"], in_flight) == (0, 2)
    # The gauges stop at the cap of 2; the search for expired deliveries reads none of the
    # N jobs in flight (all of their visibility timeouts are ahead).
    assert sum(read["q_flightq"]) <= FEW


def test_sweep_looks_for_expired_deliveries_among_delivered_jobs_only(
    fresh: Connection,
) -> None:
    conn = fresh
    jobs.create_queue(conn, "readyq", max_attempts=1)
    jobs.enqueue_batch(conn, "readyq", [{"i": i} for i in range(N)])
    conn.execute("analyze pgmq.q_readyq")
    with counting(conn, "q_readyq") as read:
        summary = capped_sweep(conn, 1)
    assert summary["expired_to_dlq"] == 0
    # N jobs ready, none ever delivered: the partial index of delivered jobs has no entry
    # to read, and the capped gauges read a row each.
    assert sum(read["q_readyq"]) <= FEW
