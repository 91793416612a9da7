"""Roles and grants: the whole privilege matrix after a real `supabase db push`, and behaviour.

Producer may only enqueue, worker only run jobs, admin everything public; PUBLIC and Supabase's
``anon``/``authenticated``/``service_role`` get nothing, even where Supabase-style default
privileges would hand every new function to ``anon`` and ``authenticated``. Signed-in users
reach exactly the allowlisted queues through ``pgmq_jobs.enqueue_as_user``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

import pgmq_jobs.client as jobs
from dbutil import dsn_to_url
from pgmq_jobs.ops import migrations
from pgmq_jobs.ops.paths import pgmq_sql_path, repo_root
from support import ROOT as SUPPORT_ROOT

Connection = psycopg.Connection[Any]

ROOT = repo_root() or SUPPORT_ROOT
SUPABASE_CLI = ROOT / "node_modules" / ".bin" / "supabase"

SUPABASE_ROLES = ("anon", "authenticated", "service_role")
PRODUCER, WORKER, ADMIN = "pgmq_jobs_producer", "pgmq_jobs_worker", "pgmq_jobs_admin"
MATRIX_ROLES = ("public", PRODUCER, WORKER, ADMIN, *SUPABASE_ROLES)

# schema_info: every client checks its release against the database's at start.
PRODUCER_FUNCTIONS = {"enqueue", "enqueue_batch", "schema_info"}
WORKER_FUNCTIONS = {
    "claim",
    "complete",
    "fail",
    "fail_batch",
    "extend",
    "release",
    "heartbeat",
    "wait_for_jobs",
    "schema_info",
    "job",
    "snooze",
    "trace_contexts",
}
# Private helpers the admin needs: the schedules view reads pg_cron through _cron_job.
ADMIN_PRIVATE = {"_cron_job"}
# Tables (not views) the admin must be able to read.
ADMIN_TABLES = {"queue_history", "enqueue_allowlist"}

TABLE_PRIVILEGES = ("select", "insert", "update", "delete", "truncate", "references", "trigger")
SEQUENCE_PRIVILEGES = ("usage", "select", "update")


# ---------------------------------------------------------------- set-up helpers


def ensure_supabase_roles(conn: Connection) -> None:
    """Create anon, authenticated and service_role as Supabase has them (cluster-wide)."""
    for role in SUPABASE_ROLES:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        if exists is None:
            create = sql.SQL("create role {} nologin noinherit").format(sql.Identifier(role))
            # Another session may create it at the same moment.
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(create)


def supabase_default_privileges(conn: Connection) -> None:
    """Supabase's default privileges, plus a global grant of every new function to anon and
    authenticated: our revokes must still win."""
    conn.execute(
        "alter default privileges in schema public"
        " grant all on functions to anon, authenticated, service_role"
    )
    conn.execute(
        "alter default privileges in schema public"
        " grant all on tables to anon, authenticated, service_role"
    )
    conn.execute(
        "alter default privileges in schema public"
        " grant all on sequences to anon, authenticated, service_role"
    )
    conn.execute("alter default privileges grant execute on functions to anon, authenticated")


def supabase_db_push(workdir: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DO_NOT_TRACK": "1", "SUPABASE_TELEMETRY_DISABLED": "1"}
    return subprocess.run(
        [
            str(SUPABASE_CLI),
            "db",
            "push",
            f"--remote={dsn_to_url(dsn)}",
            "--include-all",
            "--yes",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
        cwd=workdir,
    )


def psql_file(pg_bin_dir: Path, dsn: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(pg_bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def as_user(dsn: str, user: str) -> str:
    params = conninfo_to_dict(dsn)
    params["user"] = user
    return make_conninfo(**params)


# ---------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Grant:
    role: str
    kind: str  # function | relation | sequence | schema
    name: str
    privilege: str


def actual_grants(conn: Connection) -> set[Grant]:
    """Every privilege a matrix role holds on pgmq_jobs' routines and relations, on every
    relation and sequence in pgmq, and on both schemas."""
    roles = list(MATRIX_ROLES)
    grants: set[Grant] = set()
    rows = conn.execute(
        "select r.role, p.oid::regprocedure::text"
        " from pg_proc p cross join unnest(%s::text[]) r(role)"
        " where p.pronamespace = 'pgmq_jobs'::regnamespace"
        " and has_function_privilege(r.role, p.oid, 'execute')",
        (roles,),
    ).fetchall()
    grants |= {Grant(role, "function", name, "execute") for role, name in rows}
    rows = conn.execute(
        "select r.role, c.oid::regclass::text, x.priv from pg_class c"
        " cross join unnest(%s::text[]) r(role) cross join unnest(%s::text[]) x(priv)"
        " where c.relnamespace in ('pgmq_jobs'::regnamespace, 'pgmq'::regnamespace)"
        " and c.relkind in ('r', 'p', 'v', 'm', 'f')"
        " and has_table_privilege(r.role, c.oid, x.priv)",
        (roles, list(TABLE_PRIVILEGES)),
    ).fetchall()
    grants |= {Grant(role, "relation", name, priv) for role, name, priv in rows}
    rows = conn.execute(
        "select r.role, c.oid::regclass::text, x.priv from pg_class c"
        " cross join unnest(%s::text[]) r(role) cross join unnest(%s::text[]) x(priv)"
        " where c.relnamespace in ('pgmq_jobs'::regnamespace, 'pgmq'::regnamespace)"
        " and c.relkind = 'S' and has_sequence_privilege(r.role, c.oid, x.priv)",
        (roles, list(SEQUENCE_PRIVILEGES)),
    ).fetchall()
    grants |= {Grant(role, "sequence", name, priv) for role, name, priv in rows}
    rows = conn.execute(
        "select r.role, n.nspname, x.priv from pg_namespace n"
        " cross join unnest(%s::text[]) r(role) cross join unnest(array['usage', 'create']) x(priv)"
        " where n.nspname in ('pgmq_jobs', 'pgmq') and has_schema_privilege(r.role, n.oid, x.priv)",
        (roles,),
    ).fetchall()
    grants |= {Grant(role, "schema", name, priv) for role, name, priv in rows}
    return grants


def expected_grants(conn: Connection) -> set[Grant]:
    """The contract: producer enqueues, worker runs jobs, admin calls every public function
    and reads every view; nobody touches PGMQ's tables; PUBLIC and Supabase's roles: nothing."""
    expected: set[Grant] = set()
    for name, proname in conn.execute(
        "select p.oid::regprocedure::text, p.proname from pg_proc p"
        " where p.pronamespace = 'pgmq_jobs'::regnamespace"
    ).fetchall():
        if proname in PRODUCER_FUNCTIONS:
            expected.add(Grant(PRODUCER, "function", name, "execute"))
        if proname in WORKER_FUNCTIONS:
            expected.add(Grant(WORKER, "function", name, "execute"))
        if not proname.startswith("_") or proname in ADMIN_PRIVATE:
            expected.add(Grant(ADMIN, "function", name, "execute"))
    for (name,) in conn.execute(
        "select c.oid::regclass::text from pg_class c"
        " where c.relnamespace = 'pgmq_jobs'::regnamespace"
        " and (c.relkind = 'v' or c.relname = any(%s))",
        (list(ADMIN_TABLES),),
    ).fetchall():
        expected.add(Grant(ADMIN, "relation", name, "select"))
    for role in (PRODUCER, WORKER, ADMIN):
        expected.add(Grant(role, "schema", "pgmq_jobs", "usage"))
    return expected


def unexpected_grants(conn: Connection, *, pgmq_schema_usage: set[Grant]) -> set[Grant]:
    """Check the matrix: every expected grant is there; return the grants beyond it."""
    actual = actual_grants(conn)
    expected = expected_grants(conn) | pgmq_schema_usage
    missing = sorted(expected - actual, key=repr)
    assert not missing, f"missing grants: {missing}"
    # The matrix is not vacuous: every kind of object was looked at.
    kinds = conn.execute(
        "select count(*) filter (where c.relnamespace = 'pgmq'::regnamespace and c.relkind = 'r'),"
        " count(*) filter (where c.relnamespace = 'pgmq_jobs'::regnamespace and c.relkind = 'v')"
        " from pg_class c"
    ).fetchone()
    assert kinds is not None and kinds[0] >= 6 and kinds[1] >= 3, kinds
    assert sum(1 for g in expected if g.role == ADMIN and g.kind == "function") > 20
    return {g for g in actual - expected if not _admin_may(g)}


def _admin_may(grant: Grant) -> bool:
    """What the admin may hold beyond the required: private helpers its functions and views
    need, and reading any table of pgmq_jobs (never writing, never PGMQ's tables)."""
    return grant.role == ADMIN and (
        (grant.kind == "function" and grant.name.startswith("pgmq_jobs._"))
        or (
            grant.kind == "relation"
            and grant.name.startswith("pgmq_jobs.")
            and grant.privilege == "select"
        )
    )


def assert_privilege_matrix(conn: Connection, *, pgmq_schema_usage: set[Grant]) -> None:
    extra = unexpected_grants(conn, pgmq_schema_usage=pgmq_schema_usage)
    assert not extra, f"unexpected grants: {sorted(extra, key=repr)}"


def pgmq_schema_usage_before_push(conn: Connection) -> set[Grant]:
    """Usage on schema pgmq as PGMQ's own SQL left it (not ours to change)."""
    rows = conn.execute(
        "select r.role from unnest(%s::text[]) r(role)"
        " where (r.role = 'public' or to_regrole(r.role) is not null)"
        " and has_schema_privilege(r.role, 'pgmq', 'usage')",
        (list(MATRIX_ROLES),),
    ).fetchall()
    return {Grant(role, "schema", "pgmq", "usage") for (role,) in rows}


# ---------------------------------------------------------------- fixtures


@dataclass
class Pushed:
    dsn: str
    workdir: Path
    pgmq_usage: set[Grant]

    @property
    def migration(self) -> Path:
        return self.workdir / "supabase" / "migrations" / migrations.current_release().filename


@pytest.fixture
def pushed(empty_db: Callable[[], str], tmp_path: Path) -> Pushed:
    """A fresh database prepared like a Supabase project, then `supabase db push`ed once."""
    if not SUPABASE_CLI.exists():
        pytest.skip("Supabase CLI not installed (run `make setup`)")
    dsn = empty_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_supabase_roles(conn)
        supabase_default_privileges(conn)
        conn.execute(pgmq_sql_path().read_text(encoding="utf-8"))  # type: ignore[arg-type]
        usage = pgmq_schema_usage_before_push(conn)
    (tmp_path / "supabase").mkdir()
    shutil.copy2(ROOT / "supabase" / "config.toml", tmp_path / "supabase" / "config.toml")
    migrations.write(tmp_path / "supabase" / "migrations")
    result = supabase_db_push(tmp_path, dsn)
    assert result.returncode == 0, result.stdout + result.stderr
    return Pushed(dsn, tmp_path, usage)


@pytest.fixture
def login_role(db_dsn: str, conn: Connection) -> Iterator[Callable[..., str]]:
    """Factory: ``login_role(*granted_roles)`` creates a login role granted exactly those
    roles in the shared database and returns a DSN that logs in as it."""
    created: list[str] = []

    def _make(*granted: str) -> str:
        name = f"pjt_{uuid.uuid4().hex[:10]}"
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        created.append(name)
        for role in granted:
            conn.execute(
                sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(name))
            )
        return as_user(db_dsn, name)

    yield _make
    for name in created:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (name,)
        )
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


