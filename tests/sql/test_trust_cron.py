"""Trust boundaries of pg_cron and payload schemas (issue 18, findings 4 and 5).

Finding 4: the project reads, changes and removes only the pg_cron jobs it created (names
starting ``pgmq_jobs_``), and the user-named invoker schedules live under their own
``pgmq_jobs_invoke_`` prefix, so an admin can neither read a foreign job's command, nor
overwrite or delete a foreign job, nor remove the project's sweep, through ``_cron_job``,
``schedule_invoker``/``unschedule_invoker`` (pg_net) or ``pgmq_jobs_plpy.schedule_invoke``/
``unschedule_invoke`` (PL/Python).

Finding 5: a ``payload_schema`` refers to nothing outside itself. A ``$ref`` to a file or a URL
is refused when the schema is configured, and the PL/Python validator resolves references with
a registry that retrieves nothing: no file is read and no request is made, even for a schema
stored before the check existed.

pg_net is not installed here: the pg_net tests add a bare ``pg_extension`` row named ``pg_net``
(no objects) inside a transaction that is rolled back, which is all ``schedule_invoker`` looks
for before it writes the cron job (whose command is never run). The same trick stands in for
pg_jsonschema.
"""

from __future__ import annotations

import http.server
import json
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

import pgmq_jobs.client as jobs
from pgmq_jobs.ops.install import install
from pgmq_jobs.ops.plpython import load_plain, uninstall_plpython

Connection = psycopg.Connection[Any]
ADMIN = "pgmq_jobs_admin"
SECRET = "trust-" + uuid.uuid4().hex
INVOKER_URL = "http://127.0.0.1:9"  # never called: every cron job here is rolled back


# ---------------------------------------------------------------- helpers


@pytest.fixture
def admin_role(conn: Connection) -> Iterator[str]:
    """A role granted only pgmq_jobs_admin; tests ``set role`` to it."""
    name = f"pjt_admin_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(name)))
    conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(ADMIN), sql.Identifier(name)))
    yield name
    conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.fixture
def foreign_job(conn: Connection) -> Iterator[str]:
    """A pg_cron job that is not pgmq_jobs' (think: a backup with a password in it)."""
    name = f"nightly_backup_{uuid.uuid4().hex[:8]}"
    conn.execute(
        "select cron.schedule(%s, '0 3 1 1 *', %s)",
        (name, f"select 'backup' /* password {SECRET} */"),
    )
    yield name
    conn.execute("select cron.unschedule(jobid) from cron.job where jobname = %s", (name,))


def cron_jobs(conn: Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute("select jobname, schedule, command from cron.job").fetchall()
    return {name: (schedule, command) for name, schedule, command in rows}


def job_as_superuser(tx: Connection, name: str, role: str) -> tuple[str, str] | None:
    """(schedule, command) of the pg_cron job ``name``, read as the superuser inside ``tx``,
    which then goes on as ``role``."""
    tx.execute("reset role")
    row = tx.execute("select schedule, command from cron.job where jobname = %s", (name,))
    found = row.fetchone()
    set_role(tx, role)
    return (found[0], found[1]) if found else None


def set_role(conn: Connection, role: str) -> None:
    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))


def refused(
    tx: Connection, query: str, params: tuple[Any, ...], error: type[Exception], match: str
) -> None:
    """``query`` fails with ``error`` (message matching ``match``), inside a savepoint so that
    the surrounding transaction goes on."""
    with pytest.raises(error, match=match), tx.transaction():
        tx.execute(query, params)


@contextmanager
def rolled_back(dsn: str, *fake_extensions: str) -> Iterator[Connection]:
    """A superuser connection inside a transaction that is always rolled back, with a bare
    pg_extension row for each name in ``fake_extensions`` (nothing else of the extension)."""
    with psycopg.connect(dsn) as conn, conn.transaction(force_rollback=True):
        for i, name in enumerate(fake_extensions):
            conn.execute(
                "insert into pg_catalog.pg_extension"
                " (oid, extname, extowner, extnamespace, extrelocatable, extversion)"
                " values (%s::oid, %s, 10, 'public'::regnamespace, false, '0')",
                (3_999_999_000 + i, name),
            )
        yield conn


# ---------------------------------------------------------------- finding 4: SQL core


