"""One worker process serving queues spread over two databases (repeatable ``--dsn``)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from apps.harness import CLI, archived_ids, create_ledger, ledger, remaining, worker_env
from support import wait_for

Connection = psycopg.Connection[Any]


def start(dsns: list[str], queues: list[str], *args: str, ledger_dsn: str) -> Any:
    argv = [CLI, "worker", "--app", "apps.ledger_app:app"]
    for dsn in dsns:
        argv += ["--dsn", dsn]
    for queue in queues:
        argv += ["--queue", queue]
    return subprocess.Popen(
        [*argv, *args],
        env=worker_env(ledger_dsn, queues),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def connections(conn: Connection, pid: int) -> list[tuple[str, str]]:
    """(database, application_name) of the worker's connections, server-wide."""
    rows = conn.execute(
        "select datname, application_name from pg_stat_activity"
        " where application_name in (%s, %s) order by 1, 2",
        (f"pgmq-jobs worker {pid}", f"pgmq-jobs listen {pid}"),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.fixture
def two_databases(fresh_db: Callable[[], str]) -> tuple[str, str]:
    one, two = fresh_db(), fresh_db()
    create_ledger(one)  # the ledger of both databases' jobs lives in the first
    return one, two


def dbname(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])


def test_a_worker_drains_queues_in_two_databases_at_once(
    two_databases: tuple[str, str], cluster_dsn: str
) -> None:
    one, two = two_databases
    n = 60
    with psycopg.connect(one, autocommit=True) as c1, psycopg.connect(two, autocommit=True) as c2:
        jobs.create_queue(c1, "orders")
        jobs.create_queue(c2, "emails")
        proc = start(
            [f"one={one}", f"two={two}"],
            ["orders", "emails"],
            "--poll-interval",
            "30",  # only NOTIFY (per database) can explain a fast pickup
            "--concurrency",
            "4",
            ledger_dsn=one,
        )
        try:
            with psycopg.connect(cluster_dsn, autocommit=True) as admin:
                # One job connection and one LISTEN connection in each database.
                expected = sorted(
                    (db, f"pgmq-jobs {kind} {proc.pid}")
                    for db in (dbname(one), dbname(two))
                    for kind in ("listen", "worker")
                )
                wait_for(
                    lambda: connections(admin, proc.pid) == expected,
                    timeout=20,
                    what="2 connections per database",
                )
                # LISTEN is up (idle in `listen …`) in both databases before enqueuing.
                wait_for(
                    lambda: admin.execute(
                        "select count(distinct datname) = 2 from pg_stat_activity"
                        " where application_name = %s and query ilike 'listen %%'",
                        (f"pgmq-jobs listen {proc.pid}",),
                    ).fetchone()[0],  # type: ignore[index]
                    timeout=20,
                    what="LISTEN in both databases",
                )
            orders = jobs.enqueue_batch(c1, "orders", [{"i": i} for i in range(n)])
            emails = jobs.enqueue_batch(c2, "emails", [{"i": i} for i in range(n)])
            wait_for(
                lambda: (
                    archived_ids(c1, "orders") == set(orders)
                    and archived_ids(c2, "emails") == set(emails)
                ),
                timeout=15,
                what="both databases' jobs (the poll interval is 30 s)",
            )
            assert proc.poll() is None
            # Each database's workers view shows its member of the group.
            [(w1,)] = c1.execute("select worker_id from pgmq_jobs.workers").fetchall()
            [(w2,)] = c2.execute("select worker_id from pgmq_jobs.workers").fetchall()
            assert w1.endswith("@one") and w2.endswith("@two")
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        for queue, ids in (("orders", orders), ("emails", emails)):
            done = Counter(row[0] for row in ledger(c1, queue, "done"))
            assert set(done) == set(ids) and set(done.values()) == {1}
        assert remaining(c1, "orders") == 0 and remaining(c2, "emails") == 0
        # Both members said goodbye.
        for c in (c1, c2):
            assert c.execute("select bool_and(stopped_at is not null) from pgmq_jobs.workers")\
                .fetchone() == (True,)  # fmt: skip


def test_drain_over_two_databases_sums_the_summary(two_databases: tuple[str, str]) -> None:
    one, two = two_databases
    with psycopg.connect(one, autocommit=True) as c1, psycopg.connect(two, autocommit=True) as c2:
        jobs.create_queue(c1, "a", max_attempts=1)
        jobs.create_queue(c2, "b")
        jobs.enqueue_batch(c1, "a", [{"i": i} for i in range(5)])
        jobs.enqueue(c1, "a", {"action": "fail"})
        jobs.enqueue_batch(c2, "b", [{"i": i} for i in range(7)])
        # Plain DSNs: each database is named after its dbname.
        proc = start([one, two], ["a", "b"], "--drain", "--no-listen", ledger_dsn=one)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert {k: summary[k] for k in ("claimed", "completed", "failed", "dead")} == {
            "claimed": 13,
            "completed": 12,
            "failed": 1,
            "dead": 1,
        }
        assert remaining(c1, "a") == 0 and remaining(c2, "b") == 0
        [(w,)] = c2.execute("select worker_id from pgmq_jobs.workers").fetchall()
        assert w.endswith(f"@{dbname(two)}")


def test_a_queue_must_live_in_exactly_one_database(two_databases: tuple[str, str]) -> None:
    one, two = two_databases
    with psycopg.connect(one, autocommit=True) as c1, psycopg.connect(two, autocommit=True) as c2:
        jobs.create_queue(c1, "only_one")
        jobs.create_queue(c1, "both")
        jobs.create_queue(c2, "both")
    for queues, message in (
        (["only_one", "nowhere"], "queue nowhere exists in none of the databases (one, two)"),
        (["both"], "queue both exists in more than one database (one, two)"),
    ):
        proc = start([f"one={one}", f"two={two}"], queues, "--no-listen", ledger_dsn=one)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1
        assert message in err.splitlines()[-1] and "Traceback" not in err


def test_listen_dsn_with_several_databases_needs_names(two_databases: tuple[str, str]) -> None:
    one, two = two_databases
    with psycopg.connect(one, autocommit=True) as c1:
        jobs.create_queue(c1, "q1")
    proc = start(
        [f"one={one}", f"two={two}"], ["q1"], "--listen-dsn", one, "--drain", ledger_dsn=one
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "--listen-dsn must be NAME=URL" in err, err
