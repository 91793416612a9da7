"""Monitoring against a real streaming standby (hot standby) of the test server.

``pg_basebackup -R`` copies the session's cluster into a new data directory and the standby
starts on another port. Read-only commands (``queues``, ``dlq list``, ``schedules``,
``workers``, ``stats``, ``alerts``, the exporter) work there and show what the primary has;
writes (enqueue, replay, create, a worker's claim) fail with one line saying that the server
is a read-only replica.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import pgmq_jobs.client as jobs
from apps.harness import CLI, start_worker
from pgmq_jobs.errors import REPLICA_MESSAGE, ReadOnlyReplicaError, primary_only
from pgmq_jobs.ops.cluster import ClusterError, EmbeddedCluster

Connection = psycopg.Connection[Any]

CLI_REPLICA_ERROR = f"pgmq-jobs: error: {REPLICA_MESSAGE}\n"


@pytest.fixture(scope="module")
def standby(cluster_dsn: str, db_dsn: str, pg_bin_dir: Path) -> Iterator[EmbeddedCluster]:
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-standby-"))
    os.chmod(base, 0o755)
    try:
        replica = EmbeddedCluster.standby_of(
            cluster_dsn,
            base / "data",
            settings={"fsync": False, "synchronous_commit": False},
            bin_dir=pg_bin_dir,
            quiet=True,
        )
    except ClusterError as exc:
        shutil.rmtree(base, ignore_errors=True)
        if os.environ.get("DATABASE_URL"):
            pytest.skip(f"cannot make a standby of $DATABASE_URL's server: {exc}")
        raise
    replica.start()
    try:
        yield replica
    finally:
        replica.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def replica_dsn(standby: EmbeddedCluster, db_dsn: str) -> str:
    return standby.dsn(str(conninfo_to_dict(db_dsn)["dbname"]))


@pytest.fixture
def replicated_queue(
    standby: EmbeddedCluster, db_dsn: str, conn: Connection, queue_name: str
) -> str:
    """A queue with 3 waiting jobs and one dead letter on the primary, replayed on the
    standby, and a worker heartbeat."""
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(4)])
    [job] = jobs.claim(conn, queue_name, 1)
    jobs.fail(conn, queue_name, job.job_id, job.attempt, "broken for good", permanent=True)
    conn.execute(
        "select pgmq_jobs.heartbeat(worker_id => %s, queues => %s, host => 'replica-test',"
        " pid => 4242, jobs_done => 7, jobs_failed => 1, in_flight => 0,"
        " heartbeat_interval => interval '5 seconds', stopping => false)",
        (f"w-{queue_name}", [queue_name]),
    )
    standby.wait_replayed(db_dsn)
    return queue_name


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30)


def cli_json(*args: str) -> Any:
    out = cli(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_it_is_a_streaming_hot_standby(
    standby: EmbeddedCluster, cluster_dsn: str, replica_dsn: str
) -> None:
    assert standby.in_recovery()
    with psycopg.connect(cluster_dsn, autocommit=True) as primary:
        row = primary.execute(
            "select count(*) from pg_stat_replication where state = 'streaming'"
        ).fetchone()
    assert row is not None and row[0] >= 1
    with psycopg.connect(replica_dsn, autocommit=True) as replica:
        assert replica.execute("select pg_is_in_recovery()").fetchone() == (True,)


def test_wait_replayed_covers_commits_still_in_the_wal_buffers(
    standby: EmbeddedCluster, db_dsn: str, replica_dsn: str
) -> None:
    # The test server runs with synchronous_commit off: each commit below can still be in
    # the primary's WAL buffers when wait_replayed asks for its position. Every one must be
    # visible on the standby once the wait returns (a wait for the *write* position, as
    # pg_current_wal_lsn() gives, returned early and failed here most rounds).
    table = f"replay_probe_{os.getpid()}"
    with (
        psycopg.connect(db_dsn, autocommit=True) as primary,
        psycopg.connect(replica_dsn, autocommit=True) as replica,
    ):
        primary.execute(f"create table public.{table} (n integer)")
        try:
            for n in range(1, 21):
                primary.execute(f"insert into public.{table} values (%s)", (n,))
                standby.wait_replayed(db_dsn)
                row = replica.execute(f"select max(n) from public.{table}").fetchone()
                assert row == (n,), f"round {n}: the standby saw {row}"
        finally:
            primary.execute(f"drop table public.{table}")


def test_queues_dlq_schedules_and_workers_on_the_standby(
    replicated_queue: str, replica_dsn: str, db_dsn: str
) -> None:
    queue = replicated_queue
    queues = cli_json("queues", "--json", "--dsn", replica_dsn)
    assert queue in {q["queue"] for q in queues}
    [letter] = cli_json("dlq", "list", queue, "--json", "--dsn", replica_dsn)
    assert (letter["reason"], letter["last_error"]) == ("permanent", "broken for good")
    table = cli("dlq", "list", queue, "--dsn", replica_dsn)
    assert table.returncode == 0 and "broken for good" in table.stdout
    # The same schedules as on the primary (pg_cron's table replicates like any other).
    assert cli_json("schedules", "--json", "--dsn", replica_dsn) == cli_json(
        "schedules", "--json", "--dsn", db_dsn
    )
    workers = cli_json("workers", "--json", "--dsn", replica_dsn)
    [mine] = [w for w in workers if w["worker_id"] == f"w-{queue}"]
    assert (mine["status"], mine["jobs_done"], mine["queues"]) == ("alive", 7, [queue])


def test_stats_and_alerts_on_the_standby(replicated_queue: str, replica_dsn: str) -> None:
    if importlib.util.find_spec("pgmq_jobs.cli.observe") is None:
        pytest.skip("pgmq-jobs stats/alerts (cli_observe) do not exist yet")
    stats = cli_json("stats", "--json", "--dsn", replica_dsn)
    [row] = [r for r in stats if r["queue"] == replicated_queue]
    assert (row["ready"], row["dead"]) == (3, 1)
    table = cli("stats", "--dsn", replica_dsn)
    assert table.returncode == 0 and replicated_queue in table.stdout, table.stderr
    alerts = cli("alerts", "--json", "--dsn", replica_dsn)
    # 0: none fire, 2: some fire (the shared test database may hold other tests' alerts).
    assert alerts.returncode in (0, 2), alerts.stderr
    assert isinstance(json.loads(alerts.stdout), list)


def test_the_exporter_on_the_standby(replicated_queue: str, replica_dsn: str) -> None:
    if importlib.util.find_spec("pgmq_jobs.metrics.exporter") is None:
        pytest.skip("the Prometheus exporter (pgmq_jobs.metrics.exporter) does not exist yet")
    from pgmq_jobs.metrics.exporter import serve

    exporter = serve(replica_dsn, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        exporter.stop()
    assert "pgmq_jobs_up 1.0" in text
    assert f'pgmq_jobs_queue_ready{{queue="{replicated_queue}"}} 3.0' in text
    assert f'pgmq_jobs_queue_dead_letters{{queue="{replicated_queue}"}} 1.0' in text


def test_the_dashboard_on_the_standby(replicated_queue: str, replica_dsn: str) -> None:
    if importlib.util.find_spec("pgmq_jobs.web.dashboard") is None:
        pytest.skip("the dashboard (pgmq_jobs.web.dashboard) does not exist yet")
    from pgmq_jobs.web.dashboard import DashboardServer

    server = DashboardServer(replica_dsn, "127.0.0.1", 0, refresh=0)
    server.start()
    try:
        base = server.url.rstrip("/")
        for path, expected in (
            ("/", replicated_queue),
            (f"/queues/{replicated_queue}", "broken for good"),
            ("/workers", f"w-{replicated_queue}"),
            ("/schedules", ""),
            ("/audit", ""),
        ):
            with urllib.request.urlopen(base + path, timeout=15) as response:
                body = response.read().decode()
                assert response.status == 200, path
            assert expected in body, path
    finally:
        server.stop()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("enqueue", "{queue}", '{"i": 99}'), id="enqueue"),
        pytest.param(("dlq", "replay", "{queue}", "--all"), id="dlq-replay"),
        pytest.param(("queues", "create", "{queue}_new"), id="queues-create"),
        pytest.param(("dlq", "purge", "{queue}", "--all"), id="dlq-purge"),
    ],
)
def test_writes_on_the_standby_fail_with_a_clear_message(
    replicated_queue: str, replica_dsn: str, args: tuple[str, ...]
) -> None:
    out = cli(*(a.replace("{queue}", replicated_queue) for a in args), "--dsn", replica_dsn)
    assert (out.returncode, out.stdout, out.stderr) == (1, "", CLI_REPLICA_ERROR)


def test_the_client_can_raise_the_same_message(
    replicated_queue: str, replica_dsn: str, db_dsn: str
) -> None:
    with psycopg.connect(replica_dsn, autocommit=True) as replica:
        with (
            pytest.raises(ReadOnlyReplicaError, match="read-only replica") as caught,
            primary_only(),
        ):
            jobs.enqueue(replica, replicated_queue, {"i": 1})
        assert isinstance(caught.value, psycopg.errors.ReadOnlySqlTransaction)
        assert isinstance(caught.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)
        # Reads pass through untouched.
        with primary_only():
            assert len(jobs.dead_letters(replica, replicated_queue)) == 1
    # Nothing reached the primary either.
    with psycopg.connect(db_dsn, autocommit=True) as primary:
        assert len(jobs.dead_letters(primary, replicated_queue)) == 1


def test_a_worker_pointed_at_the_standby_stops_with_the_message(
    replicated_queue: str, replica_dsn: str
) -> None:
    proc = start_worker(replica_dsn, [replicated_queue], "--no-listen")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.splitlines()[-1] == f"pgmq-jobs: error: {REPLICA_MESSAGE}"
    assert "Traceback" not in err
