"""Shared fixtures: one PostgreSQL server per test session, databases cloned from a template.

The server is a throwaway :class:`~pgmq_jobs.ops.cluster.EmbeddedCluster` (durability off for
speed) unless ``DATABASE_URL`` points at an existing server (its database is only used to
reach the server; the tests create and drop their own databases there).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgmq_jobs.ops.cluster import EmbeddedCluster, find_bin_dir
from pgmq_jobs.ops.install import install

TEMPLATE_DB = "pgmq_jobs_tpl"
TEST_DB = "pgmq_jobs_test"

FAST_SETTINGS: dict[str, str | int | bool] = {
    "fsync": False,
    "synchronous_commit": False,
    "full_page_writes": False,
    # pg_cron lives in the shared test database, so schedule/sweep tests can use it.
    "cron.database_name": TEST_DB,
}

# The same, for a container (pg_cron's database is given with the preload by the container).
FAST_SETTINGS_SERVER = {k: v for k, v in FAST_SETTINGS.items() if k != "cron.database_name"}

Connection = psycopg.Connection[Any]


def dsn_for(server_dsn: str, dbname: str) -> str:
    """``server_dsn`` with its database replaced by ``dbname``."""
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def _drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def _create_database(admin_dsn: str, name: str, template: str | None = None) -> str:
    stmt = sql.SQL("create database {}").format(sql.Identifier(name))
    if template is not None:
        stmt = sql.SQL("{} template {}").format(stmt, sql.Identifier(template))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(stmt)
    return dsn_for(admin_dsn, name)


@pytest.fixture(scope="session")
def pg_bin_dir() -> Path:
    """Directory of the PostgreSQL client/server binaries (pg_dump, psql, ...)."""
    return find_bin_dir()


_SERVER_LINE: list[str] = []  # how the session's server was started: one summary line


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _SERVER_LINE:
        terminalreporter.write_line(f"pgmq-jobs: {line}")


@pytest.fixture(scope="session")
def server_line(cluster_dsn: str) -> str:
    """The one line the test summary prints about how the session's server was started."""
    [line] = _SERVER_LINE
    return line


@pytest.fixture(scope="session")
def cluster_dsn() -> Iterator[str]:
    """DSN of the ``postgres`` admin database of the session's server.

    ``DATABASE_URL``'s server, else an embedded cluster from the local binaries, else (where
    a Docker engine exists and no local binaries do) a testcontainers container with pg_cron
    (:mod:`pgmq_jobs.ops.container`); the test summary says in one line which it was."""
    external = os.environ.get("DATABASE_URL")
    if external:
        _SERVER_LINE.append("PostgreSQL from DATABASE_URL (local binaries and Docker unused)")
        yield dsn_for(external, "postgres")
        return
    from pgmq_jobs.ops.container import ContainerSpec, choose_server, running_container

    choice = choose_server()
    _SERVER_LINE.append(choice.line)
    if choice.kind == "container":
        spec = ContainerSpec.from_env(TEST_DB, settings=FAST_SETTINGS_SERVER)
        with running_container(spec) as dsn:
            yield dsn
        return
    if choice.kind == "none":
        pytest.exit(choice.line, returncode=2)
    # Under /tmp and world-traversable, so the postgres OS user can reach it as well.
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-test-"))
    os.chmod(base, 0o755)
    cluster = EmbeddedCluster(base / "data", settings=FAST_SETTINGS, quiet=True)
    cluster.start()
    try:
        yield cluster.dsn("postgres")
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(cluster_dsn: str) -> Iterator[str]:
    """Name of the template database: PGMQ (PyPI SQL or extension) + sql/ installed."""
    _drop_database(cluster_dsn, TEMPLATE_DB)
    dsn = _create_database(cluster_dsn, TEMPLATE_DB)
    install(dsn)
    yield TEMPLATE_DB
    _drop_database(cluster_dsn, TEMPLATE_DB)


@pytest.fixture(scope="session")
def db_dsn(cluster_dsn: str, template_db: str) -> Iterator[str]:
    """DSN of ``pgmq_jobs_test``, cloned from the template and shared by most tests.

    install() runs once more on it, which adds pg_cron where this database is the
    server's cron.database_name (the embedded cluster's is).
    """
    _drop_database(cluster_dsn, TEST_DB)
    dsn = _create_database(cluster_dsn, TEST_DB, template=template_db)
    install(dsn)
    yield dsn
    _drop_database(cluster_dsn, TEST_DB)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[Connection]:
    """An autocommit connection to ``db_dsn``, closed after the test."""
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def connect(db_dsn: str) -> Iterator[Callable[..., Connection]]:
    """Factory: ``connect(**kwargs)`` opens a new connection to ``db_dsn``.

    kwargs go to ``psycopg.connect`` (e.g. ``autocommit=True``); all are closed at teardown.
    """
    opened: list[Connection] = []

    def _connect(**kwargs: Any) -> Connection:
        connection = psycopg.connect(db_dsn, **kwargs)
        opened.append(connection)
        return connection

    yield _connect
    for connection in opened:
        connection.close()


@pytest.fixture
def queue_name() -> str:
    """A unique queue name ``t_<8 hex>`` (the queue is not created)."""
    return f"t_{uuid.uuid4().hex[:8]}"


def _unique_db(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def _session_databases(cluster_dsn: str) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for name in created:
        _drop_database(cluster_dsn, name)


@pytest.fixture
def fresh_db(
    cluster_dsn: str, template_db: str, _session_databases: list[str]
) -> Callable[[], str]:
    """Factory: a new database cloned from the template; returns its DSN.

    Databases are dropped at session end."""

    def _fresh() -> str:
        name = _unique_db("pgmq_jobs_fresh")
        _session_databases.append(name)
        return _create_database(cluster_dsn, name, template=template_db)

    return _fresh


@pytest.fixture
def empty_db(cluster_dsn: str, _session_databases: list[str]) -> Callable[[], str]:
    """Factory: a brand-new database with nothing installed; returns its DSN."""

    def _empty() -> str:
        name = _unique_db("pgmq_jobs_empty")
        _session_databases.append(name)
        return _create_database(cluster_dsn, name, template="template0")

    return _empty


@pytest.fixture(params=["plain", "partitioned"])
def both_queue_kinds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: on plain queues, then on PGMQ partitioned queues (pg_partman).

    Lifecycle test modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``; every
    ``pgmq_jobs.client.create_queue`` call in the test then makes the queue of that kind.
    """
    if request.param == "partitioned":
        import pgmq_jobs.client as client

        original = client.create_queue

        def create_partitioned(conn: Connection, queue: str, **settings: Any) -> bool:
            settings.setdefault("partitioned", True)
            settings.setdefault("partition_interval", "1000")
            settings.setdefault("retention_interval", "100000")
            return original(conn, queue, **settings)

        monkeypatch.setattr(client, "create_queue", create_partitioned)
    return str(request.param)
