"""Issue 18, findings 2 and 7: planted objects never run inside pgmq-jobs, and PGMQ's
``pg_monitor`` read grant is taken back from the project's tables.

Finding 2. A role allowed to create in ``public`` (PostgreSQL 14 and older, or a permissive
Supabase project) plants overloads there *before* pgmq-jobs is installed: exact-signature
``=``, ``*``, ``>=``, ``format``, ``now()``, ``jsonb_build_object`` and more, each of which
logs that it ran and then does what the real one does. With the default search_path
(``"$user", public``, pg_catalog searched first) an exact match in ``public`` still beats a
pg_catalog operator or function that needs a cast, a variadic ``"any"`` or a polymorphic
argument: ``oid = regclass``, ``interval * integer``, ``float8 >= int4``,
``format(text, text)``. Install, a re-install, the API, the views, the sweep and the
commands of the project's pg_cron jobs (run as pg_cron runs them: the job owner, the default
search_path) must leave the log empty, and nothing of pgmq_jobs (view, constraint, default,
index, function) may depend on an object in ``public``. ``tests/test_search_path.py``
covers the other half: objects planted *after* install by a caller with a hostile
search_path.

Finding 7. PGMQ grants ``pg_monitor`` SELECT on every table it creates; a monitoring role
must not read the payloads of the project's queues, archives or dead-letter queues.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, LiteralString, cast

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgmq_jobs.client as jobs
from pgmq_jobs.ops.install import install, sql_files
from pgmq_jobs.ops.paths import pgmq_sql_path
from support import drain_command

Connection = psycopg.Connection[Any]

LOG = "public.planted_log"

# (name, argument types, return type, the real thing it forwards to)
PLANTED_FUNCTIONS: list[tuple[str, list[str], str, str]] = [
    ("now", [], "timestamptz", "pg_catalog.now()"),
    ("clock_timestamp", [], "timestamptz", "pg_catalog.clock_timestamp()"),
    ("statement_timestamp", [], "timestamptz", "pg_catalog.statement_timestamp()"),
    ("format", ["text"], "text", "pg_catalog.format($1)"),
    ("format", ["text", "text"], "text", "pg_catalog.format($1, $2)"),
    ("format", ["text", "text", "text"], "text", "pg_catalog.format($1, $2, $3)"),
    ("format", ["text", "regprocedure"], "text", "pg_catalog.format($1, $2)"),
    ("format", ["text", "name"], "text", "pg_catalog.format($1, $2)"),
    ("jsonb_build_object", ["text", "text"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_object", ["text", "integer"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_object", ["text", "bigint"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_object", ["text", "jsonb"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    (
        "jsonb_build_object",
        ["text", "text", "text", "text"],
        "jsonb",
        "pg_catalog.jsonb_build_object($1, $2, $3, $4)",
    ),
    ("concat", ["text", "text"], "text", "pg_catalog.concat($1, $2)"),
    ("array_to_string", ["text[]", "text"], "text", "pg_catalog.array_to_string($1, $2)"),
    ("cardinality", ["text[]"], "integer", "pg_catalog.cardinality($1)"),
    ("unnest", ["text[]"], "setof text", "pg_catalog.unnest($1)"),
    ("current_setting", ["text"], "text", "pg_catalog.current_setting($1)"),
    ("to_regclass", ["text"], "regclass", "pg_catalog.to_regclass($1)"),
]

# (operator, left type, right type, return type): exact matches pg_catalog lacks (it has
# them only through a cast), plus a few it has (harmless under the default path, run when
# a path puts public first).
PLANTED_OPERATORS: list[tuple[str, str, str, str]] = [
    ("=", "oid", "regclass", "boolean"),
    ("=", "oid", "regnamespace", "boolean"),
    ("=", "oid", "regrole", "boolean"),
    ("=", "oid", "regprocedure", "boolean"),
    ("*", "interval", "integer", "interval"),
    ("*", "interval", "bigint", "interval"),
    (">=", "double precision", "integer", "boolean"),
    (">", "double precision", "integer", "boolean"),
    ("<", "double precision", "integer", "boolean"),
    (">", "bigint", "double precision", "boolean"),
    ("<", "bigint", "double precision", "boolean"),
    ("/", "bigint", "double precision", "double precision"),
    ("=", "name", "name", "boolean"),
    ("=", "text", "text", "boolean"),
    ("||", "text", "text", "text"),
]

PLANTER = "pjtp_planter"


def as_user(dsn: str, user: str) -> str:
    params = conninfo_to_dict(dsn)
    params["user"] = user
    return make_conninfo(**params)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _logged_body(label: str, returns: str) -> str:
    ret = "return query select" if returns.startswith("setof") else "return"
    return f"begin\n  insert into {LOG} (what) values ({_lit(label)});\n  {ret} {{real}};\nend"


def plant(conn: Connection) -> None:
    """As a role that may create in public, plant every overload and a log they write to."""
    conn.execute(f"create table {LOG} (id bigserial primary key, what text not null)")
    conn.execute(f"grant insert on {LOG} to public")
    conn.execute("grant usage on sequence public.planted_log_id_seq to public")
    for name, args, returns, real in PLANTED_FUNCTIONS:
        label = f"public.{name}({', '.join(args)})"
        body = _logged_body(label, returns).format(real=real)
        conn.execute(
            sql.SQL(
                "create function public.{name}({args}) returns {returns} language plpgsql as {body}"
            ).format(
                name=sql.Identifier(name),
                args=sql.SQL(", ".join(args)),
                returns=sql.SQL(returns),
                body=sql.Literal(body),
            )
        )
    for i, (op, left, right, returns) in enumerate(PLANTED_OPERATORS):
        label = f"public.{op}({left}, {right})"
        fn = sql.Identifier("public", f"planted_op_{i}")
        body = _logged_body(label, returns).format(real=f"a operator(pg_catalog.{op}) b")
        conn.execute(
            sql.SQL(
                "create function {fn}(a {left}, b {right}) returns {returns}"
                " language plpgsql as {body}"
            ).format(
                fn=fn,
                left=sql.SQL(left),
                right=sql.SQL(right),
                returns=sql.SQL(returns),
                body=sql.Literal(body),
            )
        )
        conn.execute(
            sql.SQL(
                "create operator public.{op} (leftarg = {l}, rightarg = {r}, function = {fn})"
            ).format(op=sql.SQL(op), l=sql.SQL(left), r=sql.SQL(right), fn=fn)
        )


def _clean(conn: Connection) -> Connection:
    """A new session on the same database whose own queries resolve nothing in public."""
    clean = psycopg.connect(conn.info.dsn, autocommit=True)
    clean.execute("set search_path = pg_catalog, pg_temp")
    return clean


def ran(conn: Connection) -> list[str]:
    """Every planted object that ran (read by a session that plants nothing)."""
    with _clean(conn) as clean:
        rows = clean.execute(f"select what from {LOG} order by id").fetchall()
    return [r[0] for r in rows]


def bound_to_public(conn: Connection) -> list[str]:
    """pgmq_jobs objects (views' rules, constraints, defaults, indexes, routines) that
    depend on a function, operator or type in public: bound for good at creation."""
    with _clean(conn) as clean:
        rows = clean.execute(
            """
        select distinct pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
            || ' -> ' || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
        from pg_catalog.pg_depend as d
        left join pg_catalog.pg_proc as rp
            on d.refclassid = 'pg_catalog.pg_proc'::regclass and rp.oid = d.refobjid
        left join pg_catalog.pg_operator as ro
            on d.refclassid = 'pg_catalog.pg_operator'::regclass and ro.oid = d.refobjid
        left join pg_catalog.pg_type as rt
            on d.refclassid = 'pg_catalog.pg_type'::regclass and rt.oid = d.refobjid
        where coalesce(rp.pronamespace, ro.oprnamespace, rt.typnamespace)
                = 'public'::regnamespace
            and pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) ~ 'pgmq_jobs\\.'
        order by 1
        """
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def planter(cluster_dsn: str) -> str:
    """A login role that may create in public (granted per database by the tests)."""
    with psycopg.connect(cluster_dsn, autocommit=True) as admin:
        if not admin.execute("select 1 from pg_roles where rolname = %s", (PLANTER,)).fetchone():
            admin.execute(sql.SQL("create role {} login").format(sql.Identifier(PLANTER)))
    return PLANTER


def _plant_in(dsn: str, role: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("grant create on schema public to {}").format(sql.Identifier(role)))
    with psycopg.connect(as_user(dsn, role), autocommit=True) as attacker:
        plant(attacker)
        # The overloads do run where a query resolves them: an empty log later means
        # they were never resolved, not that planting failed.
        attacker.execute("select format('%s', 'x'), interval '1 s' * 2, 1.5::float8 >= 1")
        assert set(ran(attacker)) >= {
            "public.format(text, text)",
            "public.*(interval, integer)",
            "public.>=(double precision, integer)",
        }
        attacker.execute(f"truncate {LOG}")


def _unplant(dsn: str, role: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))


def _default_path_session(dsn: str) -> Connection:
    """A superuser session with the default search_path, as pg_cron and most apps run."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute('set search_path = "$user", public')
    return conn


