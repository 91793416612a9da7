"""plpy/: the PL/Python extensions for self-hosted Postgres (``install --with-plpython``).

Every case runs twice: against the plain-Python functions of ``plpy/pgmq_jobs_plpy`` and against
the ``pgmq_jobs_plpy`` functions the installer generated from them, in a real database. Then
payload contracts through enqueue, privileges, and the install paths with and without
plpython3u. Cron cases and the pg_cron poke are in test_plpy_cron.py.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

import pgmq_jobs.client as jobs
import pgmq_jobs.ops.plpython as plpython
from apps.harness import CLI
from pgmq_jobs.ops.install import install
from pgmq_jobs.ops.plpython import load_plain

Connection = psycopg.Connection[Any]


# ---------------------------------------------------------------- two implementations


class ImplError(Exception):
    """A function refused its input: the message the caller sees, and the SQLSTATE."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


class PlainImpl:
    """The plain-Python functions, imported from plpy/."""

    name = "python"

    def __init__(self) -> None:
        self.jsonschema_check = load_plain("jsonschema_check")
        self.cron = load_plain("cron")

    def validate(self, schema: Any, payload: Any) -> list[str]:
        # In the database the server's jsonschema runs; here the test environment's.
        pytest.importorskip("jsonschema", reason="jsonschema is not installed in this venv")
        try:
            return list(self.jsonschema_check.validate_json_schema(schema, payload))
        except ValueError as exc:
            raise ImplError(str(exc), getattr(exc, "sqlstate", None)) from exc

    def cron_check(self, expr: str | None) -> str | None:
        message: str | None = self.cron.cron_check(expr)
        return message

    def next_runs(self, expr: str, n: int, after: datetime) -> list[datetime]:
        try:
            return list(self.cron.next_runs(expr, n, after))
        except ValueError as exc:
            raise ImplError(str(exc), getattr(exc, "sqlstate", None)) from exc


class DbImpl:
    """The installed ``language plpython3u`` functions, called through SQL."""

    name = "plpython"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _rows(self, query: Any, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise ImplError(exc.diag.message_primary or str(exc), exc.sqlstate) from exc

    def validate(self, schema: Any, payload: Any) -> list[str]:
        [(violations,)] = self._rows(
            "select pgmq_jobs_plpy.validate_json_schema(%s, %s)", (Jsonb(schema), Jsonb(payload))
        )
        return list(violations)

    def cron_check(self, expr: str | None) -> str | None:
        [(message,)] = self._rows("select pgmq_jobs_plpy.cron_check(%s)", (expr,))
        return message  # type: ignore[no-any-return]

    def next_runs(self, expr: str, n: int, after: datetime) -> list[datetime]:
        rows = self._rows(
            "select t from pgmq_jobs_plpy.cron_next_runs(%s, %s, %s) as t", (expr, n, after)
        )
        return [row[0] for row in rows]


Impl = PlainImpl | DbImpl


def create_plpy_database(cluster_dsn: str, template: str, created: list[str]) -> str:
    """A new database cloned from the test template, then ``install(with_plpython=True)``."""
    name = f"pgmq_jobs_plpy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    created.append(name)
    params = conninfo_to_dict(cluster_dsn)
    params["dbname"] = name
    dsn = make_conninfo(**params)
    report = install(dsn, with_plpython=True)
    assert report.plpython is True, report.summary()
    return dsn


@pytest.fixture(scope="module")
def plpy_dsn(cluster_dsn: str, template_db: str, _session_databases: list[str]) -> str:
    """One database per module with the PL/Python functions installed."""
    return create_plpy_database(cluster_dsn, template_db, _session_databases)


IMPLS = ["python", "plpython"]


def implementation(kind: str, dsn: str) -> Iterator[Impl]:
    """The ``impl`` fixture's body: plain Python, or the functions installed at ``dsn``."""
    if kind == "python":
        yield PlainImpl()
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield DbImpl(conn)


@pytest.fixture(scope="module", params=IMPLS)
def impl(request: pytest.FixtureRequest, plpy_dsn: str) -> Iterator[Impl]:
    yield from implementation(request.param, plpy_dsn)


@pytest.fixture
def pconn(plpy_dsn: str) -> Iterator[Connection]:
    with psycopg.connect(plpy_dsn, autocommit=True) as connection:
        yield connection


# ---------------------------------------------------------------- JSON Schema cases

ORDER = {
    "type": "object",
    "required": ["email", "items"],
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "format": "email"},
        "priority": {"enum": ["low", "high"]},
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                    "qty": {"type": "integer", "minimum": 1},
                },
            },
        },
        "odd key": {"type": "boolean"},
    },
}
GOOD_ORDER = {"email": "ada@example.com", "items": [{"sku": "ABC-1", "qty": 2}]}

