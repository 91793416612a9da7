"""Install PGMQ (if missing), pg_cron (where allowed) and pgmq-jobs' ``sql/`` into a database.

Idempotent: every ``sql/`` file is written to be re-run, an existing ``pgmq`` schema is used
as it is, and a transaction-level advisory lock serialises concurrent installs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString, cast

import psycopg

from pgmq_jobs.paths import pgmq_sql_path, pgmq_sql_version, sql_dir

if TYPE_CHECKING:
    from pgmq_jobs.plpython import PlpythonResult

# Arbitrary constant key for pg_advisory_xact_lock: "pgmq_jobs" install.
INSTALL_LOCK_KEY = 0x70676D715F6A6F62

PG_CRON_ABSENT_NOTE = (
    "pg_cron is not available in this database (it is not installed on the server, not in "
    "shared_preload_libraries, or cron.database_name names another database); run "
    "`pgmq-jobs sweep` periodically instead"
)

Connection = psycopg.Connection[Any]


class InstallError(RuntimeError):
    """Applying one of the SQL sources failed; ``source`` names it."""

    def __init__(self, source: str, error: Exception) -> None:
        super().__init__(f"installing {source} failed: {error}")
        self.source = source


@dataclass
class InstallReport:
    """What :func:`install` found and did."""

    pgmq_source: str  # "existing" | "extension" | "pypi-sql"
    pgmq_version: str | None
    pg_cron: bool
    pg_cron_created: bool
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # None: not asked for (--with-plpython); else whether pgmq_jobs_plpy was installed.
    plpython: bool | None = None

    def summary(self) -> str:
        version = f" {self.pgmq_version}" if self.pgmq_version else ""
        lines = [
            f"pgmq: {self.pgmq_source}{version}",
            "pg_cron: "
            + ("yes (created now)" if self.pg_cron_created else "yes" if self.pg_cron else "no"),
            f"sql files applied ({len(self.files)}): {', '.join(self.files) or '-'}",
        ]
        if self.plpython is not None:
            lines.append(f"plpython: {'yes (pgmq_jobs_plpy)' if self.plpython else 'no'}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def sql_files(directory: Path | None = None) -> list[Path]:
    """Every ``*.sql`` file of ``sql/`` in lexical filename order."""
    base = directory if directory is not None else sql_dir()
    return sorted((p for p in base.glob("*.sql") if p.is_file()), key=lambda p: p.name)


def schema_sql(directory: Path | None = None) -> str:
    """All ``sql/`` files concatenated in order, each preceded by a header naming it."""
    parts: list[str] = []
    for path in sql_files(directory):
        body = path.read_text(encoding="utf-8").rstrip("\n")
        parts.append(f"-- {'=' * 70}\n-- sql/{path.name}\n-- {'=' * 70}\n{body}\n")
    return "\n".join(parts)


def _execute_script(conn: Connection, text: str) -> None:
    """Run a multi-statement script (simple query protocol: no parameters)."""
    conn.execute(cast(LiteralString, text))


def _scalar(conn: Connection, query: LiteralString, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _installed_extension_version(conn: Connection, name: str) -> str | None:
    return cast(
        "str | None",
        _scalar(conn, "select extversion from pg_extension where extname = %s", (name,)),
    )


def _extension_available(conn: Connection, name: str) -> bool:
    return bool(
        _scalar(
            conn, "select exists(select 1 from pg_available_extensions where name = %s)", (name,)
        )
    )


def _schema_exists(conn: Connection, name: str) -> bool:
    return bool(
        _scalar(conn, "select exists(select 1 from pg_namespace where nspname = %s)", (name,))
    )


def _ensure_pgmq(conn: Connection) -> tuple[str, str | None]:
    if _schema_exists(conn, "pgmq"):
        version = _installed_extension_version(conn, "pgmq")
        return "existing", version
    if _extension_available(conn, "pgmq"):
        conn.execute("create extension if not exists pgmq")
        return "extension", _installed_extension_version(conn, "pgmq")
    _execute_script(conn, pgmq_sql_path().read_text(encoding="utf-8"))
    return "pypi-sql", pgmq_sql_version()


def pg_cron_allowed(conn: Connection) -> bool:
    """pg_cron can be created here: available, and this is cron.database_name's database."""
    return bool(
        _scalar(
            conn,
            "select exists(select 1 from pg_available_extensions where name = 'pg_cron')"
            " and current_database() = current_setting('cron.database_name', true)",
        )
    )


def _ensure_pg_cron(conn: Connection) -> tuple[bool, bool]:
    """(pg_cron present afterwards, created by this call)."""
    if _installed_extension_version(conn, "pg_cron") is not None:
        return True, False
    if pg_cron_allowed(conn):
        conn.execute("create extension if not exists pg_cron")
        return True, True
    return False, False


@contextmanager
def _connection(target: str | Connection) -> Iterator[Connection]:
    if isinstance(target, str):
        with psycopg.connect(target) as conn:
            yield conn
    else:
        yield target


def install(
    target: str | Connection, directory: Path | None = None, with_plpython: bool = False
) -> InstallReport:
    """Install into the database at ``target`` (a DSN or an open psycopg connection).

    Everything happens in one transaction (a savepoint if ``target`` is already inside one).
    ``with_plpython``: afterwards, where the server offers plpython3u, create it and the
    optional ``pgmq_jobs_plpy`` functions (``plpy/``); elsewhere one note says it was skipped.
    """
    files = sql_files(directory)
    plpy_result: PlpythonResult | None = None
    with _connection(target) as conn, conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (INSTALL_LOCK_KEY,))
        try:
            source, version = _ensure_pgmq(conn)
        except psycopg.Error as exc:
            raise InstallError("PGMQ", exc) from exc
        cron_present, cron_created = _ensure_pg_cron(conn)
        for path in files:
            try:
                _execute_script(conn, path.read_text(encoding="utf-8"))
            except psycopg.Error as exc:
                raise InstallError(f"sql/{path.name}", exc) from exc
        if with_plpython:
            from pgmq_jobs.plpython import install_plpython

            try:
                plpy_result = install_plpython(conn)
            except psycopg.Error as exc:
                raise InstallError("PL/Python support (plpy/)", exc) from exc
    report = InstallReport(
        pgmq_source=source,
        pgmq_version=version,
        pg_cron=cron_present,
        pg_cron_created=cron_created,
        files=[p.name for p in files],
        plpython=plpy_result.installed if plpy_result is not None else None,
    )
    if not cron_present:
        report.notes.append(PG_CRON_ABSENT_NOTE)
    if not files:
        report.notes.append(f"no sql files found in {directory or sql_dir()}")
    if plpy_result is not None:
        report.notes.extend(plpy_result.notes)
    return report