def _exercise_api(conn: Connection, queue: str) -> None:
    """create_queue, enqueue, claim, complete, fail, dead_letters, replay, the views, sweep."""
    assert jobs.create_queue(conn, queue, max_attempts=2, retry_base=1, jitter="none")
    ids = [jobs.enqueue(conn, queue, {"n": i}) for i in range(3)]
    ids += jobs.enqueue_batch(conn, queue, [{"n": 3}])
    claimed = jobs.claim(conn, queue, 10, visibility_timeout=30, worker="planted:1")
    assert sorted(j.job_id for j in claimed) == ids
    first, second, third, fourth = claimed
    assert jobs.complete(conn, queue, [(first.job_id, first.attempt)]) == 1
    assert jobs.fail(conn, queue, second.job_id, second.attempt, "boom").outcome == "retry"
    dead = jobs.fail(conn, queue, third.job_id, third.attempt, "fatal", permanent=True)
    assert dead.outcome == "dead"
    assert jobs.extend(conn, queue, fourth.job_id, fourth.attempt, 60) is not None
    [letter] = jobs.dead_letters(conn, queue)
    assert letter.job_id == third.job_id
    assert jobs.replay(conn, queue, [letter.dead_id]) == 1
    conn.execute("select pgmq_jobs.heartbeat('planted:1', array[%s])", (queue,))
    jobs.configure_queue(conn, queue, retry_max=60)
    conn.execute("select pgmq_jobs.set_alert_threshold('queue_depth', 0, %s)", (queue,))
    assert "skipped" in jobs.sweep(conn)
    for view in ("queue_stats", "alerts", "workers", "queues", "schedules", "audit"):
        conn.execute(sql.SQL("select * from {}").format(sql.Identifier("pgmq_jobs", view)))
    [stats] = conn.execute(
        "select queue, in_flight from pgmq_jobs.queue_stats where queue = %s", (queue,)
    ).fetchall()
    assert stats == (queue, 1)
    assert conn.execute(
        "select count(*) from pgmq_jobs.alerts where alert = 'queue_depth' and queue = %s",
        (queue,),
    ).fetchone() == (1,)
    assert conn.execute(
        "select status from pgmq_jobs.workers where worker_id = 'planted:1'"
    ).fetchone() == ("alive",)