TOO_SHORT = "is too short|should be non-empty"

# (id, schema, payload, [(path, regex in the message)]): every violation, in order.
SCHEMA_CASES: list[tuple[str, Any, Any, list[tuple[str, str]]]] = [
    ("valid", ORDER, GOOD_ORDER, []),
    (
        "missing-required",
        ORDER,
        {"items": [{"sku": "ABC-1", "qty": 1}]},
        [("$", "'email' is a required property")],
    ),
    (
        "every-violation-by-path",
        ORDER,
        {
            "email": "not-an-address",
            "priority": "urgent",
            "items": [{"sku": "ABC-1", "qty": 1}, {"sku": "abc", "qty": 0}, {"qty": "2"}],
            "odd key": "yes",
            "colour": "red",
        },
        [
            ("$", "'colour' was unexpected"),
            ("$.email", "is not a 'email'"),
            ("$.items[1].qty", "less than the minimum of 1"),
            ("$.items[1].sku", "does not match"),
            ("$.items[2]", "'sku' is a required property"),
            ("$.items[2].qty", "is not of type 'integer'"),
            ('$["odd key"]', "is not of type 'boolean'"),
            ("$.priority", r"is not one of \['low', 'high'\]"),
        ],
    ),
    # jsonschema 4.10 (Debian 12) says "is too short", newer ones "should be non-empty".
    ("empty-array", ORDER, {"email": "a@b.c", "items": []}, [("$.items", TOO_SHORT)]),
    (
        "draft-07",
        {"$schema": "http://json-schema.org/draft-07/schema#", "required": ["id"]},
        {"name": "x"},
        [("$", "'id' is a required property")],
    ),
    ("true-schema", True, {"anything": [1, 2]}, []),
    ("not-object-payload", {"type": "object"}, {"a": 1}, []),
]


def _ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [case[0] for case in cases]


@pytest.mark.parametrize(
    ("case", "schema", "payload", "expected"), SCHEMA_CASES, ids=_ids(SCHEMA_CASES)
)
def test_validate_json_schema_names_every_violation_by_path(
    impl: Impl, case: str, schema: Any, payload: Any, expected: list[tuple[str, str]]
) -> None:
    violations = impl.validate(schema, payload)
    assert len(violations) == len(expected), violations
    for violation, (path, words) in zip(violations, expected, strict=True):
        assert violation.startswith(f"{path}: "), (violation, path)
        assert re.search(words, violation[len(path) + 2 :]), (violation, words)


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "nope"}, "not a valid JSON Schema at $.type"),
        ({"properties": {"a": {"minimum": "one"}}}, "not a valid JSON Schema at $.properties.a"),
        ([1, 2], "must be an object or a boolean"),
    ],
)
def test_an_invalid_schema_is_an_error_not_a_violation(impl: Impl, schema: Any, words: str) -> None:
    with pytest.raises(ImplError) as info:
        impl.validate(schema, {"a": 1})
    assert words in info.value.message
    assert info.value.sqlstate == "22023"


# ---------------------------------------------------------------- payload contracts in enqueue

CONTACT = {
    "type": "object",
    "required": ["email", "name"],
    "properties": {"email": {"type": "string"}, "name": {"type": "string", "minLength": 1}},
}


