"""Issue 18, finding 10: Supabase's security advisor (splinter) stays quiet on our schema.

A Supabase user sees splinter's lints right after installing. Each test below checks one
lint's condition with our own query, on a fresh database set up like a Supabase project
(``anon`` / ``authenticated`` / ``service_role`` and Supabase's default privileges), after
install, a plain and a partitioned queue, and ``allow_enqueue(q, 'authenticated')``. The one
finding we intend is ``enqueue_as_user`` (SECURITY DEFINER) executable by
``authenticated``, which the README explains.

Lints checked (splinter's ``lints/`` numbering): 0010 security_definer_view, 0011
function_search_path_mutable, 0013 / 0019 / 0026 / 0027 tables, views and queues readable by
``anon`` or ``authenticated``, 0014 extension_in_public, 0016 / 0017 materialized views and
foreign tables in the API, 0018 unsupported_reg_types, 0028 / 0029 SECURITY DEFINER
functions executable by ``anon`` / ``authenticated``. The performance lints (unused or
duplicate indexes, tables without a primary key, unindexed foreign keys) are not checked here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgmq_jobs.client as jobs
from pgmq_jobs.ops.install import install

Connection = psycopg.Connection[Any]

SUPABASE_ROLES = ("anon", "authenticated", "service_role")
# Our schemas (pgmq_jobs_plpy exists only where PL/Python support was installed).
OURS = "(select n.oid from pg_namespace as n where n.nspname in ('pgmq_jobs', 'pgmq_jobs_plpy'))"


def _supabase_like(conn: Connection) -> None:
    for role in SUPABASE_ROLES:
        if conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(f"create role {role} nologin noinherit")
    # Supabase hands every new function and table to the API roles by default.
    conn.execute(
        "alter default privileges grant execute on functions to anon, authenticated, service_role"
    )
    conn.execute(
        "alter default privileges in schema public"
        " grant all on tables to anon, authenticated, service_role"
    )


@pytest.fixture(scope="module")
def advised(cluster_dsn: str) -> Any:
    """A database set up like a Supabase project, pgmq-jobs installed, two queues, and
    signed-in users allowed to enqueue into one."""
    name = f"pgmq_jobs_advisor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(cluster_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    params = conninfo_to_dict(cluster_dsn)
    params["dbname"] = name
    dsn = make_conninfo(**params)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            _supabase_like(conn)
        install(dsn, with_plpython=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            jobs.create_queue(conn, "contact_form")
            jobs.create_queue(conn, "parted", partitioned=True)
            conn.execute("select pgmq_jobs.allow_enqueue('contact_form', 'authenticated')")
        yield dsn
    finally:
        with psycopg.connect(cluster_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture
def db(advised: str) -> Any:
    with psycopg.connect(advised, autocommit=True) as conn:
        conn.execute("set search_path = pg_catalog, pg_temp")
        yield conn


def _rows(conn: Connection, query: str) -> list[str]:
    return [r[0] for r in conn.execute(query.replace("{ours}", OURS)).fetchall()]  # type: ignore[arg-type]


def test_0011_every_routine_pins_its_search_path(db: Connection) -> None:
    # Functions, procedures and aggregates alike: an aggregate or a committing procedure
    # cannot have SET search_path, so neither may exist in our schemas.
    mutable = _rows(
        db,
        """
        select p.oid::regprocedure::text
        from pg_proc as p
        where p.pronamespace in {ours}
            and not exists (
                select from pg_depend as d
                where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
            )
            and not exists (
                select from unnest(coalesce(p.proconfig, '{}')) as c (setting)
                where c.setting like 'search\\_path=%'
            )
        order by 1
        """,
    )
    assert mutable == []


def test_0010_no_view_runs_with_its_owners_rights_for_the_api_roles(db: Connection) -> None:
    exposed = _rows(
        db,
        """
        select c.oid::regclass::text
        from pg_class as c
        where c.relkind = 'v'
            and c.relnamespace in {ours}
            and (has_table_privilege('anon', c.oid, 'select')
                or has_table_privilege('authenticated', c.oid, 'select'))
            and not coalesce(c.reloptions, '{}')
                && array['security_invoker=true', 'security_invoker=on']
        order by 1
        """,
    )
    assert exposed == []


def test_0013_0019_0026_0027_no_table_or_queue_reachable_by_the_api_roles(
    db: Connection,
) -> None:
    reachable = _rows(
        db,
        """
        select pg_catalog.concat(c.oid::regclass::text, ' ', r.role)
        from pg_class as c
        cross join (values ('anon'), ('authenticated')) as r (role)
        where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
            and (
                c.relnamespace in {ours}
                or c.relnamespace = 'pgmq'::regnamespace
                and c.relname ~ '^[qa]_(contact_form|parted)'
            )
            and (
                c.relkind = 'S' and has_sequence_privilege(r.role, c.oid, 'select,usage,update')
                or c.relkind <> 'S' and has_table_privilege(
                    r.role, c.oid, 'select,insert,update,delete,truncate,references,trigger'
                )
            )
        order by 1
        """,
    )
    assert reachable == []


def test_0014_no_extension_in_public(db: Connection) -> None:
    assert (
        _rows(
            db, "select extname::text from pg_extension where extnamespace = 'public'::regnamespace"
        )
        == []
    )


def test_0016_0017_no_materialized_view_or_foreign_table(db: Connection) -> None:
    found = _rows(
        db,
        """
        select c.oid::regclass::text from pg_class as c
        where c.relkind in ('m', 'f')
            and c.relnamespace in {ours}
        """,
    )
    assert found == []


def test_0018_no_column_of_a_reg_type_pg_upgrade_cannot_keep(db: Connection) -> None:
    found = _rows(
        db,
        """
        select pg_catalog.concat(c.oid::regclass::text, '.', a.attname)
        from pg_attribute as a
        inner join pg_class as c on c.oid = a.attrelid
        where c.relkind in ('r', 'p')
            and c.relnamespace in {ours}
            and a.attnum > 0 and not a.attisdropped
            and a.atttypid = any(array[
                'regcollation', 'regconfig', 'regdictionary', 'regnamespace', 'regoper',
                'regoperator', 'regproc', 'regprocedure'
            ]::regtype[])
        """,
    )
    assert found == []


_SECDEF_EXECUTABLE = """
    select p.oid::regprocedure::text
    from pg_proc as p
    where p.prosecdef
        and p.pronamespace = '%s'::regnamespace
        and has_function_privilege('%s', p.oid, 'execute')
    order by 1
"""


def test_0028_no_security_definer_function_executable_by_anon(db: Connection) -> None:
    assert _rows(db, _SECDEF_EXECUTABLE % ("pgmq_jobs", "anon")) == []


def test_0029_only_enqueue_as_user_is_executable_by_authenticated(db: Connection) -> None:
    # The intended finding: allow_enqueue granted it (the README explains why it is safe).
    assert _rows(db, _SECDEF_EXECUTABLE % ("pgmq_jobs", "authenticated")) == [
        "pgmq_jobs.enqueue_as_user(text,jsonb)"
    ]


def test_0029_nothing_for_authenticated_before_allow_enqueue(
    empty_db: Callable[[], str],
) -> None:
    dsn = empty_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        _supabase_like(conn)
    install(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert _rows(conn, _SECDEF_EXECUTABLE % ("pgmq_jobs", "authenticated")) == []
        assert _rows(conn, _SECDEF_EXECUTABLE % ("pgmq_jobs", "anon")) == []


def test_0028_0029_plpy_functions_not_executable_by_the_api_roles(db: Connection) -> None:
    for role in ("anon", "authenticated"):
        assert _rows(db, _SECDEF_EXECUTABLE % ("pgmq_jobs_plpy", role)) == []