def test_fresh_install_under_planted_objects(empty_db: Callable[[], str], planter: str) -> None:
    dsn = empty_db()
    _plant_in(dsn, planter)
    try:
        install(dsn)
        with _default_path_session(dsn) as conn:
            assert ran(conn) == []
            assert bound_to_public(conn) == []
            install(dsn)  # a re-install too
            assert ran(conn) == []
            _exercise_api(conn, f"tp_{uuid.uuid4().hex[:8]}")
            assert ran(conn) == []
            assert bound_to_public(conn) == []
    finally:
        _unplant(dsn, planter)


def test_sql_files_applied_without_a_pinned_path_bind_nothing_planted(
    empty_db: Callable[[], str], planter: str
) -> None:
    # The qualification in sql/ itself, whoever applies it: a migration run by psql or
    # an older installer applies the files under the session's search_path. Fresh (the
    # CHECK constraints and views are created here), then once more (a re-install).
    dsn = empty_db()
    _plant_in(dsn, planter)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("set search_path = pg_catalog, pg_temp")  # PGMQ's SQL is PGMQ's
            conn.execute(cast(LiteralString, pgmq_sql_path().read_text(encoding="utf-8")))
        for _ in range(2):
            with _default_path_session(dsn) as conn, conn.transaction():
                for path in sql_files():
                    conn.execute(cast(LiteralString, path.read_text(encoding="utf-8")))
            with _default_path_session(dsn) as conn:
                assert ran(conn) == []
                assert bound_to_public(conn) == []
        with _default_path_session(dsn) as conn:
            _exercise_api(conn, f"tp_{uuid.uuid4().hex[:8]}")
            assert ran(conn) == []
    finally:
        _unplant(dsn, planter)


