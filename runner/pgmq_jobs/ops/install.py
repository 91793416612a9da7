"""Install PGMQ (if missing), pg_cron (where allowed) and pgmq-jobs' ``sql/`` into a database,
or upgrade a database of an earlier release.

By the database's release (the newest of ``pgmq_jobs.schema_version``):

- none: a fresh install applies every ``sql/`` file;
- older: every upgrade step from it to this package's release (``sql/upgrades/``) runs in
  order, then the ``sql/`` files are applied again;
- the same: nothing changes (unless pg_cron was created by this call: then the ``sql/`` files
  are applied again so that the project's pg_cron jobs are registered);
- newer: refused, naming both releases, and nothing changes.

All in one transaction under a transaction-level advisory lock (concurrent installs
serialise), with ``search_path`` set to ``pg_catalog, pg_temp``: an object planted in a
schema of the caller's path never runs during install. An existing ``pgmq`` schema is used
as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString, cast

import psycopg

from pgmq_jobs.api import ops
from pgmq_jobs.api.sync import run
from pgmq_jobs.ops.paths import pgmq_sql_path, pgmq_sql_version, sql_dir
from pgmq_jobs.ops.versions import (
    PACKAGE_VERSION,
    Step,
    VersionError,
    installed_version,
    parse,
    upgrade_path,
    upgrade_steps,
)

if TYPE_CHECKING:
    from pgmq_jobs.ops.plpython import PlpythonResult

# Arbitrary constant key for pg_advisory_xact_lock: "pgmq_jobs" install.
INSTALL_LOCK_KEY = 0x70676D715F6A6F62

PG_CRON_ABSENT_NOTE = (
    "pg_cron is not available in this database (it is not installed on the server, not in "
    "shared_preload_libraries, or cron.database_name names another database); run "
    "`pgmq-jobs sweep` periodically instead"
)

Connection = psycopg.Connection[Any]


# The path install, upgrades and the Supabase migrations run under (DESIGN.md, Security model).
PINNED_SEARCH_PATH = "pg_catalog, pg_temp"


class InstallError(RuntimeError):
    """Applying one of the SQL sources failed, or the database is of a newer release;
    ``source`` names the part."""

    def __init__(self, source: str, error: Exception) -> None:
        if isinstance(error, VersionError):
            super().__init__(str(error))
        else:
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
    # "installed" | "upgraded" | "unchanged" | "reapplied"
    action: str = "installed"
    previous_version: str | None = None
    version: str = PACKAGE_VERSION
    steps: list[str] = field(default_factory=list)
    # Queues whose priority index was built concurrently after the transaction.
    indexes_built: list[str] = field(default_factory=list)

    def schema_line(self) -> str:
        if self.action == "installed":
            return f"pgmq-jobs: {self.version} installed"
        if self.action == "upgraded":
            return (
                f"pgmq-jobs: upgraded {self.previous_version} -> {self.version} "
                f"(steps: {', '.join(self.steps)})"
            )
        if self.action == "reapplied":
            return f"pgmq-jobs: {self.version} already installed; sql files applied again"
        return f"pgmq-jobs: {self.version} already installed; nothing changed"

    def summary(self) -> str:
        version = f" {self.pgmq_version}" if self.pgmq_version else ""
        lines = [
            self.schema_line(),
            f"pgmq: {self.pgmq_source}{version}",
            "pg_cron: "
            + ("yes (created now)" if self.pg_cron_created else "yes" if self.pg_cron else "no"),
            f"sql files applied ({len(self.files)}): {', '.join(self.files) or '-'}",
        ]
        if self.indexes_built:
            lines.append("priority indexes built concurrently: " + ", ".join(self.indexes_built))
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


def _ensure_pgmq(conn: Connection) -> tuple[str, str | None]:
    if run(conn, ops.schema_exists("pgmq")):
        return "existing", run(conn, ops.extension_version("pgmq"))
    if run(conn, ops.extension_available("pgmq")):
        run(conn, ops.create_extension("pgmq"))
        return "extension", run(conn, ops.extension_version("pgmq"))
    _execute_script(conn, pgmq_sql_path().read_text(encoding="utf-8"))
    return "pypi-sql", pgmq_sql_version()


def pg_cron_allowed(conn: Connection) -> bool:
    """pg_cron can be created here: available, and this is cron.database_name's database."""
    return run(conn, ops.pg_cron_allowed())


def _ensure_pg_cron(conn: Connection) -> tuple[bool, bool]:
    """(pg_cron present afterwards, created by this call)."""
    if run(conn, ops.extension_version("pg_cron")) is not None:
        return True, False
    if pg_cron_allowed(conn):
        run(conn, ops.create_extension("pg_cron"))
        return True, True
    return False, False


@contextmanager
def _connection(target: str | Connection) -> Iterator[Connection]:
    if isinstance(target, str):
        with psycopg.connect(target) as conn:
            yield conn
    else:
        yield target


def upgrades_dir(directory: Path | None = None) -> Path:
    """``sql/upgrades`` beside the ``sql/`` files in use."""
    return (directory if directory is not None else sql_dir()) / "upgrades"


@contextmanager
def _pinned_search_path(conn: Connection) -> Iterator[None]:
    """``search_path`` = :data:`PINNED_SEARCH_PATH` inside, the caller's again afterwards."""
    previous = run(conn, ops.setting("search_path")) or ""
    run(conn, ops.set_local("search_path", PINNED_SEARCH_PATH))
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            run(conn, ops.set_local("search_path", previous))


def _apply(conn: Connection, source: str, path: Path) -> None:
    try:
        _execute_script(conn, path.read_text(encoding="utf-8"))
    except psycopg.Error as exc:
        raise InstallError(source, exc) from exc


