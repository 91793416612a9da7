"""Prometheus exporter: ``pgmq-jobs exporter --port 9469`` serves ``/metrics``.

Each scrape runs four calls of :mod:`pgmq_jobs.client` on one connection (``queue_stats``,
``outcome_totals``, ``worker_counts``, ``alerts``) and turns them into metric families with
conventional names:

==============================================  =======  ===================================
metric                                          type     labels
==============================================  =======  ===================================
``pgmq_jobs_up``                                gauge    (1 when the database answered)
``pgmq_jobs_queue_ready``                       gauge    queue
``pgmq_jobs_queue_in_flight``                   gauge    queue
``pgmq_jobs_queue_delayed``                     gauge    queue
``pgmq_jobs_queue_dead_letters``                gauge    queue
``pgmq_jobs_queue_estimated``                   gauge    queue, gauge (ready | dead_letters)
``pgmq_jobs_queue_oldest_ready_age_seconds``    gauge    queue
``pgmq_jobs_queue_live_workers``                gauge    queue
``pgmq_jobs_queue_retry_ratio``                 gauge    queue (5-minute window)
``pgmq_jobs_job_duration_avg_seconds``          gauge    queue (5-minute window)
``pgmq_jobs_job_duration_p95_seconds``          gauge    queue (5-minute window)
``pgmq_jobs_jobs_enqueued_total``               counter  queue
``pgmq_jobs_jobs_completed_total``              counter  queue
``pgmq_jobs_jobs_retried_total``                counter  queue
``pgmq_jobs_jobs_dead_lettered_total``          counter  queue, reason (failed | expired)
``pgmq_jobs_workers``                           gauge    status (alive | stale | gone)
``pgmq_jobs_alert_firing``                      gauge    alert, queue ("" for the database)
``pgmq_jobs_alert_value``                       gauge    alert, queue
``pgmq_jobs_alerts_firing``                     gauge    (how many alerts fire)
``pgmq_jobs_scrape_duration_seconds``           gauge
==============================================  =======  ===================================

The outcome counters count from the minute the exporter started (they reset when it
restarts, as Prometheus counters may); ``enqueued_total`` is the queue's message-id
sequence. A scrape while the database is unreachable answers ``pgmq_jobs_up 0`` and
reconnects on the next one.

Given several databases (``serve({"eu": dsn1, "us": dsn2})``), every sample carries a
``database`` label and each database has its own ``pgmq_jobs_up``; with one database the
output has no such label.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from wsgiref.simple_server import WSGIServer

import psycopg
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pgmq_jobs import client

log = logging.getLogger("pgmq_jobs.metrics.exporter")

DEFAULT_PORT = 9469

_QUEUE_GAUGES: list[tuple[str, str, str]] = [
    ("pgmq_jobs_queue_ready", "ready", "Jobs visible now, waiting for a worker"),
    ("pgmq_jobs_queue_in_flight", "in_flight", "Jobs claimed and running"),
    ("pgmq_jobs_queue_delayed", "delayed", "Jobs waiting for a later time (delay, retry backoff)"),
    ("pgmq_jobs_queue_dead_letters", "dead", "Jobs in the dead-letter queue"),
    ("pgmq_jobs_queue_live_workers", "live_workers", "Workers alive that serve the queue"),
    (
        "pgmq_jobs_queue_retry_ratio",
        "retry_rate_5m",
        "Retried share of finished attempts over the last 5-6 minutes",
    ),
]


@dataclass
class Snapshot:
    """What one scrape read from the database."""

    stats: list[dict[str, Any]] = field(default_factory=list)
    totals: list[dict[str, Any]] = field(default_factory=list)
    workers: dict[str, int] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)


class JobsCollector(Collector):
    """Reads the pgmq_jobs views at every scrape over one reused connection."""

    def __init__(
        self, dsn: str, *, since: datetime | None = None, statement_timeout: float = 10.0
    ) -> None:
        """``since``: count outcomes from then (default: the minute of the first scrape)."""
        self.dsn = dsn
        self.statement_timeout = statement_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._since = since

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # The timeout travels with the connection (a SET would not survive a
            # transaction pooler), and nothing is prepared server-side.
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=5,
                prepare_threshold=None,
                options=f"-c statement_timeout={int(self.statement_timeout * 1000)}",
            )
            self._conn = conn
        return self._conn

    def read(self) -> Snapshot:
        """One consistent-enough read of everything a scrape exposes."""
        conn = self._connection()
        if self._since is None:
            self._since = client.current_minute(conn)
        return Snapshot(
            stats=client.queue_stats(conn),
            totals=client.outcome_totals(conn, self._since),
            workers=client.worker_counts(conn),
            alerts=client.alerts(conn),
        )

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        with self._lock:
            try:
                snap: Snapshot | None = self.read()
            except psycopg.Error as exc:
                log.warning("scrape failed: %s", (str(exc).strip().splitlines() or [""])[0])
                self._drop()
                snap = None
        up = GaugeMetricFamily("pgmq_jobs_up", "1 when the database answered the last scrape")
        up.add_metric([], 1.0 if snap is not None else 0.0)
        yield up
        if snap is not None:
            yield from _families(snap)
        took = GaugeMetricFamily(
            "pgmq_jobs_scrape_duration_seconds", "How long the scrape's queries took"
        )
        took.add_metric([], time.monotonic() - started)
        yield took


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _families(snap: Snapshot) -> Iterator[Metric]:
    for name, column, doc in _QUEUE_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=["queue"])
        for row in snap.stats:
            if row[column] is not None:
                family.add_metric([row["queue"]], float(row[column]))
        yield family

    estimated = GaugeMetricFamily(
        "pgmq_jobs_queue_estimated",
        "1 when the gauge is a statistics estimate (the queue is deeper than the count cap)",
        labels=["queue", "gauge"],
    )
    age = GaugeMetricFamily(
        "pgmq_jobs_queue_oldest_ready_age_seconds",
        "How long the oldest ready job has waited (0 when none is ready)",
        labels=["queue"],
    )
    avg = GaugeMetricFamily(
        "pgmq_jobs_job_duration_avg_seconds",
        "Average handler duration reported over the last 5-6 minutes",
        labels=["queue"],
    )
    p95 = GaugeMetricFamily(
        "pgmq_jobs_job_duration_p95_seconds",
        "95th percentile handler duration reported over the last 5-6 minutes",
        labels=["queue"],
    )
    enqueued = CounterMetricFamily(
        "pgmq_jobs_jobs_enqueued", "Jobs ever sent to the queue", labels=["queue"]
    )
    for row in snap.stats:
        queue = row["queue"]
        estimated.add_metric([queue, "ready"], 1.0 if row["ready_estimated"] else 0.0)
        estimated.add_metric([queue, "dead_letters"], 1.0 if row["dead_estimated"] else 0.0)
        age.add_metric([queue], _seconds(row["oldest_ready_age"]) or 0.0)
        if row["avg_processing_ms_5m"] is not None:
            avg.add_metric([queue], float(row["avg_processing_ms_5m"]) / 1000)
        if row["p95_processing_ms_5m"] is not None:
            p95.add_metric([queue], float(row["p95_processing_ms_5m"]) / 1000)
        if row["enqueued_total"] is not None:
            enqueued.add_metric([queue], float(row["enqueued_total"]))
    yield from (estimated, age, avg, p95, enqueued)

    completed = CounterMetricFamily(
        "pgmq_jobs_jobs_completed", "Jobs completed since the exporter started", labels=["queue"]
    )
    retried = CounterMetricFamily(
        "pgmq_jobs_jobs_retried",
        "Failed attempts scheduled for a retry since the exporter started",
        labels=["queue"],
    )
    dead = CounterMetricFamily(
        "pgmq_jobs_jobs_dead_lettered",
        "Jobs moved to the dead-letter queue since the exporter started",
        labels=["queue", "reason"],
    )
    for row in snap.totals:
        queue = row["queue"]
        completed.add_metric([queue], float(row["completed"]))
        retried.add_metric([queue], float(row["retried"]))
        dead.add_metric([queue, "failed"], float(row["dead"]))
        dead.add_metric([queue, "expired"], float(row["expired"]))
    yield from (completed, retried, dead)

    workers = GaugeMetricFamily(
        "pgmq_jobs_workers", "Worker processes by health", labels=["status"]
    )
    for status in ("alive", "stale", "gone"):
        workers.add_metric([status], float(snap.workers.get(status, 0)))
    yield workers

    firing = GaugeMetricFamily(
        "pgmq_jobs_alert_firing", "1 for each alert condition firing now", labels=["alert", "queue"]
    )
    value = GaugeMetricFamily(
        "pgmq_jobs_alert_value", "The value of each firing alert", labels=["alert", "queue"]
    )
    for row in snap.alerts:
        labels = [row["alert"], row["queue"] or ""]
        firing.add_metric(labels, 1.0)
        if row["value"] is not None:
            value.add_metric(labels, float(row["value"]))
    count = GaugeMetricFamily("pgmq_jobs_alerts_firing", "How many alert conditions fire now")
    count.add_metric([], float(len(snap.alerts)))
    yield from (firing, value, count)


class MultiDatabaseCollector(Collector):
    """The metrics of several databases, each sample labelled with its database's name."""

    def __init__(self, collectors: dict[str, JobsCollector]) -> None:
        self.collectors = collectors

    def close(self) -> None:
        for collector in self.collectors.values():
            collector.close()

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for database, collector in self.collectors.items():
            for family in collector.collect():
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    target.samples.append(
                        sample._replace(labels={**sample.labels, "database": database})
                    )
        yield from merged.values()


@dataclass
class Exporter:
    """A running exporter: its HTTP server, serving thread and collector."""

    server: WSGIServer
    thread: threading.Thread
    collector: JobsCollector | MultiDatabaseCollector

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.collector.close()


def serve(
    dsn: str | dict[str, str],
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    *,
    since: datetime | None = None,
) -> Exporter:
    """Start serving ``/metrics`` in a background thread (port 0: any free port).

    ``dsn``: one database, or {name: dsn} for several (samples then get a ``database``
    label). The outcome counters count from ``since`` (default: the minute of the first
    scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    collector: JobsCollector | MultiDatabaseCollector
    if isinstance(dsn, str):
        collector = JobsCollector(dsn, since=since)
    else:
        collector = MultiDatabaseCollector(
            {name: JobsCollector(d, since=since) for name, d in dsn.items()}
        )
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return Exporter(server, thread, collector)