def _run_cron_commands(conn: Connection) -> list[str]:
    """Run every pg_cron job of the project the way pg_cron would (its command, in a
    session with the default search_path); a drain gets a short budget instead of 55 s."""
    commands = conn.execute(
        "select jobname, command from cron.job where jobname like 'pgmq\\_jobs\\_%' order by 1"
    ).fetchall()
    names = []
    for jobname, command in commands:
        if jobname.startswith("pgmq_jobs_process_"):
            command = drain_command(conn, jobname.removeprefix("pgmq_jobs_process_"), 0.3)
        conn.execute(command)
        names.append(jobname)
    return names


def test_reinstall_api_and_cron_jobs_under_planted_objects(
    db_dsn: str, conn: Connection, planter: str
) -> None:
    # The shared database has pg_cron (it is cron.database_name).
    suffix = uuid.uuid4().hex[:8]
    queue, handled, app = f"tp_{suffix}", f"tph_{suffix}", f"tp_app_{suffix}"
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(app)))
    conn.execute(sql.SQL("create table {}.handled (payload jsonb)").format(sql.Identifier(app)))
    conn.execute(
        sql.SQL(
            "create function {app}.handle(payload jsonb) returns void language sql"
            " set search_path = pg_catalog, pg_temp"
            " as 'insert into {app}.handled (payload) values (payload)'"
        ).format(app=sql.Identifier(app))
    )
    _plant_in(db_dsn, planter)
    try:
        install(db_dsn)
        with _default_path_session(db_dsn) as session:
            assert ran(session) == []
            _exercise_api(session, queue)
            jobs.create_queue(session, handled, handler=f"{app}.handle")
            jobs.enqueue(session, handled, {"h": 1})
            jobs.schedule(session, f"tp_{suffix}", "0 3 * * *", queue, {"from": "cron"})
            # Keep pg_cron itself off the handled queue: this test runs its command.
            session.execute(
                "update cron.job set active = false where jobname = %s",
                (f"pgmq_jobs_process_{handled}",),
            )
            names = _run_cron_commands(session)
            assert {"pgmq_jobs_sweep", f"pgmq_jobs_process_{handled}"} <= set(names)
            assert f"pgmq_jobs_schedule_tp_{suffix}" in names
            assert ran(session) == []
            assert bound_to_public(session) == []
        handled_rows = conn.execute(
            sql.SQL("select payload from {}.handled").format(sql.Identifier(app))
        ).fetchall()
        assert handled_rows == [({"h": 1},)]
    finally:
        _unplant(db_dsn, planter)
        jobs.unschedule(conn, f"tp_{suffix}")
        for q in (queue, handled):
            if conn.execute("select 1 from pgmq_jobs.queues where queue = %s", (q,)).fetchone():
                jobs.drop_queue(conn, q)
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(app)))


# Finding 7: pg_monitor reads no payload.

MONITOR = "pjtp_monitor"


@pytest.fixture
def monitor(db_dsn: str, conn: Connection) -> str:
    """A login role that is a member of pg_monitor (and nothing else)."""
    if not conn.execute("select 1 from pg_roles where rolname = %s", (MONITOR,)).fetchone():
        conn.execute(
            sql.SQL("create role {} login in role pg_monitor").format(sql.Identifier(MONITOR))
        )
    return as_user(db_dsn, MONITOR)


