"""search_path attacks: objects planted in ``public`` and ``pg_temp`` never run inside the API.

A low-privilege login role (granted pgmq_jobs_admin, so it may call every API function, and
allowed to create in ``public`` as on PostgreSQL 14 and older or a permissive Supabase
project) plants functions and operators that shadow what our SQL uses: ``now()``,
``clock_timestamp()``, ``jsonb_build_object``, ``format``, ``=``/``<=`` on bigint and
timestamptz, ``->>``, ``||`` and more, each recording in a table it owns (and in a notice)
that it ran. It then sets its search_path so that its objects come first and calls every
API function, the commands pg_cron runs, and the drain loop (a DO block that pins its own
session's search_path). Nothing planted may run, and the results must be right.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgmq_jobs.client as jobs
from support import drain_command

Connection = psycopg.Connection[Any]

HOSTILE_PATHS = ["public, pg_temp, pg_catalog", "pg_temp, public, pg_catalog"]

# (name, argument types, return type, the real thing it forwards to)
PLANTED_FUNCTIONS: list[tuple[str, list[str], str, str]] = [
    ("clock_timestamp", [], "timestamptz", "pg_catalog.clock_timestamp()"),
    ("now", [], "timestamptz", "pg_catalog.now()"),
    ("random", [], "double precision", "pg_catalog.random()"),
    ("jsonb_build_object", ["text", "integer"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_object", ["text", "bigint"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_object", ["text", "text"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_object", ["text", "jsonb"], "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("format", ["text", "text"], "text", "pg_catalog.format($1, $2)"),
    ("format", ["text", "text", "text"], "text", "pg_catalog.format($1, $2, $3)"),
    ("length", ["text"], "integer", "pg_catalog.length($1)"),
    ("octet_length", ["text"], "integer", "pg_catalog.octet_length($1)"),
    ("btrim", ["text"], "text", "pg_catalog.btrim($1)"),
    ("quote_literal", ["text"], "text", "pg_catalog.quote_literal($1)"),
    ("quote_ident", ["text"], "text", "pg_catalog.quote_ident($1)"),
    ("hashtext", ["text"], "integer", "pg_catalog.hashtext($1)"),
    ("textcat", ["text", "text"], "text", "pg_catalog.textcat($1, $2)"),
    ("texteq", ["text", "text"], "boolean", "pg_catalog.texteq($1, $2)"),
    ("jsonb_typeof", ["jsonb"], "text", "pg_catalog.jsonb_typeof($1)"),
    ("jsonb_strip_nulls", ["jsonb"], "jsonb", "pg_catalog.jsonb_strip_nulls($1)"),
    ("current_setting", ["text"], "text", "pg_catalog.current_setting($1)"),
    ("current_setting", ["text", "boolean"], "text", "pg_catalog.current_setting($1, $2)"),
    ("to_regrole", ["text"], "regrole", "pg_catalog.to_regrole($1)"),
    ("cardinality", ["bigint[]"], "integer", "pg_catalog.cardinality($1)"),
    ("cardinality", ["jsonb[]"], "integer", "pg_catalog.cardinality($1)"),
    ("array_position", ["bigint[]", "bigint"], "integer", "pg_catalog.array_position($1, $2)"),
    ("pg_try_advisory_lock", ["bigint"], "boolean", "pg_catalog.pg_try_advisory_lock($1)"),
    ("pg_advisory_unlock", ["bigint"], "boolean", "pg_catalog.pg_advisory_unlock($1)"),
    ("make_interval", ["double precision"], "interval", "pg_catalog.make_interval(secs => $1)"),
]

# (operator, left type, right type, return type)
PLANTED_OPERATORS: list[tuple[str, str, str, str]] = [
    ("=", "bigint", "bigint", "boolean"),
    ("<=", "bigint", "bigint", "boolean"),
    ("=", "integer", "integer", "boolean"),
    ("<", "integer", "integer", "boolean"),
    (">=", "integer", "integer", "boolean"),
    ("=", "timestamptz", "timestamptz", "boolean"),
    ("<=", "timestamptz", "timestamptz", "boolean"),
    ("=", "text", "text", "boolean"),
    ("<>", "text", "text", "boolean"),
    ("||", "text", "text", "text"),
    ("->>", "jsonb", "text", "text"),
    ("->", "jsonb", "text", "jsonb"),
    ("+", "timestamptz", "interval", "timestamptz"),
    ("=", "interval", "interval", "boolean"),
]


def as_user(dsn: str, user: str) -> str:
    params = conninfo_to_dict(dsn)
    params["user"] = user
    return make_conninfo(**params)


@dataclass
class Attack:
    """The attacker's login role, its log table, and what the test set up for it."""

    role: str
    dsn: str
    log: sql.Composed
    queue: str
    handled: str
    app: str
    notices: list[str] = field(default_factory=list)

    def connect(self, search_path: str) -> Connection:
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.add_notice_handler(self._notice)
        conn.execute(sql.SQL("set search_path = {}").format(sql.SQL(search_path)))
        return conn

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        if diag.message_primary and diag.message_primary.startswith("PLANTED"):
            self.notices.append(diag.message_primary)

    def ran(self, conn: Connection) -> list[str]:
        """Everything planted that ran: the log table (read by a clean session) and notices."""
        logged = conn.execute(sql.SQL("select what from {} order by id").format(self.log))
        return [r[0] for r in logged.fetchall()] + self.notices


