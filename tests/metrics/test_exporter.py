"""The Prometheus exporter, scraped over real HTTP: metric families, labels and values
from the views, counters that count, the database going away, and the CLI process."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import pgmq_jobs.client as jobs
from pgmq_jobs.cli import observe as cli_observe
from pgmq_jobs.metrics import exporter
from support import db_now

Connection = psycopg.Connection[Any]
CLI = str(Path(sys.executable).with_name("pgmq-jobs"))

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[dict[str, str], Samples]:
    """GET /metrics: family name -> type, and (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


@pytest.fixture
def quiet(fresh_db: Callable[[], str]) -> Iterator[tuple[str, Connection]]:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield dsn, conn


@pytest.fixture
def running(quiet: tuple[str, Connection]) -> Iterator[tuple[exporter.Exporter, Connection]]:
    dsn, conn = quiet
    # Counters count from an hour ago, so that tests may move outcomes a minute back.
    served = exporter.serve(dsn, "127.0.0.1", 0, since=db_now(conn) - timedelta(hours=1))
    try:
        yield served, conn
    finally:
        served.stop()


def q(queue: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"queue": queue, **more}.items()))


def test_scrape_returns_the_families_with_queue_labels(
    running: tuple[exporter.Exporter, Connection],
) -> None:
    served, conn = running
    jobs.create_queue(conn, "emails", max_attempts=2)
    jobs.create_queue(conn, "idle")
    types, samples = scrape(served.port)
    assert samples[("pgmq_jobs_jobs_completed_total", q("emails"))] == 0

    jobs.enqueue_batch(conn, "emails", [{"i": i} for i in range(6)])
    jobs.complete(conn, "emails", jobs.claim(conn, "emails", 3), durations_ms=[10.0] * 3)
    [retried] = jobs.claim(conn, "emails")
    jobs.fail(conn, "emails", retried.job_id, retried.attempt, "later", retry_after=3600)
    [dead] = jobs.claim(conn, "emails")
    jobs.fail(conn, "emails", dead.job_id, dead.attempt, "no", permanent=True)
    conn.execute("select pgmq_jobs.heartbeat('w1', '{emails}')")
    conn.execute("select pgmq_jobs.set_alert_threshold('dead_letters', 0, 'emails')")

    types, samples = scrape(served.port)
    assert samples[("pgmq_jobs_up", ())] == 1
    expected_types = {
        "pgmq_jobs_queue_ready": "gauge",
        "pgmq_jobs_queue_in_flight": "gauge",
        "pgmq_jobs_queue_delayed": "gauge",
        "pgmq_jobs_queue_dead_letters": "gauge",
        "pgmq_jobs_queue_estimated": "gauge",
        "pgmq_jobs_queue_oldest_ready_age_seconds": "gauge",
        "pgmq_jobs_queue_live_workers": "gauge",
        "pgmq_jobs_queue_retry_ratio": "gauge",
        "pgmq_jobs_job_duration_avg_seconds": "gauge",
        "pgmq_jobs_job_duration_p95_seconds": "gauge",
        "pgmq_jobs_jobs_enqueued": "counter",
        "pgmq_jobs_jobs_completed": "counter",
        "pgmq_jobs_jobs_retried": "counter",
        "pgmq_jobs_jobs_dead_lettered": "counter",
        "pgmq_jobs_workers": "gauge",
        "pgmq_jobs_alert_firing": "gauge",
        "pgmq_jobs_alert_value": "gauge",
        "pgmq_jobs_alerts_firing": "gauge",
        "pgmq_jobs_scrape_duration_seconds": "gauge",
    }
    assert {k: types.get(k) for k in expected_types} == expected_types

    # Gauges: 1 ready, 0 in flight, 1 waiting for its retry, 1 dead letter.
    assert samples[("pgmq_jobs_queue_ready", q("emails"))] == 1
    assert samples[("pgmq_jobs_queue_in_flight", q("emails"))] == 0
    assert samples[("pgmq_jobs_queue_delayed", q("emails"))] == 1
    assert samples[("pgmq_jobs_queue_dead_letters", q("emails"))] == 1
    assert samples[("pgmq_jobs_queue_ready", q("idle"))] == 0
    assert samples[("pgmq_jobs_queue_estimated", q("emails", gauge="ready"))] == 0
    assert samples[("pgmq_jobs_queue_live_workers", q("emails"))] == 1
    assert samples[("pgmq_jobs_queue_retry_ratio", q("emails"))] == pytest.approx(1 / 5)
    assert samples[("pgmq_jobs_job_duration_avg_seconds", q("emails"))] == pytest.approx(0.010)
    assert 0.008 <= samples[("pgmq_jobs_job_duration_p95_seconds", q("emails"))] < 0.016
    assert 0 <= samples[("pgmq_jobs_queue_oldest_ready_age_seconds", q("emails"))] < 60

    # Counters.
    assert samples[("pgmq_jobs_jobs_enqueued_total", q("emails"))] == 6
    assert samples[("pgmq_jobs_jobs_completed_total", q("emails"))] == 3
    assert samples[("pgmq_jobs_jobs_retried_total", q("emails"))] == 1
    assert samples[("pgmq_jobs_jobs_dead_lettered_total", q("emails", reason="failed"))] == 1
    assert samples[("pgmq_jobs_jobs_dead_lettered_total", q("emails", reason="expired"))] == 0
    assert samples[("pgmq_jobs_jobs_completed_total", q("idle"))] == 0

    # Workers and alerts.
    assert samples[("pgmq_jobs_workers", (("status", "alive"),))] == 1
    assert samples[("pgmq_jobs_workers", (("status", "stale"),))] == 0
    key = (("alert", "dead_letters"), ("queue", "emails"))
    assert samples[("pgmq_jobs_alert_firing", key)] == 1
    assert samples[("pgmq_jobs_alert_value", key)] == 1
    assert samples[("pgmq_jobs_alerts_firing", ())] == 1

    # More work: the counters go up and the sweep's fold does not disturb them.
    jobs.complete(conn, "emails", jobs.claim(conn, "emails"))
    conn.execute("update pgmq_jobs.outcome_log set at = at - interval '1 minute'")
    jobs.sweep(conn)
    _, samples = scrape(served.port)
    assert samples[("pgmq_jobs_jobs_completed_total", q("emails"))] == 4
    assert samples[("pgmq_jobs_jobs_retried_total", q("emails"))] == 1