def depth(conn: Connection, queue: str) -> int:
    row = conn.execute(
        sql.SQL("select count(*) from pgmq.{}").format(sql.Identifier(f"q_{queue}"))
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_queue_uses_the_plpython_validator(pconn: Connection) -> None:
    assert pconn.execute("select pgmq_jobs._schema_validator()").fetchone() == ("plpython",)


def test_a_schema_violating_enqueue_is_refused_naming_every_violation(
    pconn: Connection, queue_name: str
) -> None:
    jobs.create_queue(pconn, queue_name)
    pconn.execute(
        "select pgmq_jobs.configure_queue(%s, payload_schema => %s)", (queue_name, Jsonb(CONTACT))
    )
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        jobs.enqueue(pconn, queue_name, {"name": "", "email": 42})
    message = info.value.diag.message_primary or ""
    assert message.startswith("payload violates the queue's schema: ")
    detail = (info.value.diag.message_detail or "").splitlines()
    assert len(detail) == 2, detail
    assert detail[0].startswith("$.email: ") and "not of type 'string'" in detail[0]
    assert detail[1].startswith("$.name: ") and re.search(TOO_SHORT, detail[1])
    assert all(line in message for line in detail)
    assert depth(pconn, queue_name) == 0

    job_id = jobs.enqueue(pconn, queue_name, {"name": "Ada", "email": "ada@example.com"})
    assert depth(pconn, queue_name) == 1
    [job] = jobs.claim(pconn, queue_name)
    assert (job.job_id, job.payload["name"]) == (job_id, "Ada")


def test_enqueue_batch_names_the_bad_payload_and_enqueues_nothing(
    pconn: Connection, queue_name: str
) -> None:
    jobs.create_queue(pconn, queue_name)
    pconn.execute(
        "select pgmq_jobs.configure_queue(%s, payload_schema => %s)", (queue_name, Jsonb(CONTACT))
    )
    good = {"name": "Ada", "email": "ada@example.com"}
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        jobs.enqueue_batch(pconn, queue_name, [good, good, {"name": "Bob"}, {"email": "x"}])
    message = info.value.diag.message_primary or ""
    assert message.startswith("payloads[3] violates the queue's schema: ")
    assert "$: 'email' is a required property" in message
    assert depth(pconn, queue_name) == 0
    assert len(jobs.enqueue_batch(pconn, queue_name, [good, good])) == 2
    assert depth(pconn, queue_name) == 2


def test_a_producer_enqueues_through_the_schema_without_a_grant_on_it(
    pconn: Connection, queue_name: str
) -> None:
    jobs.create_queue(pconn, queue_name)
    pconn.execute(
        "select pgmq_jobs.configure_queue(%s, payload_schema => %s)", (queue_name, Jsonb(CONTACT))
    )
    pconn.execute("set role pgmq_jobs_producer")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pconn.execute("select pgmq_jobs_plpy.validate_json_schema('{}', '{}')")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="'name' is a required"):
            pconn.execute("select pgmq_jobs.enqueue(%s, %s)", (queue_name, Jsonb({"email": "a"})))
        pconn.execute(
            "select pgmq_jobs.enqueue(%s, %s)", (queue_name, Jsonb({"email": "a", "name": "b"}))
        )
    finally:
        pconn.execute("reset role")
    assert depth(pconn, queue_name) == 1


def test_removing_the_schema_with_json_null_accepts_anything_again(
    pconn: Connection, queue_name: str
) -> None:
    jobs.create_queue(pconn, queue_name)
    pconn.execute(
        "select pgmq_jobs.configure_queue(%s, payload_schema => %s)", (queue_name, Jsonb(CONTACT))
    )
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        jobs.enqueue(pconn, queue_name, {"anything": 1})
    pconn.execute("select pgmq_jobs.configure_queue(%s, payload_schema => 'null')", (queue_name,))
    jobs.enqueue(pconn, queue_name, {"anything": 1})
    assert depth(pconn, queue_name) == 1


# ---------------------------------------------------------------- the generated functions

PLPY_FUNCTIONS = [
    "pgmq_jobs_plpy.validate_json_schema(jsonb,jsonb)",
    "pgmq_jobs_plpy.cron_check(text)",
    "pgmq_jobs_plpy.cron_next_runs(text,integer,timestamp with time zone)",
    "pgmq_jobs_plpy.invoke(text,text,text,integer,integer,double precision)",
    "pgmq_jobs_plpy.set_invoker_secret(text,text,text)",
    "pgmq_jobs_plpy.invoke_named(text,text,text,integer,integer,double precision)",
    "pgmq_jobs_plpy.schedule_invoke(text,text,text,text,text,integer,integer)",
    "pgmq_jobs_plpy.unschedule_invoke(text)",
]


