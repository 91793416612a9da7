"""Upgrades in place: a database of the shipped 0.1.0 migration, holding jobs in every state,
becomes one equal to a fresh install by `pgmq-jobs install`, and every job carries on.

The 0.1.0 database is built from ``supabase/migrations/20261123000000_pgmq_jobs.sql`` as
shipped (its hash is held in tests/test_migrations.py). It needs pg_cron for its schedule, and
a server lets pg_cron live in one database only (``cron.database_name``), so this module runs
a cluster of its own whose pg_cron database is :data:`OLD_DB`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from apps.ledger_app import LEDGER_DDL
from dbutil import normalise_dump, pg_dump_schema
from ledger_checker import check
from pgmq_jobs.ops.cluster import EmbeddedCluster
from pgmq_jobs.ops.install import InstallError, install, status
from pgmq_jobs.ops.paths import pgmq_sql_path, repo_root
from pgmq_jobs.ops.versions import PACKAGE_VERSION
from support import ROOT as SUPPORT_ROOT
from support import TESTS_DIR, wait_for

Connection = psycopg.Connection[Any]

ROOT = repo_root() or SUPPORT_ROOT
RELEASED_0_1_0 = ROOT / "supabase" / "migrations" / "20261123000000_pgmq_jobs.sql"
# The commit that shipped 0.1.0: its worker is the "previous release" of the ledger run.
RELEASE_0_1_0_COMMIT = "0aad4f5"
OLD_DB = "pgmq_jobs_upgrade"
CLI = str(Path(sys.executable).with_name("pgmq-jobs"))
SCHEMAS = ("pgmq", "pgmq_jobs")

# One queue in every test: created on 0.1.0 before the upgrade, on 0.2.0 for the fresh twin.
QUEUE = "up"
QUEUE_SQL = (
    "select pgmq_jobs.create_queue('up', max_attempts => 5, visibility_timeout => '1 hour',"
    " retry_base => '1 hour', retry_max => '1 hour', jitter => 'none')"
)


@pytest.fixture(scope="module")
def upgrade_cluster() -> Iterator[EmbeddedCluster]:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("needs a cluster of its own (pg_cron in the upgrade database)")
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-upgrade-"))
    os.chmod(base, 0o755)
    cluster = EmbeddedCluster(
        base / "data",
        settings={
            "fsync": False,
            "synchronous_commit": False,
            "full_page_writes": False,
            "cron.database_name": OLD_DB,
        },
        quiet=True,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _recreate(cluster: EmbeddedCluster, name: str) -> str:
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return cluster.dsn(name)


def build_0_1_0(dsn: str) -> None:
    """PGMQ from its package, then the 0.1.0 migration exactly as it was shipped."""
    with psycopg.connect(dsn) as conn:
        conn.execute(pgmq_sql_path().read_text(encoding="utf-8"))  # type: ignore[arg-type]
        conn.execute(RELEASED_0_1_0.read_text(encoding="utf-8"))  # type: ignore[arg-type]


@pytest.fixture
def old_db(upgrade_cluster: EmbeddedCluster) -> str:
    """A database of release 0.1.0 (with pg_cron), built from the shipped migration."""
    dsn = _recreate(upgrade_cluster, OLD_DB)
    build_0_1_0(dsn)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select array_agg(version) from pgmq_jobs.schema_version").fetchone()
        assert row == (["0.1.0"],)
        assert conn.execute("select count(*) from pg_extension where extname = 'pg_cron'")
    return dsn


@pytest.fixture
def fresh_twin(upgrade_cluster: EmbeddedCluster) -> str:
    """A fresh install of this release with the same queue."""
    dsn = _recreate(upgrade_cluster, "pgmq_jobs_upgrade_fresh")
    install(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute(QUEUE_SQL)
    return dsn


def schema_dump(cluster: EmbeddedCluster, dsn: str) -> str:
    return normalise_dump(pg_dump_schema(cluster.bin_dir, dsn, *SCHEMAS))


def _one(conn: Connection, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def _claim_one(conn: Connection) -> tuple[int, int]:
    row = conn.execute("select job_id, attempt from pgmq_jobs.claim('up')").fetchone()
    assert row is not None, "nothing to claim"
    return int(row[0]), int(row[1])


def _make_visible(conn: Connection, job_id: int) -> None:
    """Test-only time travel: the job's visibility time becomes now."""
    conn.execute("update pgmq.q_up set vt = clock_timestamp() where msg_id = %s", (job_id,))