def _queue_tables(conn: Connection, queue: str) -> list[str]:
    """The queue's PGMQ tables and all their partitions."""
    rows = conn.execute(
        """
        with recursive t (oid) as (
            select c.oid from pg_class as c
            where c.relnamespace = 'pgmq'::regnamespace
                and c.relname = any(array['q_' || %(q)s, 'a_' || %(q)s,
                    'q_' || %(q)s || '_dlq', 'a_' || %(q)s || '_dlq'])
            union
            select i.inhrelid from pg_inherits as i inner join t on i.inhparent = t.oid
        )
        select c.relname from t inner join pg_class as c on c.oid = t.oid order by 1
        """,
        {"q": queue},
    ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("partitioned", [False, True], ids=["plain", "partitioned"])
def test_pg_monitor_reads_no_payload(conn: Connection, monitor: str, partitioned: bool) -> None:
    queue = f"tpm_{uuid.uuid4().hex[:8]}"
    jobs.create_queue(conn, queue, max_attempts=1, partitioned=partitioned)
    try:
        jobs.enqueue(conn, queue, {"secret": "waiting"})
        jobs.enqueue(conn, queue, {"secret": "done"})
        jobs.enqueue(conn, queue, {"secret": "dead"})
        _, b, c = jobs.claim(conn, queue, 3)
        jobs.complete(conn, queue, [(b.job_id, b.attempt)])
        jobs.fail(conn, queue, c.job_id, c.attempt, "x", permanent=True)
        tables = _queue_tables(conn, queue)
        expected = {f"q_{queue}", f"a_{queue}", f"q_{queue}_dlq", f"a_{queue}_dlq"}
        assert expected <= set(tables)
        if partitioned:
            assert len(tables) > len(expected)  # the partitions are checked too
        # PGMQ grants pg_monitor SELECT on the tables it makes; pgmq-jobs revokes it.
        with psycopg.connect(monitor, autocommit=True) as mon:
            assert mon.execute("select pg_has_role('pg_monitor', 'member')").fetchone() == (True,)
            for table in tables:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    mon.execute(sql.SQL("select * from pgmq.{}").format(sql.Identifier(table)))
            # Monitoring still works through the project's own grants, not by reading payloads.
        grants = conn.execute(
            """
            select c.relname from pg_class as c
            where c.relname = any(%s) and c.relnamespace = 'pgmq'::regnamespace
                and has_table_privilege('pg_monitor', c.oid, 'select')
            """,
            (tables,),
        ).fetchall()
        assert grants == []
        if partitioned:
            # New partitions get their parent's privileges (none for pg_monitor).
            partman = conn.execute(
                "select n.nspname from pg_extension e join pg_namespace n"
                " on n.oid = e.extnamespace where e.extname = 'pg_partman'"
            ).fetchone()
            assert partman is not None
            inherit = conn.execute(
                sql.SQL(
                    "select bool_and(inherit_privileges) from {}.part_config"
                    " where parent_table = any(%s)"
                ).format(sql.Identifier(partman[0])),
                ([f"pgmq.q_{queue}", f"pgmq.a_{queue}"],),
            ).fetchone()
            assert inherit == (True,)
    finally:
        jobs.drop_queue(conn, queue)


def test_drain_command_runs_the_handler_and_nothing_planted(
    db_dsn: str, conn: Connection, planter: str
) -> None:
    # pgmq_jobs._drain_command(queue) is the DO block meant to replace `call
    # pgmq_jobs.drain(queue, 55)` in the pg_cron process jobs (a committing procedure
    # cannot pin its search_path; finding 10). Run as pg_cron would run it.
    suffix = uuid.uuid4().hex[:8]
    handled, app = f"tpd_{suffix}", f"tpd_app_{suffix}"
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(app)))
    conn.execute(sql.SQL("create table {}.handled (payload jsonb)").format(sql.Identifier(app)))
    conn.execute(
        sql.SQL(
            "create function {app}.handle(payload jsonb) returns void language sql"
            " set search_path = pg_catalog, pg_temp"
            " as 'insert into {app}.handled (payload) values (payload)'"
        ).format(app=sql.Identifier(app))
    )
    _plant_in(db_dsn, planter)
    try:
        jobs.create_queue(conn, handled, handler=f"{app}.handle")
        conn.execute(
            "update cron.job set active = false where jobname = %s",
            (f"pgmq_jobs_process_{handled}",),
        )
        jobs.enqueue(conn, handled, {"h": 1})
        jobs.enqueue(conn, handled, {"h": 2})
        [(command,)] = conn.execute(
            "select pgmq_jobs._drain_command(%s, 0.5)", (handled,)
        ).fetchall()
        with _default_path_session(db_dsn) as session:
            session.execute(command)
            # The DO block commits between batches: nothing is left in a transaction.
            assert session.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert ran(conn) == []
        handled_rows = conn.execute(
            sql.SQL("select payload from {}.handled order by 1").format(sql.Identifier(app))
        ).fetchall()
        assert handled_rows == [({"h": 1},), ({"h": 2},)]
    finally:
        _unplant(db_dsn, planter)
        if conn.execute("select 1 from pgmq_jobs.queues where queue = %s", (handled,)).fetchone():
            jobs.drop_queue(conn, handled)
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(app)))