# ---------------------------------------------------------------- matrix tests


def test_privilege_matrix_after_supabase_db_push_twice_and_psql_reapply(
    pushed: Pushed, pg_bin_dir: Path
) -> None:
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        # Queues, so that PGMQ's per-queue tables and sequences are in the matrix too.
        jobs.create_queue(conn, "priv_a")
        jobs.create_queue(conn, "priv_b", unlogged=True)
        job_id = jobs.enqueue(conn, "priv_a", {"keep": "me"})
        assert_privilege_matrix(conn, pgmq_schema_usage=pushed.pgmq_usage)

    # A second push: the CLI finds the migration applied and changes nothing.
    again = supabase_db_push(pushed.workdir, pushed.dsn)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "up to date" in (again.stdout + again.stderr).lower()
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        assert_privilege_matrix(conn, pgmq_schema_usage=pushed.pgmq_usage)

    # The migration's SQL itself, applied twice more with psql: idempotent, grants intact,
    # and the queues, their settings and jobs untouched.
    for _ in range(2):
        result = psql_file(pg_bin_dir, pushed.dsn, pushed.migration)
        assert result.returncode == 0, result.stderr
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        assert_privilege_matrix(conn, pgmq_schema_usage=pushed.pgmq_usage)
        assert sorted(q["queue"] for q in jobs.queues(conn)) == ["priv_a", "priv_b"]
        [job] = jobs.claim(conn, "priv_a")
        assert (job.job_id, job.payload) == (job_id, {"keep": "me"})


