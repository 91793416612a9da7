"""stats, alerts, workers and the exporter over several databases, with a database label."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import pgmq_jobs.client as jobs
from pgmq_jobs.metrics.exporter import serve

CLI = str(Path(sys.executable).with_name("pgmq-jobs"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)


def seed(dsn: str, queue: str, ready: int, dead: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs.create_queue(conn, queue, max_attempts=1)
        jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(ready + dead)])
        for job in jobs.claim(conn, queue, dead):
            jobs.fail(conn, queue, job.job_id, 1, "boom")


def test_stats_alerts_and_exporter_over_two_databases(fresh_db: Callable[[], str]) -> None:
    eu, us = fresh_db(), fresh_db()
    seed(eu, "orders", ready=3, dead=1)
    seed(us, "orders", ready=5, dead=2)
    with psycopg.connect(us, autocommit=True) as conn:
        conn.execute("select pgmq_jobs.set_alert_threshold('dead_letters', 1, queue => 'orders')")

    out = cli("stats", "--json", "--dsn", f"eu={eu}", "--dsn", f"us={us}")
    assert out.returncode == 0, out.stderr
    by_db = {r["database"]: r for r in json.loads(out.stdout)}
    assert (by_db["eu"]["ready"], by_db["eu"]["dead"]) == (3, 1)
    assert (by_db["us"]["ready"], by_db["us"]["dead"]) == (5, 2)
    table = cli("stats", "--dsn", f"eu={eu}", "--dsn", f"us={us}")
    assert table.stdout.splitlines()[0].split()[0] == "database"

    alerts = cli("alerts", "--json", "--dsn", f"eu={eu}", "--dsn", f"us={us}")
    assert alerts.returncode == 2
    assert {(a["database"], a["alert"]) for a in json.loads(alerts.stdout)} == {
        ("us", "dead_letters")
    }
    down = cli("stats", "--dsn", f"eu={eu}", "--dsn", "gone=postgresql://postgres@127.0.0.1:1/x")
    assert down.returncode == 1 and "database gone is unreachable" in down.stderr

    exporter = serve({"eu": eu, "us": us}, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=30) as r:
            body = r.read().decode()
    finally:
        exporter.stop()
    assert 'pgmq_jobs_up{database="eu"} 1.0' in body
    assert 'pgmq_jobs_up{database="us"} 1.0' in body
    assert 'pgmq_jobs_queue_ready{database="eu",queue="orders"} 3.0' in body
    assert 'pgmq_jobs_queue_ready{database="us",queue="orders"} 5.0' in body
    assert 'pgmq_jobs_queue_dead_letters{database="us",queue="orders"} 2.0' in body


def test_one_database_has_no_database_label(db_dsn: str, conn: Any, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    out = cli("stats", "--json", "--dsn", db_dsn)
    rows = json.loads(out.stdout)
    assert rows and "database" not in rows[0]