def _enqueue(conn: Connection, payload: dict[str, Any], **options: Any) -> int:
    named = "".join(f", {name} => %({name})s" for name in options)
    query = f"select pgmq_jobs.enqueue('up', %(payload)s{named})"
    return int(_one(conn, query, {"payload": json.dumps(payload), **options}))  # type: ignore[arg-type]


def fill_every_state(conn: Connection) -> dict[str, int]:
    """Jobs in every state, through 0.1.0's SQL API only (no Python of this release)."""
    conn.execute(QUEUE_SQL)
    ids: dict[str, int] = {}
    # In flight: claimed with the queue's one-hour visibility timeout.
    ids["in_flight"] = _enqueue(conn, {"k": "in_flight"})
    assert _claim_one(conn) == (ids["in_flight"], 1)
    # Retry-scheduled: failed once, back in an hour.
    ids["retrying"] = _enqueue(conn, {"k": "retrying"})
    assert _claim_one(conn) == (ids["retrying"], 1)
    outcome = conn.execute(
        "select outcome from pgmq_jobs.fail('up', %s, 1, 'first failure')", (ids["retrying"],)
    ).fetchone()
    assert outcome == ("retry",)
    # Dead-lettered, with its error.
    ids["dead"] = _enqueue(conn, {"k": "dead"}, max_attempts=1)
    assert _claim_one(conn) == (ids["dead"], 1)
    outcome = conn.execute(
        "select outcome from pgmq_jobs.fail('up', %s, 1, 'fatal: bad input', permanent => true)",
        (ids["dead"],),
    ).fetchone()
    assert outcome == ("dead",)
    # An ordered group: the head in flight, the next member parked behind it.
    ids["group_head"] = _enqueue(conn, {"k": "g1"}, group_key="g")
    ids["group_next"] = _enqueue(conn, {"k": "g2"}, group_key="g")
    assert _claim_one(conn) == (ids["group_head"], 1)
    # A windowed dedupe key (waiting), a plain waiting job and a delayed one.
    ids["deduped"] = _enqueue(conn, {"k": "dedupe"}, dedupe_key="k1", dedupe_window="1 day")
    ids["waiting"] = _enqueue(conn, {"k": "waiting"})
    ids["delayed"] = _enqueue(conn, {"k": "delayed"}, delay="1 hour")
    # Ready now: the dedupe and waiting jobs only (the group's next member waits for its
    # head; the delayed and retrying jobs for their time). Give them back unstarted.
    claimed = conn.execute("select job_id from pgmq_jobs.claim('up', 10)").fetchall()
    assert sorted(int(r[0]) for r in claimed) == [ids["deduped"], ids["waiting"]]
    conn.execute(
        "select pgmq_jobs.release('up', array[%s, %s]::bigint[], array[1, 1])",
        (ids["deduped"], ids["waiting"]),
    )
    # A schedule (a pg_cron job), audit rows and per-minute history from a sweep.
    conn.execute("select pgmq_jobs.schedule('nightly', '0 3 * * *', 'up', '{\"n\": 1}')")
    conn.execute("select pgmq_jobs.configure_queue('up', max_attempts => 6)")
    conn.execute("select pgmq_jobs.sweep()")
    return ids


def _counts(conn: Connection) -> dict[str, int]:
    return {
        "history": int(_one(conn, "select count(*) from pgmq_jobs.queue_history")),
        "audit": int(_one(conn, "select count(*) from pgmq_jobs.audit_log")),
        "dedupe_keys": int(_one(conn, "select count(*) from pgmq_jobs.dedupe_keys")),
        "queue": int(_one(conn, "select count(*) from pgmq.q_up")),
        "dlq": int(_one(conn, "select count(*) from pgmq.q_up_dlq")),
    }