def test_no_grants_beyond_the_matrix_not_even_on_procedures(pushed: Pushed) -> None:
    # Default privileges on functions cover procedures too: the revokes must include drain.
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        jobs.create_queue(conn, "priv_c")
        extra = unexpected_grants(conn, pgmq_schema_usage=pushed.pgmq_usage)
    assert extra == set()


def test_default_privileges_would_have_granted_anon_everything(pushed: Pushed) -> None:
    # The premise of the matrix test: without 900_grants' revokes, Supabase-style default
    # privileges hand a new function to anon. A function created now, outside sql/, shows it.
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        conn.execute("create function pgmq_jobs.not_ours() returns int language sql as 'select 1'")
        row = conn.execute(
            "select has_function_privilege('anon', 'pgmq_jobs.not_ours()', 'execute'),"
            " has_function_privilege('authenticated', 'pgmq_jobs.not_ours()', 'execute')"
        ).fetchone()
        assert row == (True, True)
        conn.execute("drop function pgmq_jobs.not_ours()")


def test_nothing_is_exposed_to_signed_in_users_by_default(pushed: Pushed) -> None:
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        jobs.create_queue(conn, "contact")
        for role in ("anon", "authenticated"):
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select pgmq_jobs.enqueue_as_user('contact', '{}')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select pgmq_jobs.enqueue('contact', '{}')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select * from pgmq_jobs.queues")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select * from pgmq.q_contact")
            conn.execute("reset role")
        assert conn.execute("select count(*) from pgmq.q_contact").fetchone() == (0,)