def test_functions_are_pinned_commented_and_granted_to_admin_only(pconn: Connection) -> None:
    rows = pconn.execute(
        "select p.oid::regprocedure::text, p.proconfig, obj_description(p.oid, 'pg_proc'),"
        " has_function_privilege('public', p.oid, 'execute'),"
        " has_function_privilege('pgmq_jobs_admin', p.oid, 'execute'),"
        " has_function_privilege('pgmq_jobs_producer', p.oid, 'execute'),"
        " has_function_privilege('pgmq_jobs_worker', p.oid, 'execute'), l.lanname"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " join pg_language l on l.oid = p.prolang where n.nspname = 'pgmq_jobs_plpy'"
    ).fetchall()
    by_name = {row[0]: row[1:] for row in rows}
    for fn in PLPY_FUNCTIONS:
        config, comment, public, admin, producer, worker, _lang = by_name[fn]
        assert config == ["search_path=pg_catalog, pg_temp"], fn
        assert comment and len(comment) > 40, fn
        assert (public, admin, producer, worker) == (False, True, False, False), fn
    for fn, (*_, public, _admin, _producer, _worker, _lang) in by_name.items():
        assert public is False, fn
    langs = {fn: row[-1] for fn, row in by_name.items()}
    assert {fn for fn, lang in langs.items() if lang == "plpython3u"} == set(PLPY_FUNCTIONS[:4])
    assert pconn.execute(
        "select has_table_privilege('pgmq_jobs_admin', 'pgmq_jobs_plpy.invoker_secrets', 'select')"
    ).fetchone() == (False,)


def test_the_function_bodies_are_generated_from_the_module_source(pconn: Connection) -> None:
    [(body,)] = pconn.execute(
        "select prosrc from pg_proc where oid = 'pgmq_jobs_plpy.cron_check(text)'::regprocedure"
    ).fetchall()
    assert "Generated by pgmq_jobs.ops.plpython from plpy/pgmq_jobs_plpy/cron.py" in body
    assert repr(plpython.module_source("cron")) in body


def test_reinstalling_is_idempotent(plpy_dsn: str) -> None:
    report = install(plpy_dsn, with_plpython=True)
    assert report.plpython is True and "plpython: yes" in report.summary()
    with psycopg.connect(plpy_dsn) as conn:
        assert conn.execute("select pgmq_jobs_plpy.cron_check('* * * * *')").fetchone() == (None,)


# ---------------------------------------------------------------- without plpython3u


def test_install_without_plpython3u_skips_with_one_clear_note_and_the_core_works(
    fresh_db: Callable[[], str], monkeypatch: pytest.MonkeyPatch, queue_name: str
) -> None:
    monkeypatch.setattr(plpython, "plpython_available", lambda conn: False)
    dsn = fresh_db()
    report = install(dsn, with_plpython=True)
    assert report.plpython is False
    plpy_notes = [note for note in report.notes if "plpython3u" in note]
    assert plpy_notes == [plpython.ABSENT_NOTE]
    assert "PL/Python support skipped" in report.summary()
    assert "plpython: no" in report.summary()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("select to_regnamespace('pgmq_jobs_plpy')").fetchone() == (None,)
        assert conn.execute(
            "select count(*) from pg_extension where extname = 'plpython3u'"
        ).fetchone() == (0,)
        # The core as usual: no validator, so a payload schema is refused clearly ...
        jobs.create_queue(conn, queue_name)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as info:
            conn.execute(
                "select pgmq_jobs.configure_queue(%s, payload_schema => '{}')", (queue_name,)
            )
        assert "no JSON Schema validator is installed" in str(info.value)
        assert "--with-plpython" in (info.value.diag.message_hint or "")
        # ... next_run_at is null, and jobs run.
        assert conn.execute("select pgmq_jobs._next_run_at('* * * * *')").fetchone() == (None,)
        job_id = jobs.enqueue(conn, queue_name, {"n": 1})
        [job] = jobs.claim(conn, queue_name)
        assert jobs.complete(conn, queue_name, [job]) == 1
        assert job.job_id == job_id


def test_install_without_superuser_skips_with_one_note(
    fresh_db: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plpython, "_is_superuser", lambda conn: False)
    report = install(fresh_db(), with_plpython=True)
    assert report.plpython is False
    [note] = [n for n in report.notes if "PL/Python" in n]
    assert note.startswith("PL/Python support skipped") and "needs a superuser" in note


def test_install_without_the_flag_leaves_plpython_alone(fresh_db: Callable[[], str]) -> None:
    report = install(fresh_db())
    assert report.plpython is None
    assert "plpython" not in report.summary()


def test_cli_install_with_plpython(fresh_db: Callable[[], str]) -> None:
    dsn = fresh_db()
    done = subprocess.run(
        [CLI, "install", "--dsn", dsn, "--with-plpython"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "plpython: yes (pgmq_jobs_plpy)" in done.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "select pgmq_jobs._schema_validator(), pgmq_jobs._next_run_at('@daily') is not null"
        ).fetchone() == ("plpython", True)