def _plant(conn: Connection, schema: str, log: sql.Composed) -> None:
    """Create every planted function and operator in ``schema`` (public or pg_temp)."""
    for name, args, returns, real in PLANTED_FUNCTIONS:
        label = f"{schema}.{name}({', '.join(args)})"
        conn.execute(
            sql.SQL(
                "create function {schema}.{name}({args}) returns {returns}"
                " language plpgsql as {body}"
            ).format(
                schema=sql.Identifier(schema),
                name=sql.Identifier(name),
                args=sql.SQL(", ".join(args)),
                returns=sql.SQL(returns),
                body=sql.Literal(
                    "begin\n"
                    f"  insert into {log.as_string(conn)} (what) values ({_lit(label)});\n"
                    f"  raise notice 'PLANTED %', {_lit(label)};\n"
                    f"  return {real};\n"
                    "end"
                ),
            )
        )
    for i, (op, left, right, returns) in enumerate(PLANTED_OPERATORS):
        label = f"{schema}.{op}({left}, {right})"
        fn = sql.Identifier(schema, f"planted_op_{i}")
        conn.execute(
            sql.SQL(
                "create function {fn}(a {left}, b {right}) returns {returns}"
                " language plpgsql as {body}"
            ).format(
                fn=fn,
                left=sql.SQL(left),
                right=sql.SQL(right),
                returns=sql.SQL(returns),
                body=sql.Literal(
                    "begin\n"
                    f"  insert into {log.as_string(conn)} (what) values ({_lit(label)});\n"
                    f"  raise notice 'PLANTED %', {_lit(label)};\n"
                    f"  return a operator(pg_catalog.{op}) b;\n"
                    "end"
                ),
            )
        )
        conn.execute(
            sql.SQL(
                "create operator {schema}.{op} (leftarg = {l}, rightarg = {r}, function = {fn})"
            ).format(
                schema=sql.Identifier(schema),
                op=sql.SQL(op),
                l=sql.SQL(left),
                r=sql.SQL(right),
                fn=fn,
            )
        )


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture
def attack(db_dsn: str, conn: Connection) -> Iterator[Attack]:
    """An admin-granted attacker with objects planted in public (pg_temp ones are per
    session: see :func:`plant_temp`), a queue with jobs, and a queue with a SQL handler."""
    suffix = uuid.uuid4().hex[:8]
    role = f"pjsp_{suffix}"
    app = f"pjsp_app_{suffix}"
    queue, handled = f"sp_{suffix}", f"sph_{suffix}"
    log = sql.Identifier("public", f"{role}_log")
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:
        conn.execute(sql.SQL("grant pgmq_jobs_admin to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant create on schema public to {}").format(sql.Identifier(role)))
        # A SQL handler owned by the superuser (as an operator would set one up).
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(app)))
        conn.execute(sql.SQL("create table {}.handled (payload jsonb)").format(sql.Identifier(app)))
        conn.execute(
            sql.SQL(
                "create function {app}.handle(payload jsonb) returns void language sql"
                " set search_path = pg_catalog, pg_temp"
                " as 'insert into {app}.handled (payload) values (payload)'"
            ).format(app=sql.Identifier(app))
        )
        dsn = as_user(db_dsn, role)
        with psycopg.connect(dsn, autocommit=True) as attacker:
            attacker.execute(
                sql.SQL("create table {} (id bigserial primary key, what text)").format(log)
            )
            attacker.execute(sql.SQL("grant insert on {} to public").format(log))
            attacker.execute(
                sql.SQL("grant usage on sequence {} to public").format(
                    sql.Identifier("public", f"{role}_log_id_seq")
                )
            )
            _plant(attacker, "public", log)
        yield Attack(role, dsn, log, queue, handled, app)
    finally:
        for q in (queue, handled):
            if conn.execute("select 1 from pgmq_jobs.queues where queue = %s", (q,)).fetchone():
                jobs.drop_queue(conn, q)
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (role,)
        )
        conn.execute("delete from pgmq_jobs.schedule_settings where name like %s", (f"{role}%",))
        conn.execute(
            "select cron.unschedule(jobname) from cron.job where jobname like %s",
            (f"pgmq_jobs_schedule_{role}%",),
        )
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(app)))
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def plant_temp(attack: Attack, attacker: Connection) -> None:
    """The same objects in the attacker session's own pg_temp."""
    _plant(attacker, "pg_temp", attack.log)
    temp = attacker.execute(
        "select count(*) from pg_proc where pronamespace = pg_my_temp_schema()"
    ).fetchone()
    assert temp is not None and temp[0] == len(PLANTED_FUNCTIONS) + len(PLANTED_OPERATORS)