def test_upgrade_from_the_shipped_0_1_0_equals_a_fresh_install_and_every_job_goes_on(
    upgrade_cluster: EmbeddedCluster, old_db: str, fresh_twin: str
) -> None:
    with psycopg.connect(old_db, autocommit=True) as conn:
        ids = fill_every_state(conn)
        before = _counts(conn)
        cron_before = conn.execute(
            "select jobname, schedule, command from cron.job order by jobname"
        ).fetchall()

    report = install(old_db)

    assert (report.action, report.previous_version, report.version) == (
        "upgraded",
        "0.1.0",
        PACKAGE_VERSION,
    )
    assert report.steps == [f"0.1.0--{PACKAGE_VERSION}"]
    # The 0.1.0 queue's priority index was built concurrently, after the transaction.
    assert report.indexes_built == ["up"]
    assert "priority indexes built concurrently: up" in report.summary()
    upgraded = schema_dump(upgrade_cluster, old_db)
    fresh = schema_dump(upgrade_cluster, fresh_twin)
    assert "CREATE TABLE pgmq.q_up" in fresh
    assert upgraded == fresh, _diff(fresh, upgraded)

    with psycopg.connect(old_db, autocommit=True) as conn:
        assert _counts(conn) == before
        assert (
            conn.execute(
                "select jobname, schedule, command from cron.job order by jobname"
            ).fetchall()
            == cron_before
        )
        assert conn.execute("select name, queue from pgmq_jobs.schedules").fetchall() == [
            ("nightly", "up")
        ]
        versions = conn.execute(
            "select version from pgmq_jobs.schema_version order by installed_at, version"
        ).fetchall()
        assert versions == [("0.1.0",), (PACKAGE_VERSION,)]

        # The in-flight deliveries complete with the attempts they were claimed with.
        done = _one(
            conn,
            "select pgmq_jobs.complete('up', array[%s, %s]::bigint[], array[1, 1])",
            (ids["in_flight"], ids["group_head"]),
        )
        assert done == 2
        # The group's next job is released after its head, with the waiting ones.
        ready = {
            int(r[0]): int(r[1])
            for r in conn.execute("select job_id, attempt from pgmq_jobs.claim('up', 10)")
        }
        assert ready == {ids["group_next"]: 1, ids["deduped"]: 1, ids["waiting"]: 1}
        # The windowed dedupe key still dedupes (its job is in flight now).
        assert (
            _enqueue(conn, {"k": "again"}, dedupe_key="k1", dedupe_window="1 day")
            == (ids["deduped"])
        )
        # The retry keeps its attempt count: its next delivery is attempt 2.
        _make_visible(conn, ids["retrying"])
        assert _claim_one(conn) == (ids["retrying"], 2)
        # The delayed job is still delayed, then runs as a first attempt.
        assert conn.execute("select * from pgmq_jobs.claim('up', 10)").fetchall() == []
        _make_visible(conn, ids["delayed"])
        assert _claim_one(conn) == (ids["delayed"], 1)
        # The dead letter keeps its error and replays.
        [(job_id, errors)] = conn.execute(
            "select original_job_id, errors from pgmq_jobs.dead_letters('up')"
        ).fetchall()
        assert job_id == ids["dead"]
        assert "fatal: bad input" in json.dumps(errors)
        assert _one(conn, "select pgmq_jobs.replay('up')") == 1
        replayed, attempt = _claim_one(conn)
        assert attempt == 1
        payload = _one(conn, "select message from pgmq.q_up where msg_id = %s", (replayed,))
        assert payload == {"k": "dead"}


def test_upgrading_twice_changes_nothing_the_second_time(
    upgrade_cluster: EmbeddedCluster, old_db: str
) -> None:
    with psycopg.connect(old_db, autocommit=True) as conn:
        fill_every_state(conn)
    install(old_db)
    before = schema_dump(upgrade_cluster, old_db)
    with psycopg.connect(old_db) as conn:
        rows_before = _counts(conn)
        functions_before = conn.execute(
            "select oid, xmin::text from pg_proc where pronamespace = 'pgmq_jobs'::regnamespace"
            " order by oid"
        ).fetchall()

    report = install(old_db)

    assert report.action == "unchanged"
    assert report.files == []
    assert "nothing changed" in report.summary()
    assert schema_dump(upgrade_cluster, old_db) == before
    with psycopg.connect(old_db) as conn:
        assert _counts(conn) == rows_before
        functions_after = conn.execute(
            "select oid, xmin::text from pg_proc where pronamespace = 'pgmq_jobs'::regnamespace"
            " order by oid"
        ).fetchall()
    assert functions_after == functions_before, "a function was replaced on the second run"


