"""install(): fresh databases, idempotence, an existing pgmq schema, concurrency, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbutil import normalise_dump, pg_dump_schema
from pgmq_jobs.ops.install import (
    PG_CRON_ABSENT_NOTE,
    InstallError,
    InstallReport,
    install,
    schema_sql,
    sql_files,
)
from pgmq_jobs.ops.paths import SQL_DIR_ENV, pgmq_sql_path

SCHEMAS = ("pgmq", "pgmq_jobs")

# Relations must survive a re-install (same OID): a dropped and recreated table loses data.
_RELATION_OIDS = """
select n.nspname || '.' || c.relname || ':' || c.relkind::text, c.oid::bigint
from pg_class as c
join pg_namespace as n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p', 'S', 'i', 'I')
order by 1
"""

_FUNCTION_OIDS = """
select p.oid::regprocedure::text, p.oid::bigint
from pg_proc as p
join pg_namespace as n on n.oid = p.pronamespace
where n.nspname = any(%s)
order by 1
"""


def _rows(dsn: str, query: str, schemas: tuple[str, ...]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {str(k): int(v) for k, v in conn.execute(query, (list(schemas),)).fetchall()}


def _snapshot(pg_bin_dir: Path, dsn: str, schemas: tuple[str, ...] = SCHEMAS) -> dict[str, Any]:
    return {
        "dump": normalise_dump(pg_dump_schema(pg_bin_dir, dsn, *schemas)),
        "relations": _rows(dsn, _RELATION_OIDS, schemas),
        "functions": _rows(dsn, _FUNCTION_OIDS, schemas),
    }


def _load_pgmq_sql(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(pgmq_sql_path().read_text(encoding="utf-8"))  # type: ignore[arg-type]


def test_install_on_empty_database(empty_db: Callable[[], str]) -> None:
    dsn = empty_db()
    report = install(dsn)

    assert isinstance(report, InstallReport)
    assert report.pgmq_source in {"extension", "pypi-sql"}
    assert report.files == [p.name for p in sql_files()]
    assert report.files, "sql/ is empty"
    with psycopg.connect(dsn) as conn:
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace").fetchall()}
        assert {"pgmq", "pgmq_jobs"} <= schemas
        assert conn.execute(
            "select exists(select from pg_proc"
            " where proname = 'send' and pronamespace = 'pgmq'::regnamespace)"
        ).fetchone() == (True,)
        functions = conn.execute(
            "select count(*) from pg_proc where pronamespace = 'pgmq_jobs'::regnamespace"
        ).fetchone()
        assert functions is not None and functions[0] > 0


def test_pg_cron_absent_is_reported_once(empty_db: Callable[[], str]) -> None:
    """A database other than cron.database_name gets no pg_cron, and the report says so."""
    report = install(empty_db())
    assert report.pg_cron is False
    assert report.notes.count(PG_CRON_ABSENT_NOTE) == 1
    assert "pgmq-jobs sweep" in report.summary()


def test_second_install_changes_nothing(empty_db: Callable[[], str], pg_bin_dir: Path) -> None:
    dsn = empty_db()
    install(dsn)
    before = _snapshot(pg_bin_dir, dsn)

    report = install(dsn)

    assert report.pgmq_source == "existing"
    after = _snapshot(pg_bin_dir, dsn)
    assert after["relations"] == before["relations"]
    assert after["functions"] == before["functions"]
    assert after["dump"] == before["dump"]


def test_existing_pgmq_schema_is_left_untouched(
    empty_db: Callable[[], str], pg_bin_dir: Path
) -> None:
    """An existing pgmq (here: plain SQL, locally modified) is used as it is, never reloaded."""
    dsn = empty_db()
    _load_pgmq_sql(dsn)
    with psycopg.connect(dsn) as conn:
        # Mark a PGMQ function body and add an object of our own: re-running PGMQ's SQL
        # would restore the body; replacing the schema would drop the extra object.
        definition = conn.execute(
            "select pg_get_functiondef('pgmq.list_queues()'::regprocedure)"
        ).fetchone()
        assert definition is not None
        marked = str(definition[0]).replace(
            "AS $function$", "AS $function$\n-- locally modified marker\n", 1
        )
        assert marked != definition[0]
        conn.execute(marked)  # type: ignore[arg-type]
        conn.execute("create table pgmq.local_extra (id int primary key)")
        conn.execute("comment on schema pgmq is 'pre-existing pgmq'")
    before = _snapshot(pg_bin_dir, dsn, ("pgmq",))

    report = install(dsn)

    assert report.pgmq_source == "existing"
    after = _snapshot(pg_bin_dir, dsn, ("pgmq",))
    assert "locally modified marker" in after["dump"]
    assert after == before


def test_concurrent_installs_serialise(empty_db: Callable[[], str]) -> None:
    dsn = empty_db()
    reports: list[InstallReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(install(dsn))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(reports) == 3
    sources = sorted(r.pgmq_source for r in reports)
    assert sources.count("existing") == 2, sources


def test_install_into_open_transaction_connection(empty_db: Callable[[], str]) -> None:
    """On a connection already inside a transaction, install() joins it (a savepoint)."""
    dsn = empty_db()
    with psycopg.connect(dsn) as conn:
        conn.execute("select 1")  # opens the caller's transaction
        install(conn)
        conn.rollback()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select to_regnamespace('pgmq_jobs') is null").fetchone()
    assert row == (True,)


def test_cli_install(empty_db: Callable[[], str]) -> None:
    dsn = empty_db()
    result = subprocess.run(
        [sys.executable, "-m", "pgmq_jobs.cli", "install", "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pgmq: pypi-sql" in result.stdout or "pgmq: extension" in result.stdout
    assert "sql files applied" in result.stdout


def test_shared_test_database_has_pg_cron(conn: psycopg.Connection[Any]) -> None:
    """The embedded cluster names pgmq_jobs_test as cron.database_name, so db_dsn gets pg_cron."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("external server: pg_cron depends on its configuration")
    preload = conn.execute("select current_setting('shared_preload_libraries')").fetchone()
    if preload is None or "pg_cron" not in str(preload[0]):
        pytest.skip("pg_cron is not installed for this PostgreSQL")
    row = conn.execute("select exists(select from pg_extension where extname = 'pg_cron')")
    assert row.fetchone() == (True,)


def test_failing_sql_file_is_named_and_nothing_is_left(
    empty_db: Callable[[], str], tmp_path: Path
) -> None:
    (tmp_path / "010_ok.sql").write_text("create schema if not exists pgmq_jobs;\n")
    (tmp_path / "020_broken.sql").write_text("select * from no_such_table;\n")
    dsn = empty_db()
    with pytest.raises(InstallError, match=r"sql/020_broken\.sql.*no_such_table"):
        install(dsn, tmp_path)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select to_regnamespace('pgmq') is null and to_regnamespace('pgmq_jobs') is null"
        ).fetchone()
    assert row == (True,), "a failed install must roll back entirely"


def test_sql_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "b.sql").write_text("select 2;\n")
    (tmp_path / "a.sql").write_text("select 1;\n")
    (tmp_path / "notes.txt").write_text("ignored\n")
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    assert [p.name for p in sql_files()] == ["a.sql", "b.sql"]
    text = schema_sql()
    assert text.index("-- sql/a.sql") < text.index("select 1;") < text.index("-- sql/b.sql")
