"""Issue 18, findings 1, 3 and 6: a queue's handler is bound by identity, checked before every
job, and only a role that may EXECUTE it can configure it; the schema owner keeps its rights.

Each test builds the attack of the review: a SECURITY DEFINER handler owned by an application
role that changes itself while it runs, with an ``anyelement`` overload of its name waiting to
be called in its place as the schema's owner (a superuser here), or an admin naming a function
it may not call. Every test runs in a fresh database (no pg_cron drain races it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgmq_jobs.client as jobs
from pgmq_jobs.ops.install import install
from pgmq_jobs.ops.paths import pgmq_sql_path, repo_root
from support import drain_command, make_visible

Connection = psycopg.Connection[Any]

RELEASED_0_1_0 = repo_root() / "supabase" / "migrations" / "20261123000000_pgmq_jobs.sql"


@dataclass
class Tenant:
    """A database with an application role ``role`` that owns schema ``s`` (its handlers and
    a table ``s.ran`` where every function records who it ran as), and an admin login role
    ``admin`` (member of pgmq_jobs_admin, not a superuser)."""

    dsn: str
    role: str
    admin: str
    owner: Connection

    def connect(self, user: str) -> Connection:
        return psycopg.connect(self.dsn, user=user, autocommit=True)

    def ran(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.owner.execute("select fn, who from s.ran order by id")]

    def is_superuser(self, role: str) -> bool:
        row = self.owner.execute("select rolsuper from pg_roles where rolname = %s", (role,))
        return bool(row.fetchone()[0])  # type: ignore[index]


@pytest.fixture
def tenant(fresh_db: Callable[[], str]) -> Iterator[Tenant]:
    dsn = fresh_db()
    suffix = uuid.uuid4().hex[:8]
    role, admin = f"tenant_{suffix}", f"tadmin_{suffix}"
    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        owner.execute(sql.SQL("create role {} login").format(sql.Identifier(admin)))
        owner.execute(sql.SQL("grant pgmq_jobs_admin to {}").format(sql.Identifier(admin)))
        owner.execute(sql.SQL("create schema s authorization {}").format(sql.Identifier(role)))
        owner.execute(
            sql.SQL(
                "create table s.ran (id serial primary key, fn text, who text);"
                " alter table s.ran owner to {role};"
                " grant insert on s.ran to public; grant usage on sequence s.ran_id_seq to public;"
                " grant usage on schema s to public"
            ).format(role=sql.Identifier(role))
        )
        try:
            yield Tenant(dsn, role, admin, owner)
        finally:
            for r in (role, admin):
                owner.execute(sql.SQL("drop owned by {}").format(sql.Identifier(r)))
                owner.execute(sql.SQL("drop role {}").format(sql.Identifier(r)))


def _as(t: Tenant, who: str, statement: str) -> None:
    with t.connect(who) as c:
        c.execute(statement)


# The overload waiting in the wings: were it ever called, it would run as the caller, and
# process() runs as the pgmq_jobs owner (a superuser here).
OVERLOAD = """
create function s.h(payload anyelement) returns void language plpgsql as $$
begin
    insert into s.ran (fn, who) values ('overload', current_user);
end
$$;
"""


def _handler(body: str) -> str:
    """A SECURITY DEFINER s.h(jsonb) of the tenant role that records itself, then runs body."""
    return f"""
create function s.h(payload jsonb) returns void language plpgsql security definer
set search_path = pg_catalog, pg_temp as $$
begin
    insert into s.ran (fn, who) values ('handler', current_user);
    {body}