def test_cron_job_reads_none_but_the_projects_own_jobs(
    db_dsn: str, conn: Connection, admin_role: str, foreign_job: str
) -> None:
    denied = psycopg.errors.InsufficientPrivilege
    with rolled_back(db_dsn) as tx:
        tx.execute(
            "select cron.schedule('pgmq_jobs_invoke_trust', '0 3 1 1 *', %s)",
            (f"select 1 /* Bearer {SECRET} */",),
        )
        set_role(tx, admin_role)
        # The reported leak: any job's command, secrets included, through _cron_job.
        query = "select * from pgmq_jobs._cron_job(%s)"
        for name in (foreign_job, "", "pgmq_jobsX", "Pgmq_jobs_sweep", None):
            refused(tx, query, (name,), denied, "not one of pgmq_jobs' own")
        # The project's jobs stay readable (the schedules view needs them), but not the
        # command of an invoker job, which carries the invoker's secret.
        [(sweep_command,)] = tx.execute(
            "select command from pgmq_jobs._cron_job('pgmq_jobs_sweep')"
        ).fetchall()
        assert sweep_command == "select pgmq_jobs.sweep()"
        [(schedule, command)] = tx.execute(
            "select schedule, command from pgmq_jobs._cron_job('pgmq_jobs_invoke_trust')"
        ).fetchall()
        assert (schedule, command) == ("0 3 1 1 *", None)


def test_cron_helpers_refuse_foreign_job_names(
    db_dsn: str, conn: Connection, foreign_job: str
) -> None:
    before = cron_jobs(conn)
    denied = psycopg.errors.InsufficientPrivilege
    with rolled_back(db_dsn) as tx:
        for query, params in (
            ("select pgmq_jobs._cron_schedule(%s, '* * * * *', 'select 2')", (foreign_job,)),
            ("select pgmq_jobs._cron_unschedule(%s)", (foreign_job,)),
            ("select pgmq_jobs._cron_schedule(%s, '* * * * *', 'select 2')", (None,)),
        ):
            refused(tx, query, params, denied, "not one of pgmq_jobs' own")
        assert cron_jobs(tx) == before
    assert cron_jobs(conn) == before