def test_the_upgrade_step_itself_is_idempotent(
    upgrade_cluster: EmbeddedCluster, old_db: str, fresh_twin: str
) -> None:
    """The Supabase migration runs the step without looking at schema_version: a second run
    of it (then sql/) must leave the schema as a fresh install has it."""
    with psycopg.connect(old_db, autocommit=True) as conn:
        fill_every_state(conn)
    install(old_db)
    step = ROOT / "sql" / "upgrades" / f"0.1.0--{PACKAGE_VERSION}.sql"
    with psycopg.connect(old_db) as conn:
        conn.execute("set local search_path = pg_catalog, pg_temp")
        conn.execute(step.read_text(encoding="utf-8"))  # type: ignore[arg-type]
    assert schema_dump(upgrade_cluster, old_db) == schema_dump(upgrade_cluster, fresh_twin)


def test_a_newer_release_is_refused_and_nothing_changes(
    upgrade_cluster: EmbeddedCluster, fresh_twin: str
) -> None:
    with psycopg.connect(fresh_twin, autocommit=True) as conn:
        conn.execute("insert into pgmq_jobs.schema_version (version) values ('9.1.0')")
        conn.execute("select pgmq_jobs.enqueue('up', '{\"keep\": 1}')")
    before = schema_dump(upgrade_cluster, fresh_twin)

    with pytest.raises(InstallError) as raised:
        install(fresh_twin)

    message = str(raised.value)
    assert "9.1.0" in message and PACKAGE_VERSION in message
    assert "nothing was changed" in message
    assert schema_dump(upgrade_cluster, fresh_twin) == before
    found = status(fresh_twin)
    assert (found.installed, found.up_to_date) == ("9.1.0", False)
    assert "newer release" in found.summary()

    result = subprocess.run(
        [CLI, "install", "--dsn", fresh_twin], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "9.1.0" in result.stderr and PACKAGE_VERSION in result.stderr
    with psycopg.connect(fresh_twin) as conn:
        assert _one(conn, "select count(*) from pgmq.q_up") == 1


def test_install_check_reports_without_changing_anything(
    upgrade_cluster: EmbeddedCluster, old_db: str
) -> None:
    before = schema_dump(upgrade_cluster, old_db)

    pending = subprocess.run(
        [CLI, "install", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGMQ_JOBS_DSN": old_db},
    )

    assert pending.returncode == 1, pending.stderr
    assert "installed: 0.1.0" in pending.stdout
    assert f"package: {PACKAGE_VERSION}" in pending.stdout
    assert f"0.1.0--{PACKAGE_VERSION}" in pending.stdout
    assert schema_dump(upgrade_cluster, old_db) == before

    upgraded = subprocess.run(
        [CLI, "install"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PGMQ_JOBS_DSN": old_db},
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded 0.1.0 -> {PACKAGE_VERSION}" in upgraded.stdout

    current = subprocess.run(
        [CLI, "install", "--check", "--dsn", old_db], capture_output=True, text=True, timeout=60
    )
    assert current.returncode == 0, current.stderr
    assert "status: up to date" in current.stdout


# ---------------------------------------------------------------- workers across an upgrade


def _release_0_1_0_tree(tmp_path: Path) -> Path:
    """The Python package and test apps of the 0.1.0 commit, extracted from git history."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to check out the 0.1.0 worker")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", RELEASE_0_1_0_COMMIT, "runner/pgmq_jobs", "tests"],
        capture_output=True,
        timeout=60,
    )
    if archive.returncode != 0:
        pytest.skip(f"the 0.1.0 commit is not in this clone: {archive.stderr.decode()[:200]}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def _worker(dsn: str, worker_id: str, log: Path, pythonpath: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    env.update(
        PYTHONPATH=pythonpath, FAULT_LEDGER_DSN=dsn, FAULT_QUEUES="ledger", FAULT_SLEEP_CAP="0.05"
    )
    argv = [sys.executable, "-m", "pgmq_jobs.cli", "worker", "--dsn", dsn, "--app"]
    argv += ["apps.fault_app:app", "--queue", "ledger", "--worker-id", worker_id]
    argv += ["--concurrency", "4", "--poll-interval", "0.1"]
    with log.open("wb") as fh:
        return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)


def test_workers_of_0_1_0_and_of_this_release_across_the_upgrade_lose_nothing(
    old_db: str, tmp_path: Path
) -> None:
    """A ledger run: a 0.1.0 worker processes jobs while a producer enqueues and
    `pgmq-jobs install` upgrades the database under them; a worker of this release joins after
    the upgrade. Every acknowledged job ends completed or dead exactly once, and no handler ran
    twice (there is no fault here to excuse a second run)."""
    old_tree = _release_0_1_0_tree(tmp_path / "v0.1.0")
    tests_dir = TESTS_DIR
    with psycopg.connect(old_db, autocommit=True) as conn:
        conn.execute(
            "select pgmq_jobs.create_queue('ledger', max_attempts => 3, retry_base => '50 ms',"
            " jitter => 'none')"
        )
        conn.execute(
            "create table if not exists fault_ledger (exec_id uuid not null, queue text not null,"
            " job_id bigint not null, attempt int not null, event text not null, pid int not null,"
            " at timestamptz not null, primary key (exec_id, event))"
        )

    def payload(n: int) -> dict[str, Any]:
        if n % 10 == 3:
            return {"kind": "parse", "body": "not json"}  # dead at once
        if n % 10 == 7:
            return {"kind": "flaky", "fail_times": 1}  # a retry, then done
        return {"kind": "work", "sleep": 0.01}

    acknowledged: list[int] = []
    stop = threading.Event()
    upgrading, old_stopped = threading.Event(), threading.Event()

    def produce() -> None:
        """400 jobs in batches of 10: jobs 200-299 once the upgrade has started (so enqueues
        run during and after it, for the 0.1.0 worker), 300-399 once the 0.1.0 worker is gone
        (so the worker of this release has work of its own)."""
        with psycopg.connect(old_db, autocommit=True) as conn:
            n = 0
            while n < 400 and not stop.is_set():
                if n == 200:
                    upgrading.wait(timeout=60)
                if n == 300:
                    old_stopped.wait(timeout=60)
                rows = conn.execute(
                    "select * from pgmq_jobs.enqueue_batch('ledger', %s::jsonb[])",
                    ([json.dumps(payload(n + i)) for i in range(10)],),
                ).fetchall()
                acknowledged.extend(int(r[0]) for r in rows)
                n += 10
                time.sleep(0.01)

    def ran_after(conn: Connection, pid: int, since: Any) -> int:
        return int(
            _one(
                conn,
                "select count(*) from fault_ledger where pid = %s and event = 'done' and at > %s",
                (pid, since),
            )
        )

    old_path = os.pathsep.join([str(old_tree / "runner"), str(old_tree / "tests")])
    old_worker = _worker(old_db, "w-0.1.0", tmp_path / "old.log", old_path)
    producer = threading.Thread(target=produce, daemon=True)
    new_worker: subprocess.Popen[bytes] | None = None
    try:
        producer.start()
        with psycopg.connect(old_db, autocommit=True) as conn:
            wait_for(
                lambda: _one(conn, "select count(*) from pgmq.a_ledger") >= 50,
                timeout=60,
                what="the 0.1.0 worker to complete 50 jobs",
            )
            upgrading.set()
            upgrade = subprocess.run(
                [CLI, "install", "--dsn", old_db], capture_output=True, text=True, timeout=120
            )
            assert upgrade.returncode == 0, upgrade.stderr
            assert f"upgraded 0.1.0 -> {PACKAGE_VERSION}" in upgrade.stdout
            upgraded_at = _one(conn, "select clock_timestamp()")
            # The 0.1.0 worker keeps working on the upgraded database...
            wait_for(
                lambda: ran_after(conn, old_worker.pid, upgraded_at) >= 20,
                timeout=60,
                what="the 0.1.0 worker to complete jobs after the upgrade",
            )
            # ...and stops cleanly (its unstarted jobs given back), as a rolling deploy does.
            old_worker.send_signal(signal.SIGTERM)
            assert old_worker.wait(timeout=60) == 0, (tmp_path / "old.log").read_text()[-2000:]
            new_worker = _worker(old_db, "w-new", tmp_path / "new.log", str(tests_dir))
            old_stopped.set()
            producer.join(timeout=120)
            assert not producer.is_alive()
            total = len(acknowledged)
            wait_for(
                lambda: (
                    _one(
                        conn,
                        "select (select count(*) from pgmq.a_ledger)"
                        " + (select count(*) from pgmq.q_ledger_dlq)",
                    )
                    >= total
                ),
                timeout=120,
                what=f"all {total} jobs to finish",
            )
            assert new_worker.poll() is None, (tmp_path / "new.log").read_text()[-2000:]
            new_ran = ran_after(conn, new_worker.pid, upgraded_at)
            report = check(conn, "ledger", acknowledged, scenario="upgrade 0.1.0 -> current")
    finally:
        stop.set()
        upgrading.set()
        old_stopped.set()
        for proc in (old_worker, new_worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert report.violations() == [], report.table()
    assert report.duplicated == set(), report.table()
    assert len(report.completed) + len(report.dead) == report.jobs == 400
    assert len(report.dead) == 40
    assert new_ran >= 50, "the worker of this release did not take over"


def _diff(expected: str, actual: str) -> str:
    import difflib

    return "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile="fresh install",
            tofile="upgraded from 0.1.0",
            n=2,
        )
    )[:8000]


def _run_worker_briefly(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    env["PYTHONPATH"] = str(TESTS_DIR)
    env["LEDGER_DSN"], env["LEDGER_QUEUES"] = dsn, "up"
    argv = [CLI, "worker", "--dsn", dsn, "--app", "apps.ledger_app:app", "--queue", "up"]
    return subprocess.run(
        [*argv, "--drain", "--max-seconds", "5", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_worker_of_this_release_refuses_a_0_1_0_database_naming_both(old_db: str) -> None:
    with psycopg.connect(old_db, autocommit=True) as conn:
        conn.execute(QUEUE_SQL)
        conn.execute("select pgmq_jobs.enqueue('up', '{}')")

    result = _run_worker_briefly(old_db)

    assert result.returncode == 1, result.stderr
    assert "pgmq-jobs install" in result.stderr
    with psycopg.connect(old_db) as conn:
        assert _one(conn, "select count(*) from pgmq.q_up where read_ct = 0") == 1


def test_a_worker_warns_of_a_newer_compatible_database_and_works(
    fresh_twin: str,
) -> None:
    with psycopg.connect(fresh_twin, autocommit=True) as conn:
        # A later release that still serves this one (schema_info's oldest_client).
        conn.execute("insert into pgmq_jobs.schema_version (version) values ('9.0.0')")
        conn.execute(LEDGER_DDL)
        conn.execute("select pgmq_jobs.enqueue('up', '{}')")

    result = _run_worker_briefly(fresh_twin)

    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "9.0.0" in result.stderr
    assert PACKAGE_VERSION in result.stderr
    with psycopg.connect(fresh_twin) as conn:
        assert _one(conn, "select count(*) from pgmq.a_up") == 1


HANDLER_JOB = "select command from cron.job where jobname = 'pgmq_jobs_process_handled'"


def test_the_upgrade_moves_handler_jobs_off_the_drain_procedure(old_db: str) -> None:
    """0.1.0's pg_cron job of a queue with a SQL handler called the drain procedure, which
    0.2.0 keeps only to say it is gone: the upgrade rewrites the job to the DO block."""
    with psycopg.connect(old_db, autocommit=True) as conn:
        conn.execute("create schema app")
        conn.execute(
            "create function app.handle(payload jsonb) returns void language sql"
            " security definer set search_path = pg_catalog as 'select'"
        )
        conn.execute("select pgmq_jobs.create_queue('handled', handler => 'app.handle')")
        before = _one(conn, HANDLER_JOB)
        assert before == "call pgmq_jobs.drain('handled', 55)"

    install(old_db)

    with psycopg.connect(old_db, autocommit=True) as conn:
        after = _one(conn, HANDLER_JOB)
        assert after == _one(conn, "select pgmq_jobs._drain_command('handled', 55)")
        conn.execute("select pgmq_jobs.enqueue('handled', '{}')")
        conn.execute(after.replace("'55'::double precision", "'0.2'::double precision"))
        assert _one(conn, "select count(*) from pgmq.a_handled") == 1