# ---------------------------------------------------------------- behaviour as login roles


def _queue_with_job(conn: Connection, queue: str) -> int:
    jobs.create_queue(conn, queue)
    return jobs.enqueue(conn, queue, {"n": 1})


def _state(conn: Connection, queue: str) -> tuple[Any, ...]:
    settings = conn.execute(
        "select * from pgmq_jobs.queue_settings where queue = %s", (queue,)
    ).fetchall()
    rows = conn.execute(
        sql.SQL("select msg_id, read_ct, message from pgmq.{} order by msg_id").format(
            sql.Identifier(f"q_{queue}")
        )
    ).fetchall()
    cron = conn.execute("select jobid, jobname, command from cron.job order by jobid").fetchall()
    return settings, rows, cron


def test_worker_runs_jobs_and_nothing_else(
    conn: Connection, login_role: Callable[..., str], queue_name: str
) -> None:
    job_id = _queue_with_job(conn, queue_name)
    worker_dsn = login_role(WORKER)
    queue_table = sql.Identifier("pgmq", f"q_{queue_name}")
    before = _state(conn, queue_name)
    denied: list[Any] = [
        ("select pgmq_jobs.drop_queue(%s)", (queue_name,)),
        ("select pgmq_jobs.enqueue(%s, '{}')", (queue_name,)),
        ("select pgmq_jobs.create_queue('worker_made')", ()),
        ("select pgmq_jobs.configure_queue(%s, max_attempts => 1)", (queue_name,)),
        ("select pgmq_jobs.replay(%s)", (queue_name,)),
        ("select pgmq_jobs.purge_dead_letters(%s)", (queue_name,)),
        ("select pgmq_jobs.sweep()", ()),
        ("select * from pgmq_jobs.queue_settings", ()),
        ("select * from pgmq_jobs.queues", ()),
        (sql.SQL("select * from {}").format(queue_table), ()),
        (sql.SQL("delete from {}").format(queue_table), ()),
        (sql.SQL("update {} set vt = now()").format(queue_table), ()),
        # PGMQ's own functions act with the caller's privileges: none on the tables.
        ("select pgmq.send(%s, '{}')", (queue_name,)),
        ("select * from pgmq.read(%s, 30, 1)", (queue_name,)),
        ("select pgmq.purge_queue(%s)", (queue_name,)),
        ("select pgmq.drop_queue(%s)", (queue_name,)),
        ("select pgmq.create('worker_made')", ()),
        # pg_cron: no job of its own, none of ours touched.
        ("select cron.schedule('evil', '* * * * *', 'select 1')", ()),
        ("insert into cron.job (schedule, command) values ('* * * * *', 'select 1')", ()),
        ("update cron.job set command = 'select 1'", ()),
        ("delete from cron.job", ()),
        ("select cron.unschedule('pgmq_jobs_sweep')", ()),
    ]
    with psycopg.connect(worker_dsn, autocommit=True) as worker:
        for query, params in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                worker.execute(query, params)
        [job] = jobs.claim(worker, queue_name)
        assert job.job_id == job_id
        assert jobs.complete(worker, queue_name, [(job.job_id, job.attempt)]) == 1
    settings, rows, cron = _state(conn, queue_name)
    assert (settings, cron) == (before[0], before[2])
    assert rows == []  # completed: archived, by the worker's claim/complete only
    archived = conn.execute(
        sql.SQL("select msg_id from pgmq.{}").format(sql.Identifier(f"a_{queue_name}"))
    ).fetchall()
    assert archived == [(job_id,)]