@pytest.mark.parametrize("name", ["", "Backup", "a b", "../x", "x" * 47, "-x", "_x"])
def test_invoke_schedule_names_are_checked(conn: Connection, name: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid invoke schedule"):
        conn.execute("select pgmq_jobs._invoke_job_name(%s)", (name,))


def test_invoke_schedule_names_get_their_own_prefix(conn: Connection) -> None:
    for name, job in (
        ("drain-emails", "pgmq_jobs_invoke_drain-emails"),
        ("pgmq_jobs_sweep", "pgmq_jobs_invoke_pgmq_jobs_sweep"),
        ("x" * 46, "pgmq_jobs_invoke_" + "x" * 46),
    ):
        assert conn.execute("select pgmq_jobs._invoke_job_name(%s)", (name,)).fetchone() == (job,)
        # It fits pg_cron's job name (type name, 63 bytes) untruncated.
        assert conn.execute("select %s::name::text", (job,)).fetchone() == (job,)


def test_schedule_invoker_pg_net_path_cannot_reach_foreign_or_system_jobs(
    db_dsn: str, conn: Connection, admin_role: str, foreign_job: str, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    try:
        before = cron_jobs(conn)
        assert "pgmq_jobs_sweep" in before
        with rolled_back(db_dsn, "pg_net") as tx:
            set_role(tx, admin_role)
            # The reported attack: overwrite a foreign job through schedule_invoker.
            tx.execute(
                "select pgmq_jobs.schedule_invoker(%s, '* * * * *', %s, %s, %s)",
                (foreign_job, INVOKER_URL, queue_name, SECRET),
            )
            assert job_as_superuser(tx, foreign_job, admin_role) == before[foreign_job]
            for system in ("pgmq_jobs_sweep", "pgmq_jobs_partman"):
                tx.execute(
                    "select pgmq_jobs.schedule_invoker(%s, '* * * * *', %s, %s, %s)",
                    (system, INVOKER_URL, queue_name, SECRET),
                )
            refused(
                tx,
                "select pgmq_jobs.schedule_invoker(%s, '* * * * *', %s, %s, %s)",
                ("Nightly Backup", INVOKER_URL, queue_name, SECRET),
                psycopg.errors.InvalidParameterValue,
                "invalid invoke schedule name",
            )
            # Removal reaches only pgmq_jobs_invoke_<name>.
            for name in (foreign_job, "pgmq_jobs_sweep"):
                [(removed,)] = tx.execute(
                    "select pgmq_jobs.unschedule_invoker(%s)", (name,)
                ).fetchall()
                assert removed is True  # the invoker job of that name made above
                [(removed,)] = tx.execute(
                    "select pgmq_jobs.unschedule_invoker(%s)", (name,)
                ).fetchall()
                assert removed is False
            tx.execute("reset role")
            after = cron_jobs(tx)
            assert after[foreign_job] == before[foreign_job]
            assert after["pgmq_jobs_sweep"] == before["pgmq_jobs_sweep"]
            assert "pgmq_jobs_invoke_pgmq_jobs_partman" in after
            assert {n for n in after if n not in before} == {"pgmq_jobs_invoke_pgmq_jobs_partman"}
        assert cron_jobs(conn) == before
    finally:
        jobs.drop_queue(conn, queue_name)


# ---------------------------------------------------------------- finding 4: PL/Python


@pytest.fixture(scope="module")
def shared_plpy(db_dsn: str) -> Iterator[str]:
    """PL/Python support in the shared test database (where pg_cron runs), removed after."""
    report = install(db_dsn, with_plpython=True)
    if not report.plpython:
        pytest.skip(f"PL/Python support not installed here: {report.summary()}")
    try:
        yield db_dsn
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            uninstall_plpython(conn)


def test_schedule_invoke_plpython_path_cannot_reach_foreign_or_system_jobs(
    shared_plpy: str, conn: Connection, admin_role: str, foreign_job: str, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    try:
        before = cron_jobs(conn)
        with rolled_back(shared_plpy) as tx:
            set_role(tx, admin_role)
            tx.execute(
                "select pgmq_jobs_plpy.set_invoker_secret('trust', %s, %s)", (INVOKER_URL, SECRET)
            )
            schedule = (
                "select pgmq_jobs_plpy.schedule_invoke(%s, '* * * * *', %s, %s, 'trust', 20, 10)"
            )
            # The reported attacks: overwrite an unrelated job, delete the sweep.
            tx.execute(schedule, (foreign_job, INVOKER_URL, queue_name))
            assert job_as_superuser(tx, foreign_job, admin_role) == before[foreign_job]
            tx.execute("select pgmq_jobs_plpy.unschedule_invoke('pgmq_jobs_sweep')")
            assert job_as_superuser(tx, "pgmq_jobs_sweep", admin_role) == before["pgmq_jobs_sweep"]
            tx.execute(schedule, ("pgmq_jobs_sweep", INVOKER_URL, queue_name))
            for name in (foreign_job, "pgmq_jobs_sweep"):
                assert tx.execute(
                    "select pgmq_jobs_plpy.unschedule_invoke(%s)", (name,)
                ).fetchall() == [(True,)]
                assert tx.execute(
                    "select pgmq_jobs_plpy.unschedule_invoke(%s)", (name,)
                ).fetchall() == [(False,)]
            bad_name = psycopg.errors.InvalidParameterValue
            for bad in ("", "Nightly", "x" * 47):
                refused(tx, schedule, (bad, INVOKER_URL, queue_name), bad_name, "invalid invoke")
                unschedule = "select pgmq_jobs_plpy.unschedule_invoke(%s)"
                refused(tx, unschedule, (bad,), bad_name, "invalid invoke")
            tx.execute(schedule, ("drain-emails", INVOKER_URL, queue_name))
            tx.execute("reset role")
            after = cron_jobs(tx)
            assert after[foreign_job] == before[foreign_job]
            assert after["pgmq_jobs_sweep"] == before["pgmq_jobs_sweep"]
            [added] = [n for n in after if n not in before]
            assert added == "pgmq_jobs_invoke_drain-emails"
            assert "invoke_named(" in after[added][1] and SECRET not in after[added][1]
        assert cron_jobs(conn) == before
    finally:
        jobs.drop_queue(conn, queue_name)


# ---------------------------------------------------------------- finding 5: payload schemas


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = b'{"type": "integer"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request: (base URL, paths requested)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server.hits  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server_secret_file() -> Iterator[Path]:
    """A JSON file holding a secret, readable by the database server's OS user: a schema
    that refers to it would print the secret in its violation message (``enum``)."""
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-trust-"))
    base.chmod(0o755)
    path = base / "server-secret.json"
    path.write_text(json.dumps({"enum": [SECRET]}))
    path.chmod(0o644)
    yield path
    shutil.rmtree(base, ignore_errors=True)


NON_LOCAL = [
    {"$ref": "http://127.0.0.1:9/schema.json"},
    {"$ref": "file:///etc/passwd"},
    {"$ref": "other.json#/a"},
    {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}},
    {"allOf": [{"type": "object"}, {"items": [{"$ref": "//evil.example/x"}]}]},
    {"$dynamicRef": "http://127.0.0.1:9/meta"},
    {"$recursiveRef": "file:///x"},
]
LOCAL = [
    {"type": "object"},
    {"$defs": {"a": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/a"}}},
    {"$defs": {"a": {"type": "object"}}, "$ref": "#/$defs/a"},
    {
        "$id": "https://example.com/s.json",
        "$defs": {"a": {"type": "string"}},
        "properties": {"x": {"$ref": "#/$defs/a"}},
    },
    # A property that happens to be called "$ref" is a schema, not a reference.
    {"properties": {"$ref": {"type": "string"}}},
]


@pytest.mark.parametrize("schema", NON_LOCAL)
def test_sql_check_refuses_non_local_refs(conn: Connection, schema: dict[str, Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="may refer only to itself"):
        conn.execute("select pgmq_jobs._check_schema_refs(%s)", (Jsonb(schema),))


@pytest.mark.parametrize("schema", LOCAL)
def test_sql_check_accepts_local_refs(conn: Connection, schema: dict[str, Any]) -> None:
    conn.execute("select pgmq_jobs._check_schema_refs(%s)", (Jsonb(schema),))


def test_configure_queue_refuses_a_file_ref_with_pg_jsonschema(
    db_dsn: str, conn: Connection, queue_name: str
) -> None:
    """Where pg_jsonschema validates (Supabase), the SQL check refuses the schema."""
    jobs.create_queue(conn, queue_name)
    try:
        with rolled_back(db_dsn, "pg_jsonschema") as tx:
            # Only pg_jsonschema (no PL/Python validator) for this transaction.
            tx.execute("drop schema if exists pgmq_jobs_plpy cascade")
            assert tx.execute("select pgmq_jobs._schema_validator()").fetchone() == (
                "pg_jsonschema",
            )
            refused(
                tx,
                "select pgmq_jobs.configure_queue(%s, payload_schema => %s)",
                (queue_name, Jsonb({"$ref": "file:///etc/passwd"})),
                psycopg.errors.InvalidParameterValue,
                "refer only to itself",
            )
    finally:
        jobs.drop_queue(conn, queue_name)


@pytest.mark.parametrize("schema", NON_LOCAL)
def test_plain_validator_refuses_non_local_refs(schema: dict[str, Any]) -> None:
    pytest.importorskip("jsonschema")
    check = load_plain("jsonschema_check")
    with pytest.raises(check.InvalidSchema, match="may refer only to itself"):
        check.validate_json_schema(schema, {})


def test_plain_validator_retrieves_nothing_even_past_the_check(
    recorder: tuple[str, list[str]], server_secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the up-front check switched off, resolution itself still fetches nothing."""
    pytest.importorskip("jsonschema")
    check = load_plain("jsonschema_check")
    monkeypatch.setattr(check, "check_local_refs", lambda schema: None)
    url, hits = recorder
    for ref in (f"{url}/schema.json", server_secret_file.as_uri()):
        with pytest.raises(check.InvalidSchema, match="cannot be resolved") as info:
            check.validate_json_schema({"$ref": ref}, 1)
        assert SECRET not in str(info.value)
    assert hits == []


@pytest.mark.parametrize("schema", LOCAL)
def test_plain_validator_still_resolves_local_refs(schema: dict[str, Any]) -> None:
    pytest.importorskip("jsonschema")
    check = load_plain("jsonschema_check")
    assert check.validate_json_schema(schema, {"x": "s"}) == []
    if "properties" in schema and "x" in schema["properties"]:
        assert check.validate_json_schema(schema, {"x": 1}) == ["$.x: 1 is not of type 'string'"]


def test_plpython_configure_refuses_remote_and_file_refs_without_fetching(
    shared_plpy: str,
    conn: Connection,
    queue_name: str,
    recorder: tuple[str, list[str]],
    server_secret_file: Path,
) -> None:
    url, hits = recorder
    jobs.create_queue(conn, queue_name)
    try:
        for ref in (f"{url}/schema.json", server_secret_file.as_uri()):
            with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
                conn.execute(
                    "select pgmq_jobs.configure_queue(%s, payload_schema => %s)",
                    (queue_name, Jsonb({"type": "object", "properties": {"a": {"$ref": ref}}})),
                )
            assert "refer only to itself" in str(info.value)
            assert SECRET not in str(info.value)
        assert hits == []
        [(stored,)] = conn.execute(
            "select payload_schema from pgmq_jobs.queue_settings where queue = %s", (queue_name,)
        ).fetchall()
        assert stored is None
    finally:
        jobs.drop_queue(conn, queue_name)


def test_plpython_enqueue_never_fetches_a_stored_remote_ref(
    shared_plpy: str,
    conn: Connection,
    queue_name: str,
    recorder: tuple[str, list[str]],
    server_secret_file: Path,
) -> None:
    """A schema stored before the check (0.1.0) is validated without retrieving anything."""
    url, hits = recorder
    jobs.create_queue(conn, queue_name)
    try:
        for ref in (f"{url}/schema.json", server_secret_file.as_uri()):
            conn.execute(
                "update pgmq_jobs.queue_settings set payload_schema = %s where queue = %s",
                (Jsonb({"$ref": ref}), queue_name),
            )
            with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
                jobs.enqueue(conn, queue_name, {"a": 1})
            assert SECRET not in str(info.value)
        assert hits == []
        count = sql.SQL("select count(*) from pgmq.{}").format(sql.Identifier(f"q_{queue_name}"))
        assert conn.execute(count).fetchone() == (0,)
    finally:
        jobs.drop_queue(conn, queue_name)