def _planted_work(attacker: Connection, attack: Attack) -> None:
    """Prove the planted objects work where a query does resolve them (so an empty log
    means the API never resolved them, not that planting failed)."""
    row = attacker.execute("select now() is not null, 'a' || 'b'").fetchone()
    assert row == (True, "ab")


def test_planted_objects_would_run_in_an_unpinned_query(attack: Attack, conn: Connection) -> None:
    with attack.connect(HOSTILE_PATHS[0]) as attacker:
        _planted_work(attacker, attack)
    ran = attack.ran(conn)
    assert "public.now()" in ran and "public.||(text, text)" in ran


@pytest.mark.parametrize("search_path", HOSTILE_PATHS)
def test_every_api_function_ignores_planted_objects(
    attack: Attack, conn: Connection, search_path: str
) -> None:
    q, role = attack.queue, attack.role
    with attack.connect(search_path) as attacker:
        plant_temp(attack, attacker)
        results: dict[str, Any] = {}
        assert jobs.create_queue(attacker, q, max_attempts=2, retry_base=1, jitter="none")
        settings = jobs.configure_queue(attacker, q, retry_max=60)
        assert settings["retry_max"].total_seconds() == 60
        ids = [jobs.enqueue(attacker, q, {"n": 1}, max_attempts=2)]
        ids += jobs.enqueue_batch(attacker, q, [{"n": 2}, {"n": 3}])
        ids.append(jobs.enqueue(attacker, q, {"n": 4}, delay=3600))
        assert ids == list(range(ids[0], ids[0] + 4))
        claimed = jobs.claim(attacker, q, 10, visibility_timeout=30, worker="attacker:1")
        assert [(j.job_id, j.payload, j.attempt) for j in claimed] == [
            (ids[0], {"n": 1}, 1),
            (ids[1], {"n": 2}, 1),
            (ids[2], {"n": 3}, 1),
        ]
        first, second, third = claimed
        until = jobs.extend(attacker, q, first.job_id, first.attempt, 600)
        assert isinstance(until, datetime) and until > first.visible_until
        assert jobs.complete(attacker, q, [(first.job_id, 1), (second.job_id, 1)]) == 2
        assert jobs.complete(attacker, q, [(first.job_id, 1)]) == 0  # stale now
        failed = jobs.fail(attacker, q, third.job_id, 1, "boom")
        assert failed.outcome == "retry" and failed.next_attempt_at is not None
        assert jobs.fail(attacker, q, third.job_id, 1, "again").outcome == "stale"
        dead_job = jobs.enqueue(attacker, q, {"n": 5})
        [five] = jobs.claim(attacker, q)
        assert five.job_id == dead_job
        assert jobs.fail(attacker, q, five.job_id, 1, "fatal", permanent=True).outcome == "dead"
        [letter] = jobs.dead_letters(attacker, q)
        assert (letter.job_id, letter.reason, letter.last_error) == (dead_job, "permanent", "fatal")
        assert jobs.replay(attacker, q, [letter.dead_id]) == 1
        assert jobs.dead_letters(attacker, q) == []
        assert jobs.purge_dead_letters(attacker, q) == 0
        beat = attacker.execute("select pgmq_jobs.heartbeat('attacker:1', array[%s])", (q,))
        assert isinstance(beat.fetchone()[0], datetime)  # type: ignore[index]
        results["sweep"] = jobs.sweep(attacker)
        assert "skipped" in results["sweep"]
        name = f"{role}_sched"
        jobid = jobs.schedule(attacker, name, "*/5 * * * *", q, {"from": "cron"})
        assert isinstance(jobid, int) and jobid > 0
        [sched] = [s for s in jobs.schedules(attacker) if s["name"] == name]
        assert (sched["cron"], sched["queue"], sched["active"]) == ("*/5 * * * *", q, True)
        assert jobs.unschedule(attacker, name) is True
        assert jobs.unschedule(attacker, name) is False
        # Handlers, process and the allowlist.
        assert jobs.create_queue(attacker, attack.handled, handler=f"{attack.app}.handle")
        jobs.enqueue(attacker, attack.handled, {"h": 1})
        tally = jobs.process(attacker, attack.handled)
        assert (tally["claimed"], tally["completed"]) == (1, 1)
        assert attacker.execute("select pgmq_jobs.allow_enqueue(%s, %s)", (q, role)).fetchone() == (
            True,
        )
        as_user_id = attacker.execute(
            "select pgmq_jobs.enqueue_as_user(%s, '{\"u\": 1}'::jsonb)", (q,)
        ).fetchone()
        assert as_user_id is not None and as_user_id[0] > dead_job
        assert attacker.execute(
            "select pgmq_jobs.disallow_enqueue(%s, %s)", (q, role)
        ).fetchone() == (True,)
        # The views.
        for view in ("queues", "workers", "schedules", "audit", "queue_stats", "alerts"):
            exists = conn.execute("select to_regclass(%s)", (f"pgmq_jobs.{view}",)).fetchone()
            if exists is not None and exists[0] is not None:
                attacker.execute(
                    sql.SQL("select * from {}").format(sql.Identifier("pgmq_jobs", view))
                )
        assert [r["queue"] for r in jobs.queues(attacker) if r["queue"] == q] == [q]
        assert jobs.drop_queue(attacker, attack.handled) is True

    assert attack.ran(conn) == []
    # The results, read by a clean session.
    handled = conn.execute(
        sql.SQL("select payload from {}.handled").format(sql.Identifier(attack.app))
    ).fetchall()
    assert handled == [({"h": 1},)]
    archived = conn.execute(
        sql.SQL("select msg_id from pgmq.{} order by 1").format(sql.Identifier(f"a_{q}"))
    ).fetchall()
    assert archived == [(ids[0],), (ids[1],)]