def test_producer_enqueues_but_cannot_claim(
    conn: Connection, login_role: Callable[..., str], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    producer_dsn = login_role(PRODUCER)
    with psycopg.connect(producer_dsn, autocommit=True) as producer:
        job_id = jobs.enqueue(producer, queue_name, {"from": "producer"})
        assert jobs.enqueue_batch(producer, queue_name, [{"i": 1}]) == [job_id + 1]
        for query in (
            "select * from pgmq_jobs.claim(%s)",
            "select pgmq_jobs.complete(%s, array[1]::bigint[], array[1])",
            "select * from pgmq_jobs.fail(%s, 1, 1, 'e')",
            "select * from pgmq_jobs.fail_batch(%s, array[1]::bigint[], array[1], array['e'])",
            "select * from pgmq_jobs.dead_letters(%s)",
            "select pgmq_jobs.drop_queue(%s)",
            "select pgmq_jobs.allow_enqueue(%s, 'authenticated')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                producer.execute(query, (queue_name,))
    rows = conn.execute(
        sql.SQL("select msg_id, read_ct from pgmq.{} order by msg_id").format(
            sql.Identifier(f"q_{queue_name}")
        )
    ).fetchall()
    assert rows == [(job_id, 0), (job_id + 1, 0)]  # enqueued, never read


# ---------------------------------------------------------------- enqueue_as_user


@pytest.fixture
def supabase_db(fresh_db: Callable[[], str]) -> Iterator[Connection]:
    """A fresh database where Supabase's roles exist (superuser, autocommit connection)."""
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as connection:
        ensure_supabase_roles(connection)
        yield connection


def _enqueue_as(conn: Connection, role: str, queue: str, payload: dict[str, Any]) -> int:
    """As PostgREST calls a function: one transaction under SET LOCAL ROLE."""
    with conn.transaction():
        conn.execute("select set_config('role', %s, true)", (role,))
        row = conn.execute(
            "select pgmq_jobs.enqueue_as_user(%s, %s)", (queue, Jsonb(payload))
        ).fetchone()
    assert row is not None
    return int(row[0])


def scalar(conn: Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()  # type: ignore[call-overload]
    assert row is not None
    return row[0]


def _jobs_in(conn: Connection, queue: str) -> list[tuple[int, Any]]:
    return conn.execute(
        sql.SQL("select msg_id, message from pgmq.{} order by msg_id").format(
            sql.Identifier(f"q_{queue}")
        )
    ).fetchall()


def test_enqueue_as_user_only_into_allowlisted_queues(supabase_db: Connection) -> None:
    conn = supabase_db
    jobs.create_queue(conn, "contact_form")
    jobs.create_queue(conn, "internal")
    assert conn.execute(
        "select pgmq_jobs.allow_enqueue('contact_form', 'authenticated')"
    ).fetchone() == (True,)
    assert conn.execute(
        "select pgmq_jobs.allow_enqueue('contact_form', 'authenticated')"
    ).fetchone() == (False,)

    job_id = _enqueue_as(conn, "authenticated", "contact_form", {"msg": "hi"})
    assert _jobs_in(conn, "contact_form") == [(job_id, {"msg": "hi"})]

    # The same as a plain SET ROLE session; the payload rules of enqueue still apply.
    conn.execute("set role authenticated")
    try:
        for queue in ("internal", "no_such_queue", "Contact_Form", "contact_form_dlq"):
            with pytest.raises(
                psycopg.errors.InsufficientPrivilege,
                match=f"role authenticated may not enqueue into queue '{queue}'",
            ):
                conn.execute("select pgmq_jobs.enqueue_as_user(%s, '{}')", (queue,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not enqueue"):
            conn.execute("select pgmq_jobs.enqueue_as_user(null, '{}')")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="must be a JSON object"):
            conn.execute("select pgmq_jobs.enqueue_as_user('contact_form', '[1]')")
        # Granted enqueue_as_user, and nothing else.
        for query in (
            "select pgmq_jobs.enqueue('contact_form', '{}')",
            "select * from pgmq_jobs.claim('contact_form')",
            "select pgmq_jobs.allow_enqueue('internal', 'authenticated')",
            "select * from pgmq_jobs.enqueue_allowlist",
            "select * from pgmq.q_contact_form",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(query)
    finally:
        conn.execute("reset role")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _enqueue_as(conn, "anon", "contact_form", {"msg": "anonymous"})
    assert _jobs_in(conn, "contact_form") == [(job_id, {"msg": "hi"})]
    assert _jobs_in(conn, "internal") == []

    # The allowlist is visible to admins and audited.
    rows = conn.execute(
        "select queue, role_name from pgmq_jobs.enqueue_allowlist order by 1, 2"
    ).fetchall()
    assert rows == [("contact_form", "authenticated")]
    actions = conn.execute(
        "select action, change ->> 'role' from pgmq_jobs.audit where queue = 'contact_form'"
        " and action like '%allow_enqueue' order by id"
    ).fetchall()
    assert actions == [("allow_enqueue", "authenticated")]


def test_disallow_enqueue_takes_it_back(supabase_db: Connection) -> None:
    conn = supabase_db
    jobs.create_queue(conn, "signups")
    jobs.create_queue(conn, "feedback")
    conn.execute("select pgmq_jobs.allow_enqueue('signups', 'authenticated')")
    conn.execute("select pgmq_jobs.allow_enqueue('feedback', 'authenticated')")
    assert conn.execute(
        "select pgmq_jobs.disallow_enqueue('signups', 'authenticated')"
    ).fetchone() == (True,)
    assert conn.execute(
        "select pgmq_jobs.disallow_enqueue('signups', 'authenticated')"
    ).fetchone() == (False,)
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="may not enqueue into queue 'signups'"
    ):
        _enqueue_as(conn, "authenticated", "signups", {})
    _enqueue_as(conn, "authenticated", "feedback", {})
    # The last queue gone: the grants allow_enqueue made go too.
    conn.execute("select pgmq_jobs.disallow_enqueue('feedback', 'authenticated')")
    row = conn.execute(
        "select has_function_privilege('authenticated', 'pgmq_jobs.enqueue_as_user(text, jsonb)',"
        " 'execute'), has_schema_privilege('authenticated', 'pgmq_jobs', 'usage')"
    ).fetchone()
    assert row == (False, False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        _enqueue_as(conn, "authenticated", "feedback", {})
    assert len(_jobs_in(conn, "feedback")) == 1 and _jobs_in(conn, "signups") == []


def test_dropping_a_queue_forgets_its_allowlist(supabase_db: Connection) -> None:
    conn = supabase_db
    jobs.create_queue(conn, "ephemeral")
    conn.execute("select pgmq_jobs.allow_enqueue('ephemeral', 'authenticated')")
    jobs.drop_queue(conn, "ephemeral")
    jobs.create_queue(conn, "ephemeral")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not enqueue"):
        _enqueue_as(conn, "authenticated", "ephemeral", {})


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            "select pgmq_jobs.allow_enqueue('known', 'no_such_role')",
            psycopg.errors.UndefinedObject,
            "unknown role no_such_role",
        ),
        (
            "select pgmq_jobs.allow_enqueue('known', 'public')",
            psycopg.errors.UndefinedObject,
            "unknown role public",
        ),
        (
            "select pgmq_jobs.allow_enqueue('known', 'Authenticated')",
            psycopg.errors.UndefinedObject,
            'unknown role "Authenticated"',
        ),
        (
            "select pgmq_jobs.allow_enqueue('known', null)",
            psycopg.errors.NullValueNotAllowed,
            "role_name must not be null",
        ),
        (
            "select pgmq_jobs.allow_enqueue('unknown_q', 'authenticated')",
            psycopg.errors.UndefinedObject,
            "unknown queue 'unknown_q'",
        ),
        (
            "select pgmq_jobs.disallow_enqueue('unknown_q', 'authenticated')",
            psycopg.errors.UndefinedObject,
            "unknown queue 'unknown_q'",
        ),
    ],
)
def test_allow_enqueue_bad_input(
    supabase_db: Connection, call: str, error: type[Exception], message: str
) -> None:
    jobs.create_queue(supabase_db, "known")
    with pytest.raises(error, match=message):
        supabase_db.execute(call)
    assert supabase_db.execute("select count(*) from pgmq_jobs.enqueue_allowlist").fetchone() == (
        0,
    )
    row = supabase_db.execute(
        "select has_function_privilege('authenticated', 'pgmq_jobs.enqueue_as_user(text, jsonb)',"
        " 'execute')"
    ).fetchone()
    assert row == (False,)


def test_login_role_member_of_an_allowed_role_may_enqueue(
    conn: Connection, login_role: Callable[..., str], queue_name: str
) -> None:
    # Membership counts as it does for grants: a login role granted an allowed role enqueues.
    ensure_supabase_roles(conn)
    jobs.create_queue(conn, queue_name)
    other = f"{queue_name}_other"
    jobs.create_queue(conn, other)
    group = f"pjg_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(group)))
    try:
        conn.execute("select pgmq_jobs.allow_enqueue(%s, %s)", (queue_name, group))
        member_dsn = login_role(group)
        with psycopg.connect(member_dsn, autocommit=True) as member:
            row = member.execute(
                "select pgmq_jobs.enqueue_as_user(%s, '{\"a\": 1}')", (queue_name,)
            ).fetchone()
            assert row is not None and row[0] >= 1
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not enqueue"):
                member.execute("select pgmq_jobs.enqueue_as_user(%s, '{}')", (other,))
        assert len(_jobs_in(conn, queue_name)) == 1 and _jobs_in(conn, other) == []
    finally:
        jobs.drop_queue(conn, queue_name)
        jobs.drop_queue(conn, other)
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(group)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(group)))