def test_database_down_reports_up_zero_then_recovers(
    running: tuple[exporter.Exporter, Connection],
) -> None:
    served, conn = running
    jobs.create_queue(conn, "q")
    _, samples = scrape(served.port)
    assert samples[("pgmq_jobs_up", ())] == 1
    # Kill the exporter's session: the next scrape fails (up 0), the one after reconnects.
    conn.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
    )
    _, samples = scrape(served.port)
    assert samples[("pgmq_jobs_up", ())] == 0
    assert ("pgmq_jobs_queue_ready", q("q")) not in samples
    _, samples = scrape(served.port)
    assert samples[("pgmq_jobs_up", ())] == 1
    assert samples[("pgmq_jobs_queue_ready", q("q"))] == 0


def test_cli_exporter_process_serves_metrics(quiet: tuple[str, Connection]) -> None:
    dsn, conn = quiet
    jobs.create_queue(conn, "web")
    jobs.enqueue(conn, "web", {})
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    proc = subprocess.Popen(
        [CLI, "exporter", "--host", "127.0.0.1", "--port", "0", "--dsn", dsn],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving http://127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        _, samples = scrape(port)
        assert samples[("pgmq_jobs_queue_ready", q("web"))] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_cli_default_port_matches_the_exporter() -> None:
    assert cli_observe.EXPORTER_PORT == exporter.DEFAULT_PORT
