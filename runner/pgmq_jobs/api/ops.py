"""The statements of operations (install, upgrades, the embedded cluster, PL/Python): catalog
reads and DDL, each built once as a :class:`~pgmq_jobs.api.calls.Call` like the SQL API's.
Run them with :func:`pgmq_jobs.api.sync.run`."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgmq_jobs.api.calls import Call, Row


def _scalar(rows: list[Row]) -> Any:
    return rows[0][0] if rows else None


def _bool(rows: list[Row]) -> bool:
    return bool(rows and rows[0][0])


def _none(rows: list[Row]) -> None:
    return None


# ---------------------------------------------------------------- catalog


def extension_version(name: str) -> Call[str | None]:
    """The installed version of extension ``name``, or None."""
    return Call(
        "select extversion from pg_catalog.pg_extension where extname = %(name)s",
        {"name": name},
        _scalar,
    )


def extension_available(name: str) -> Call[bool]:
    """The server offers extension ``name`` (installed here or installable)."""
    return Call(
        "select exists(select from pg_catalog.pg_available_extensions where name = %(name)s)",
        {"name": name},
        _bool,
    )


def create_extension(name: str) -> Call[None]:
    return Call(
        sql.SQL("create extension if not exists {}").format(sql.Identifier(name)), {}, _none
    )


def schema_exists(name: str) -> Call[bool]:
    return Call(
        "select exists(select from pg_catalog.pg_namespace where nspname = %(name)s)",
        {"name": name},
        _bool,
    )


def relation_exists(name: str) -> Call[bool]:
    """``name`` (schema-qualified) is a table, view or index here."""
    return Call("select pg_catalog.to_regclass(%(name)s) is not null", {"name": name}, _bool)


def function_exists(signature: str) -> Call[bool]:
    """``signature`` (``schema.name(argument types)``) is a function here."""
    return Call(
        "select pg_catalog.to_regprocedure(%(signature)s) is not null",
        {"signature": signature},
        _bool,
    )


def pg_cron_allowed() -> Call[bool]:
    """pg_cron can be created here: available, and this is cron.database_name's database."""
    return Call(
        "select exists(select from pg_catalog.pg_available_extensions where name = 'pg_cron')"
        " and pg_catalog.current_database()"
        " = pg_catalog.current_setting('cron.database_name', true)",
        {},
        _bool,
    )


def setting(name: str) -> Call[str | None]:
    """The value of setting ``name`` (None where it is not set)."""
    return Call("select pg_catalog.current_setting(%(name)s, true)", {"name": name}, _scalar)


def set_local(name: str, value: str) -> Call[None]:
    """Set ``name`` to ``value`` until the end of the current transaction."""
    return Call(
        "select pg_catalog.set_config(%(name)s, %(value)s, true)",
        {"name": name, "value": value},
        _none,
    )


def current_user() -> Call[str]:
    return Call("select current_user::text", {}, _scalar)


def is_superuser() -> Call[bool]:
    return Call("select rolsuper from pg_catalog.pg_roles where rolname = current_user", {}, _bool)


def transaction_lock(key: int) -> Call[None]:
    """A transaction-level advisory lock on ``key`` (waits for it)."""
    return Call("select pg_catalog.pg_advisory_xact_lock(%(key)s)", {"key": key}, _none)


# ---------------------------------------------------------------- install and upgrades


def schema_versions() -> Call[list[str]]:
    """Every release recorded in ``pgmq_jobs.schema_version``."""
    return Call(
        "select version from pgmq_jobs.schema_version", {}, lambda rows: [str(r[0]) for r in rows]
    )


def pending_priority_indexes() -> Call[list[tuple[str, str]]]:
    """Queues whose priority index an upgrade left to build concurrently, with the statement
    that builds it."""
    return Call(
        "select qs.queue, pgmq_jobs._priority_index_sql(qs.queue, true)"
        " from pgmq_jobs.queue_settings as qs"
        " where not qs.priority_index and not qs.partitioned"
        " order by qs.queue",
        {},
        lambda rows: [(str(r[0]), str(r[1])) for r in rows],
    )


def finish_priority_index(queue: str) -> Call[bool]:
    """After a concurrent build: whether the queue's priority index is valid (claim then
    walks it)."""
    return Call("select pgmq_jobs._finish_priority_index(%(queue)s)", {"queue": queue}, _bool)


def drop_index_concurrently(schema: str, name: str) -> Call[None]:
    return Call(
        sql.SQL("drop index concurrently if exists {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name)
        ),
        {},
        _none,
    )


# ---------------------------------------------------------------- the embedded cluster


def ping() -> Call[None]:
    return Call("select 1", {}, _none)


def database_exists(name: str) -> Call[bool]:
    return Call(
        "select exists(select from pg_catalog.pg_database where datname = %(name)s)",
        {"name": name},
        _bool,
    )


def create_database(name: str, template: str | None = None) -> Call[None]:
    statement = sql.SQL("create database {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("{} template {}").format(statement, sql.Identifier(template))
    return Call(statement, {}, _none)


def in_recovery() -> Call[bool]:
    return Call("select pg_catalog.pg_is_in_recovery()", {}, _bool)


def wal_insert_lsn() -> Call[str]:
    return Call("select pg_catalog.pg_current_wal_insert_lsn()::text", {}, _scalar)


def replayed_to(lsn: str) -> Call[bool]:
    """A standby has replayed the primary's WAL up to ``lsn``."""
    return Call(
        "select pg_catalog.pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn", {"lsn": lsn}, _bool
    )


# ---------------------------------------------------------------- PL/Python


def server_python_imports(module: str) -> Call[None]:
    """Fails where the server's Python (PL/Python's) cannot import ``module``."""
    return Call(
        sql.SQL("do language plpython3u {}").format(sql.Literal(f"import {module}")), {}, _none
    )


def drop_function(signature: str) -> Call[None]:
    """Drop ``signature`` (a trusted, project-made ``schema.name(types)`` text)."""
    return Call(sql.SQL("drop function if exists {}").format(sql.SQL(signature)), {}, _none)


def drop_schema_cascade(name: str) -> Call[None]:
    return Call(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)), {}, _none)