def _build_deferred_indexes(conn: Connection) -> list[str]:
    """Build, concurrently and outside any transaction, the priority index of every queue
    whose upgrade left it for later; claims go on meanwhile (by visibility time). Returns
    the queues done. A build that fails leaves an invalid index: it is dropped and the
    error raised (the next ``pgmq-jobs install`` tries again)."""
    conn.autocommit = True
    if not run(conn, ops.function_exists("pgmq_jobs._finish_priority_index(text)")):
        return []
    built: list[str] = []
    for queue, statement in run(conn, ops.pending_priority_indexes()):
        try:
            _execute_script(conn, statement)
            finished = run(conn, ops.finish_priority_index(queue))
        except psycopg.Error as exc:
            raise InstallError(f"the priority index of queue {queue}", exc) from exc
        if not finished:
            run(conn, ops.drop_index_concurrently("pgmq", f"q_{queue}_priority_vt"))
            raise InstallError(
                f"the priority index of queue {queue}",
                RuntimeError("the concurrent build left an invalid index (dropped); run again"),
            )
        built.append(str(queue))
    return built


def _plan(
    installed: str | None, directory: Path | None, cron_created: bool
) -> tuple[str, list[Step]]:
    """(action, upgrade steps) for a database of release ``installed``."""
    if installed is None:
        return "installed", []
    try:
        steps = upgrade_path(installed, PACKAGE_VERSION, upgrade_steps(upgrades_dir(directory)))
    except VersionError as exc:
        raise InstallError("pgmq_jobs.schema_version", exc) from exc
    if steps:
        return "upgraded", steps
    return ("reapplied" if cron_created else "unchanged"), []


def install(
    target: str | Connection, directory: Path | None = None, with_plpython: bool = False
) -> InstallReport:
    """Install into (or upgrade) the database at ``target`` (a DSN or an open connection).

    Everything happens in one transaction (a savepoint if ``target`` is already inside one).
    ``with_plpython``: afterwards, where the server offers plpython3u, create it and the
    optional ``pgmq_jobs_plpy`` functions (``plpy/``); elsewhere one note says it was skipped.
    """
    files = sql_files(directory)
    plpy_result: PlpythonResult | None = None
    applied: list[str] = []
    # With a connection of its own, an upgrade leaves deep queues' new indexes to be built
    # concurrently after its transaction (a plain build would block claims meanwhile).
    defer = isinstance(target, str)
    with _connection(target) as conn:
        with conn.transaction(), _pinned_search_path(conn):
            run(conn, ops.transaction_lock(INSTALL_LOCK_KEY))
            try:
                source, version = _ensure_pgmq(conn)
            except psycopg.Error as exc:
                raise InstallError("PGMQ", exc) from exc
            cron_present, cron_created = _ensure_pg_cron(conn)
            previous = installed_version(conn)
            action, steps = _plan(previous, directory, cron_created)
            if defer:
                run(conn, ops.set_local("pgmq_jobs.defer_priority_index", "on"))
            for step in steps:
                _apply(conn, f"sql/upgrades/{step.path.name}", step.path)
            if action != "unchanged":
                for path in files:
                    _apply(conn, f"sql/{path.name}", path)
                applied = [p.name for p in files]
            if with_plpython:
                from pgmq_jobs.ops.plpython import install_plpython

                try:
                    plpy_result = install_plpython(conn)
                except psycopg.Error as exc:
                    raise InstallError("PL/Python support (plpy/)", exc) from exc
        built = _build_deferred_indexes(conn) if defer else []
    report = InstallReport(
        pgmq_source=source,
        pgmq_version=version,
        pg_cron=cron_present,
        pg_cron_created=cron_created,
        files=applied,
        plpython=plpy_result.installed if plpy_result is not None else None,
        action=action,
        previous_version=previous,
        steps=[step.name for step in steps],
        indexes_built=built,
    )
    if not cron_present:
        report.notes.append(PG_CRON_ABSENT_NOTE)
    if not files:
        report.notes.append(f"no sql files found in {directory or sql_dir()}")
    if plpy_result is not None:
        report.notes.extend(plpy_result.notes)
    return report


@dataclass
class InstallStatus:
    """What :func:`status` read: the database's release against this package's."""

    installed: str | None
    package: str
    pending: list[str]

    @property
    def up_to_date(self) -> bool:
        return self.installed is not None and parse(self.installed) == parse(self.package)

    def summary(self) -> str:
        lines = [
            f"installed: {self.installed or 'none'}",
            f"package: {self.package}",
        ]
        if self.installed is None:
            lines.append("status: not installed; `pgmq-jobs install` installs it")
        elif self.up_to_date:
            lines.append("status: up to date")
        elif parse(self.installed) > parse(self.package):
            lines.append(
                f"status: the database is of a newer release ({self.installed}) than this "
                f"package ({self.package}); upgrade the package"
            )
        else:
            lines.append(
                f"status: upgrade pending; `pgmq-jobs install` applies "
                f"{', '.join(self.pending) or '(no step found)'}"
            )
        return "\n".join(lines)


def status(target: str | Connection, directory: Path | None = None) -> InstallStatus:
    """The database's release and the steps an install would apply; changes nothing."""
    with _connection(target) as conn, conn.transaction(force_rollback=True):
        installed = installed_version(conn)
    pending: list[str] = []
    if installed is not None and parse(installed) < parse(PACKAGE_VERSION):
        steps = upgrade_steps(upgrades_dir(directory))
        try:
            pending = [s.name for s in upgrade_path(installed, PACKAGE_VERSION, steps)]
        except VersionError:
            pending = []
    return InstallStatus(installed=installed, package=PACKAGE_VERSION, pending=pending)
