"""Catalog checks: privileges, pinned search_path, documentation, and PGMQ 1.5.1 surface."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from support import ROOT

Connection = psycopg.Connection[Any]

SQL_DIR = ROOT / "sql"

# What PGMQ 1.5.1 (hosted Supabase) offers and the core may call (DESIGN.md).
PGMQ_151_FUNCTIONS = {
    "create",
    "create_unlogged",
    "create_partitioned",
    "send",
    "send_batch",
    "read",
    "read_with_poll",
    "set_vt",
    "archive",
    "delete",
    "pop",
    "metrics",
    "metrics_all",
    "list_queues",
    "drop_queue",
    "purge_queue",
}


def functions(conn: Connection) -> list[tuple[str, str, list[str] | None, bool, str | None]]:
    return conn.execute(
        "select p.oid::regprocedure::text, p.proname, p.proconfig, p.prosecdef,"
        " obj_description(p.oid, 'pg_proc')"
        " from pg_proc p where p.pronamespace = 'pgmq_jobs'::regnamespace and p.prokind = 'f'"
        " order by 1"
    ).fetchall()


def test_the_only_procedure_is_0_1_0s_drain_pinned_and_saying_what_to_call_instead(
    conn: Connection,
) -> None:
    # 0.1.0's drain committed between batches, so it could not pin its search_path; 0.2.0
    # runs that loop as a DO block and keeps the name for one release, pinned, to fail with
    # an error that says what to call instead.
    rows = conn.execute(
        "select p.oid::regprocedure::text, p.proconfig, p.prosecdef from pg_proc p"
        " where p.pronamespace = 'pgmq_jobs'::regnamespace and p.prokind = 'p'"
    ).fetchall()
    assert rows == [
        ("pgmq_jobs.drain(text,double precision)", ["search_path=pg_catalog, pg_temp"], False)
    ]
    with pytest.raises(
        psycopg.errors.FeatureNotSupported, match=r"removed in pgmq-jobs 0\.2\.0"
    ) as e:
        conn.execute("call pgmq_jobs.drain('q', 55)")
    assert "pgmq_jobs.process('q'" in (e.value.diag.message_hint or "")
    public = conn.execute(
        "select has_function_privilege('public', 'pgmq_jobs.drain(text,double precision)',"
        " 'execute')"
    ).fetchone()
    assert public == (False,)


def test_no_function_is_executable_by_public(conn: Connection) -> None:
    rows = conn.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'pgmq_jobs'::regnamespace"
        " and has_function_privilege('public', p.oid, 'execute')"
    ).fetchall()
    assert rows == []
    assert len(functions(conn)) > 15


def test_no_table_or_view_is_readable_by_public(conn: Connection) -> None:
    rows = conn.execute(
        "select c.relname from pg_class c where c.relnamespace = 'pgmq_jobs'::regnamespace"
        " and c.relkind in ('r', 'v', 'm')"
        " and (has_table_privilege('public', c.oid, 'select')"
        "      or has_table_privilege('public', c.oid, 'insert'))"
    ).fetchall()
    assert rows == []
    public_usage = conn.execute("select has_schema_privilege('public', 'pgmq_jobs', 'usage')")
    assert public_usage.fetchone() == (False,)


def test_every_function_pins_search_path(conn: Connection) -> None:
    unpinned = [
        sig
        for sig, _, config, _, _ in functions(conn)
        if not any(c.startswith("search_path=") for c in config or [])
    ]
    assert unpinned == []
    for sig, _, config, _, _ in functions(conn):
        [path] = [c for c in config or [] if c.startswith("search_path=")]
        assert path == "search_path=pg_catalog, pg_temp", sig


def test_every_public_function_is_documented_and_private_ones_are_not_granted(
    conn: Connection,
) -> None:
    for sig, name, _, _, comment in functions(conn):
        if not name.startswith("_"):
            assert comment and len(comment) > 40, f"{sig} needs a comment on function"
    granted = conn.execute(
        "select p.proname, r.rolname from pg_proc p cross join pg_roles r"
        " where p.pronamespace = 'pgmq_jobs'::regnamespace and p.proname like '\\_%'"
        " and r.rolname like 'pgmq_jobs_%' and has_function_privilege(r.oid, p.oid, 'execute')"
    ).fetchall()
    # The exceptions: helpers that admin-readable views (schedules, queue_stats, alerts) or
    # the drain procedure (which cannot be SECURITY DEFINER) call.
    assert sorted(granted) == [
        ("_cron_job", "pgmq_jobs_admin"),
        ("_default_partition_jobs", "pgmq_jobs_admin"),
        ("_drain_step", "pgmq_jobs_admin"),
        ("_next_run_at", "pgmq_jobs_admin"),
        ("_nth_at", "pgmq_jobs_admin"),
        ("_queue_gauges", "pgmq_jobs_admin"),
        ("_xmin_holders", "pgmq_jobs_admin"),
    ]


def test_role_grants(conn: Connection) -> None:
    def can(role: str, fn: str) -> bool:
        row = conn.execute(
            "select bool_and(has_function_privilege(%s, p.oid, 'execute')) from pg_proc p"
            " where p.pronamespace = 'pgmq_jobs'::regnamespace and p.proname = %s",
            (role, fn),
        ).fetchone()
        assert row is not None and row[0] is not None, fn
        return bool(row[0])

    worker_fns = {"claim", "complete", "fail", "extend", "release"}
    producer_fns = {"enqueue", "enqueue_batch"}
    admin_only = {"create_queue", "configure_queue", "drop_queue", "replay", "dead_letters"}
    for fn in producer_fns:
        assert can("pgmq_jobs_producer", fn) and not can("pgmq_jobs_worker", fn)
    for fn in worker_fns:
        assert can("pgmq_jobs_worker", fn) and not can("pgmq_jobs_producer", fn)
    for fn in admin_only | worker_fns | producer_fns:
        assert can("pgmq_jobs_admin", fn)
    for fn in admin_only:
        assert not can("pgmq_jobs_worker", fn) and not can("pgmq_jobs_producer", fn)


def _sql_text() -> str:
    text = "\n".join(p.read_text() for p in sorted(SQL_DIR.glob("*.sql")))
    return re.sub(r"--[^\n]*", "", text)


def test_sql_calls_only_pgmq_151_functions() -> None:
    called = set(re.findall(r"\bpgmq\.([a-z_]+)\s*\(", _sql_text()))
    assert called, "expected sql/ to call PGMQ"
    assert called <= PGMQ_151_FUNCTIONS, called - PGMQ_151_FUNCTIONS


def test_sql_never_names_columns_newer_than_pgmq_151() -> None:
    assert "last_read_at" not in _sql_text()


def test_every_sql_file_has_a_header_and_one_public_function() -> None:
    for path in sorted(SQL_DIR.glob("*.sql")):
        text = path.read_text()
        assert text.startswith(f"-- {path.name}:"), f"{path.name} needs a header comment"
        public = re.findall(r"create or replace function pgmq_jobs\.([a-z][a-z_]*)\(", text)
        assert len(public) <= 1, f"{path.name} defines several public functions: {public}"