def test_allowlist_survives_reapplying_the_migration(pushed: Pushed, pg_bin_dir: Path) -> None:
    # 900_grants.sql revokes everything from authenticated, then re-grants what the
    # allowlist says: an allowed role keeps exactly enqueue_as_user across re-installs.
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        jobs.create_queue(conn, "contact")
        conn.execute("select pgmq_jobs.allow_enqueue('contact', 'authenticated')")
        _enqueue_as(conn, "authenticated", "contact", {"n": 1})
    result = psql_file(pg_bin_dir, pushed.dsn, pushed.migration)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        _enqueue_as(conn, "authenticated", "contact", {"n": 2})
        assert len(_jobs_in(conn, "contact")) == 2


def test_allow_enqueue_again_restores_access_after_reapplying_the_migration(
    pushed: Pushed, pg_bin_dir: Path
) -> None:
    # The README's advice until the re-install keeps the grants: allow_enqueue once more.
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        jobs.create_queue(conn, "contact")
        conn.execute("select pgmq_jobs.allow_enqueue('contact', 'authenticated')")
    result = psql_file(pg_bin_dir, pushed.dsn, pushed.migration)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pushed.dsn, autocommit=True) as conn:
        assert scalar(conn, "select pgmq_jobs.allow_enqueue('contact', 'authenticated')") is False
        job_id = _enqueue_as(conn, "authenticated", "contact", {"n": 1})
        assert _jobs_in(conn, "contact") == [(job_id, {"n": 1})]


def test_the_matrix_covers_this_rounds_functions(conn: Connection) -> None:
    """0.2.0's functions are in the matrix with the roles the contract gives them: cancel
    and reschedule for the admin, job for admin and worker, snooze for the worker (and
    admin), schema_info (the release check) for every role."""
    expected = expected_grants(conn)

    def roles(proname: str) -> set[str]:
        return {
            g.role
            for g in expected
            if g.kind == "function" and g.name.startswith(f"pgmq_jobs.{proname}(")
        }

    assert roles("cancel") == roles("reschedule") == {ADMIN}
    assert roles("job") == roles("snooze") == {ADMIN, WORKER}
    assert roles("schema_info") == {ADMIN, WORKER, PRODUCER}
    for proname in ("cancel", "reschedule", "job", "snooze", "schema_info"):
        rows = conn.execute(
            "select r.role from pg_proc as p cross join unnest(%s::text[]) as r (role)"
            " where p.pronamespace = 'pgmq_jobs'::regnamespace and p.proname = %s"
            " and has_function_privilege(r.role, p.oid, 'execute')",
            ([PRODUCER, WORKER, ADMIN, "public"], proname),
        ).fetchall()
        assert {r[0] for r in rows} == roles(proname), proname