def _cron_commands(conn: Connection, attack: Attack) -> dict[str, str]:
    """The commands pg_cron runs for the sweep, a schedule and a handled queue."""
    role = attack.role
    jobs.create_queue(conn, attack.queue)
    jobs.create_queue(conn, attack.handled, handler=f"{attack.app}.handle")
    jobs.schedule(conn, f"{role}_cron", "0 3 * * *", attack.queue, {"from": "cron"})
    rows = dict(
        conn.execute(
            "select jobname, command from cron.job where jobname in (%s, %s, %s)",
            (
                "pgmq_jobs_sweep",
                f"pgmq_jobs_schedule_{role}_cron",
                f"pgmq_jobs_process_{attack.handled}",
            ),
        ).fetchall()
    )
    # Keep pg_cron itself from draining the test's queue meanwhile.
    conn.execute(
        "update cron.job set active = false where jobname = %s",
        (f"pgmq_jobs_process_{attack.handled}",),
    )
    assert len(rows) == 3, rows
    return rows


def _run_cron_commands(
    session: Connection, attack: Attack, commands: dict[str, str], *, drain: bool = True
) -> None:
    for jobname, command in sorted(commands.items()):
        if jobname.startswith("pgmq_jobs_process_"):
            # The command as pg_cron runs it, with a short budget instead of 55 s.
            assert command.startswith("do $drain$") and f"'{attack.handled}'" in command
            if drain:
                short = command.replace("'55'::double precision", "'0.3'::double precision")
                assert short != command
                session.execute(short)  # type: ignore[arg-type]
        else:
            session.execute(command)  # type: ignore[arg-type]


def test_cron_commands_run_by_the_superuser_ignore_planted_objects(
    attack: Attack, conn: Connection
) -> None:
    # pg_cron runs each command as the job's owner with the default search_path
    # ("$user", public): pg_catalog comes first, so planted objects stay hidden.
    commands = _cron_commands(conn, attack)
    jobs.enqueue(conn, attack.handled, {"h": 2})
    with psycopg.connect(conn.info.dsn, autocommit=True) as owner:
        owner.add_notice_handler(lambda d: attack.notices.append(d.message_primary or ""))
        owner.execute('set search_path = "$user", public')
        _run_cron_commands(owner, attack, commands)
    assert [n for n in attack.notices if n.startswith("PLANTED")] == []
    attack.notices.clear()
    assert attack.ran(conn) == []
    handled = conn.execute(
        sql.SQL("select payload from {}.handled").format(sql.Identifier(attack.app))
    ).fetchall()
    assert handled == [({"h": 2},)]
    scheduled = conn.execute(
        sql.SQL("select message from pgmq.{}").format(sql.Identifier(f"q_{attack.queue}"))
    ).fetchall()
    assert scheduled == [({"from": "cron"},)]