end
$$;
"""


@pytest.mark.parametrize(
    "self_drop",
    ["drop function s.h(jsonb) cascade", "drop function s.h(jsonb)"],
)
def test_a_handler_that_drops_itself_never_hands_its_name_to_an_overload(
    tenant: Tenant, self_drop: str
) -> None:
    t = tenant
    _as(t, t.role, _handler(f"if payload ? 'drop' then {self_drop}; end if;") + OVERLOAD)
    jobs.create_queue(t.owner, "selfdrop", handler="s.h", max_attempts=5, retry_base=60)
    jobs.enqueue(t.owner, "selfdrop", {"drop": True})
    ids = jobs.enqueue_batch(t.owner, "selfdrop", [{"n": i} for i in range(3)])

    summary = jobs.process(t.owner, "selfdrop")  # one call: the whole batch in one transaction
    assert summary["claimed"] == 4
    assert ("overload", t.owner.info.user) not in t.ran()
    assert [fn for fn, _ in t.ran()] == ["handler"] * len(t.ran())
    assert not t.is_superuser(t.role)
    if "cascade" in self_drop:
        # The handler is gone: every later job of the batch failed, saying what to do.
        assert (summary["completed"], summary["retry"]) == (1, 3)
        errors = [
            r[0]
            for r in t.owner.execute(
                "select headers -> 'errors' -> -1 ->> 'error' from pgmq.q_selfdrop"
                " where msg_id = any(%s)",
                (ids,),
            )
        ]
        assert len(errors) == 3
        for error in errors:
            assert "is not the function it was configured with" in error
            assert "configure_queue('selfdrop', handler => 's.h(jsonb)')" in error
    else:
        # While process() runs it, the handler cannot even be dropped: that job fails.
        assert (summary["completed"], summary["retry"]) == (3, 1)
        assert t.owner.execute("select to_regprocedure('s.h(jsonb)') is not null").fetchone() == (
            True,
        )


def test_the_drain_loop_never_calls_an_overload_either(tenant: Tenant) -> None:
    t = tenant
    _as(t, t.role, _handler("drop function s.h(jsonb) cascade;") + OVERLOAD)
    jobs.create_queue(t.owner, "drained", handler="s.h", retry_base=60)
    jobs.enqueue_batch(t.owner, "drained", [{"n": i} for i in range(3)])
    t.owner.execute(drain_command(t.owner, "drained", 0.5))  # type: ignore[arg-type]
    assert [fn for fn, _ in t.ran()] == ["handler"]
    assert not t.is_superuser(t.role)


def test_a_handler_is_never_looked_up_by_name_again(tenant: Tenant) -> None:
    # Configured, then renamed away and replaced by another s.h(jsonb): neither runs (the
    # bound one is no longer what the queue names, the new one was never bound) until an
    # admin binds the new one; the audit trail shows the new binding.
    t = tenant
    _as(t, t.role, _handler(""))
    jobs.create_queue(t.owner, "renamed", handler="s.h", retry_base=1, jitter="none")
    [before] = [q for q in jobs.queues(t.owner) if q["queue"] == "renamed"]
    assert before["handler"] == "s.h(jsonb)"
    _as(t, t.role, "alter function s.h(jsonb) rename to h_old")
    _as(t, t.role, _handler(""))
    job = jobs.enqueue(t.owner, "renamed", {})
    assert jobs.process(t.owner, "renamed")["retry"] == 1
    assert t.ran() == []

    jobs.configure_queue(t.owner, "renamed", handler="s.h")
    make_visible(t.owner, "renamed", job)
    assert jobs.process(t.owner, "renamed")["completed"] == 1
    assert t.ran() == [("handler", t.role)]
    [change] = [r["change"] for r in jobs.audit(t.owner, "renamed", 1)]
    assert set(change) == {"handler_oid", "handler_check"}
    assert change["handler_check"]["execute"] is True


def test_a_restored_database_asks_for_the_handler_to_be_bound_again(tenant: Tenant) -> None:
    # A dump and restore gives every function a new identity; dropping and re-creating the
    # handler does the same here. Its jobs fail with an error that says what to run.
    t = tenant
    _as(t, t.role, _handler(""))
    jobs.create_queue(t.owner, "restored", handler="s.h", max_attempts=1)
    _as(t, t.role, "drop function s.h(jsonb)")
    _as(t, t.role, _handler(""))
    jobs.enqueue(t.owner, "restored", {})
    assert jobs.process(t.owner, "restored")["dead"] == 1
    [letter] = jobs.dead_letters(t.owner, "restored")
    assert "restored from a dump" in (letter.last_error or "")
    assert "pgmq_jobs.configure_queue('restored', handler => 's.h(jsonb)')" in (
        letter.last_error or ""
    )
    assert t.ran() == []


def test_the_handler_is_checked_before_every_job(tenant: Tenant) -> None:
    # The handler turns itself into a SECURITY INVOKER function on its first job: the next
    # jobs of the same process() call would run it as the pgmq_jobs owner.
    t = tenant
    _as(
        t,
        t.role,
        _handler("if payload ? 'flip' then alter function s.h(jsonb) security invoker; end if;"),
    )
    jobs.create_queue(t.owner, "flipped", handler="s.h", retry_base=60)
    jobs.enqueue(t.owner, "flipped", {"flip": True})
    jobs.enqueue_batch(t.owner, "flipped", [{"n": 1}, {"n": 2}])
    summary = jobs.process(t.owner, "flipped")
    assert (summary["completed"], summary["retry"]) == (1, 2)
    assert t.ran() == [("handler", t.role)]


def test_an_admin_cannot_configure_a_handler_it_may_not_execute(tenant: Tenant) -> None:
    t = tenant
    _as(
        t,
        t.role,
        "create function s.grant_credit(payload jsonb) returns void language plpgsql"
        " security definer set search_path = pg_catalog, pg_temp as"
        " $$ begin insert into s.ran (fn, who) values ('grant_credit', current_user); end $$;"
        " revoke all on function s.grant_credit(jsonb) from public",
    )
    jobs.create_queue(t.owner, "credits")
    with t.connect(t.admin) as admin:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not execute"):
            jobs.configure_queue(admin, "credits", handler="s.grant_credit")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not execute"):
            jobs.create_queue(admin, "credits2", handler="s.grant_credit")
    # Through SET ROLE from a superuser session: the role acting is the one checked.
    t.owner.execute(sql.SQL("set role {}").format(sql.Identifier(t.admin)))
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not execute"):
            jobs.configure_queue(t.owner, "credits", handler="s.grant_credit")
    finally:
        t.owner.execute("reset role")
    assert [q["handler"] for q in jobs.queues(t.owner) if q["queue"] == "credits"] == [None]
    assert t.ran() == []

    # Granted EXECUTE, the admin may, and the audit row records the check.
    _as(t, t.role, f"grant execute on function s.grant_credit(jsonb) to {t.admin}")
    with t.connect(t.admin) as admin:
        settings = jobs.configure_queue(admin, "credits", handler="s.grant_credit")
        assert settings["handler"] == "s.grant_credit(jsonb)"
    [row] = jobs.audit(t.owner, "credits", 1)
    assert row["role"] == t.admin and row["action"] == "configure_queue"
    assert row["change"]["handler_check"] == {
        "role": t.admin,
        "execute": True,
        "function": "s.grant_credit(jsonb)",
    }
    assert row["change"]["handler"] == {"from": None, "to": "s.grant_credit(jsonb)"}


def test_a_temporary_function_cannot_be_a_handler(tenant: Tenant) -> None:
    t = tenant
    jobs.create_queue(t.owner, "temps")
    with t.connect(t.admin) as admin:
        admin.execute(
            "create function pg_temp.h(payload jsonb) returns void language sql security definer"
            " as 'select null'"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="temporary function"):
            jobs.configure_queue(admin, "temps", handler="pg_temp.h")


def test_a_handler_with_the_wrong_shape_is_refused(tenant: Tenant) -> None:
    t = tenant
    jobs.create_queue(t.owner, "shapes")
    _as(t, t.role, "create procedure s.p(payload jsonb) language sql security definer as ''")
    with pytest.raises(psycopg.errors.UndefinedFunction, match="function taking one jsonb"):
        jobs.configure_queue(t.owner, "shapes", handler="s.p")
    with pytest.raises(psycopg.errors.UndefinedFunction, match="not a function taking"):
        jobs.configure_queue(t.owner, "shapes", handler="s.nothing")


def test_disallow_enqueue_refuses_the_schema_owner(tenant: Tenant) -> None:
    t = tenant
    jobs.create_queue(t.owner, "owned")
    [(owner,)] = t.owner.execute(
        "select nspowner::regrole::text from pg_namespace where nspname = 'pgmq_jobs'"
    ).fetchall()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="owns schema pgmq_jobs"):
        t.owner.execute("select pgmq_jobs.disallow_enqueue('owned', %s)", (owner,))
    assert t.owner.execute(
        "select has_schema_privilege(%s, 'pgmq_jobs', 'usage')", (owner,)
    ).fetchone() == (True,)
    # Any other role is still taken back as before.
    t.owner.execute("select pgmq_jobs.allow_enqueue('owned', %s)", (t.role,))
    assert t.owner.execute(
        "select pgmq_jobs.disallow_enqueue('owned', %s)", (t.role,)
    ).fetchone() == (True,)


def test_the_upgrade_binds_the_handlers_of_existing_queues(empty_db: Callable[[], str]) -> None:
    # A 0.1.0 database held handlers by name ('app.h'): the upgrade binds each to the function
    # its name gives then (audited); one whose function is gone stays unbound and its jobs
    # fail, asking for it to be configured again.
    dsn = empty_db()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(pgmq_sql_path().read_text(encoding="utf-8"))  # type: ignore[arg-type]
        c.execute(RELEASED_0_1_0.read_text(encoding="utf-8"))  # type: ignore[arg-type]
        c.execute(
            "create schema app; create table app.ran (payload jsonb);"
            " create function app.h(payload jsonb) returns void language sql"
            " as 'insert into app.ran values (payload)';"
            " create function app.gone(payload jsonb) returns void language sql as 'select null'"
        )
        jobs.create_queue(c, "kept", handler="app.h")
        jobs.create_queue(c, "lost", handler="app.gone", max_attempts=1)
        c.execute("drop function app.gone(jsonb)")
    install(dsn)
    install(dsn)  # the step ran once; a second install changes nothing
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute(
            "select queue, handler, handler_oid = to_regprocedure('app.h(jsonb)')"
            " from pgmq_jobs.queue_settings order by queue"
        ).fetchall()
        assert rows == [("kept", "app.h(jsonb)", True), ("lost", "app.gone(jsonb)", None)]
        [bound] = [r for r in jobs.audit(c) if r["action"] == "bind_handler"]
        assert bound["queue"] == "kept" and bound["change"]["handler"] == "app.h(jsonb)"
        jobs.enqueue(c, "kept", {"n": 1})
        assert jobs.process(c, "kept")["completed"] == 1
        assert c.execute("select payload from app.ran").fetchall() == [({"n": 1},)]
        jobs.enqueue(c, "lost", {"n": 2})
        assert jobs.process(c, "lost")["dead"] == 1
        [letter] = jobs.dead_letters(c, "lost")
        assert "configure_queue('lost', handler => 'app.gone(jsonb)')" in (letter.last_error or "")