@pytest.mark.parametrize("search_path", HOSTILE_PATHS)
def test_cron_commands_under_a_hostile_search_path(
    attack: Attack, conn: Connection, search_path: str
) -> None:
    commands = _cron_commands(conn, attack)
    with attack.connect(search_path) as attacker:
        plant_temp(attack, attacker)
        _run_cron_commands(attacker, attack, commands, drain=False)
    assert attack.ran(conn) == []
    scheduled = conn.execute(
        sql.SQL("select message from pgmq.{}").format(sql.Identifier(f"q_{attack.queue}"))
    ).fetchall()
    assert scheduled == [({"from": "cron"},)]


def test_admin_can_drain(attack: Attack, conn: Connection) -> None:
    # The drain loop (a DO block) is no SECURITY DEFINER: the admin needs the private step.
    _cron_commands(conn, attack)
    jobs.enqueue(conn, attack.handled, {"h": 4})
    with attack.connect("public, pg_catalog") as admin:
        admin.execute(drain_command(conn, attack.handled, 0.3))  # type: ignore[arg-type]
    handled = conn.execute(
        sql.SQL("select payload from {}.handled").format(sql.Identifier(attack.app))
    ).fetchall()
    assert handled == [({"h": 4},)]


@pytest.mark.parametrize("search_path", HOSTILE_PATHS)
def test_drain_by_its_owner_under_a_hostile_search_path(
    attack: Attack, conn: Connection, search_path: str
) -> None:
    # Whoever runs the drain loop (pg_cron's job owner, or a superuser by hand) brings
    # their own search_path; the DO block pins its session's first: nothing planted runs.
    _cron_commands(conn, attack)
    jobs.enqueue(conn, attack.handled, {"h": 3})
    with psycopg.connect(conn.info.dsn, autocommit=True) as owner:
        owner.add_notice_handler(lambda d: attack.notices.append(d.message_primary or ""))
        owner.execute(sql.SQL("set search_path = {}").format(sql.SQL(search_path)))
        owner.execute(drain_command(owner, attack.handled, 0.3))  # type: ignore[arg-type]
    assert sorted(set(attack.ran(conn))) == []
    handled = conn.execute(
        sql.SQL("select payload from {}.handled").format(sql.Identifier(attack.app))
    ).fetchall()
    assert handled == [({"h": 3},)]


def test_admin_cannot_escalate_through_a_handler(attack: Attack, conn: Connection) -> None:
    # process() runs handlers as the schema owner: a handler the admin owns (not SECURITY
    # DEFINER) must be refused, or it would run the admin's SQL as the owner.
    evil = f"public.{attack.role}_evil"
    with attack.connect("pg_catalog") as admin:
        admin.execute(
            sql.SQL("create function {}(payload jsonb) returns void language plpgsql as {}").format(
                sql.SQL(evil),
                sql.Literal(f"begin execute 'alter role {attack.role} superuser'; end"),
            )
        )
        try:
            jobs.create_queue(admin, attack.handled, handler=evil)
        except psycopg.errors.InsufficientPrivilege:
            pass  # refused outright: fine
        else:
            jobs.enqueue(admin, attack.handled, {})
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                jobs.process(admin, attack.handled)
    row = conn.execute("select rolsuper from pg_roles where rolname = %s", (attack.role,))
    assert row.fetchone() == (False,)


def test_partman_maintenance_run_by_pg_cron_ignores_planted_objects(
    attack: Attack, conn: Connection
) -> None:
    # pg_partman's own functions pin no search_path and call format(text, text) and the
    # like: run as pg_cron runs the job (superuser, "$user", public), an exact match
    # planted in public would beat pg_catalog's variadic format().
    partitioned = f"{attack.queue}_p"
    jobs.create_queue(conn, partitioned, partitioned=True)
    try:
        [(command,)] = conn.execute(
            "select command from cron.job where jobname = 'pgmq_jobs_partman'"
        ).fetchall()
        with psycopg.connect(conn.info.dsn, autocommit=True) as owner:
            owner.add_notice_handler(lambda d: attack.notices.append(d.message_primary or ""))
            owner.execute('set search_path = "$user", public')
            owner.execute(command)
        # (Other tests' partitioned queues may fail their maintenance with a warning.)
        assert [n for n in attack.ran(conn) if "PLANTED" in n or n.startswith("public.")] == []
    finally:
        jobs.drop_queue(conn, partitioned)
