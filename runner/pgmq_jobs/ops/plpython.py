"""Install ``plpy/`` as PL/Python functions (schema ``pgmq_jobs_plpy``) on self-hosted Postgres.

Optional and never needed by the core (hosted Supabase has no ``plpython3u``). The SQL is
generated from the modules' source: each function's body embeds the source of its module,
loads it once per session into ``GD`` (keyed by the source's hash, so a reinstall takes effect
in sessions that already ran the old one) and calls the plain-Python function, the same one
the tests import directly (:func:`load_plain`).

Functions:

- ``validate_json_schema(schema jsonb, payload jsonb) returns text[]`` (``jsonschema_check``):
  the violations, each naming its path; called by enqueue for queues with a
  ``payload_schema``. Installed only where the server's Python has ``jsonschema``.
- ``cron_check(expr text) returns text`` and
  ``cron_next_runs(expr text, n integer, after timestamptz) returns setof timestamptz``
  (``cron``): precise cron validation, and the fire times behind ``schedules.next_run_at``.
- ``invoke(url, queue, secret, max_seconds, max_jobs, timeout_seconds) returns jsonb``
  (``poke``): POST to the runner's ``/invoke``; plus ``invoke_schedule.sql`` (secrets table,
  ``invoke_named``, ``schedule_invoke``, ``unschedule_invoke``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, LiteralString, cast

import psycopg

from pgmq_jobs.api import ops
from pgmq_jobs.api.plpython_ddl import api_roles_revoke, function_ddl, schema_ddl
from pgmq_jobs.api.sync import run
from pgmq_jobs.ops.paths import repo_root

SCHEMA = "pgmq_jobs_plpy"
PACKAGE = "pgmq_jobs_plpy"
ADMIN_ROLE = "pgmq_jobs_admin"

ABSENT_NOTE = (
    "PL/Python support skipped: the plpython3u extension is not available on this server "
    "(Debian: apt install postgresql-plpython3-15); payload schemas then need pg_jsonschema, "
    "and schedules show no next_run_at"
)
NOT_SUPERUSER_NOTE = (
    "PL/Python support skipped: plpython3u is an untrusted language, so creating it and its "
    "functions needs a superuser (connected as {user})"
)
NO_JSONSCHEMA_NOTE = (
    "pgmq_jobs_plpy.validate_json_schema not installed: the server's Python has no jsonschema "
    "module (Debian: apt install python3-jsonschema); payload schemas then need pg_jsonschema"
)

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class PlFunction:
    """One generated ``language plpython3u`` function."""

    module: str
    signature: str  # name(arg type, ...) as in CREATE FUNCTION, defaults included
    identity: str  # name(type, ...) for COMMENT/GRANT
    returns: str
    attributes: str  # volatility, strictness, rows ...
    call: str  # Python statements using ``_mod`` and the arguments
    comment: str


FUNCTIONS: tuple[PlFunction, ...] = (
    PlFunction(
        module="jsonschema_check",
        signature="validate_json_schema(schema jsonb, payload jsonb)",
        identity="validate_json_schema(jsonb, jsonb)",
        returns="text[]",
        attributes="immutable strict",
        call="return _mod.validate_json_schema(schema, payload)",
        comment=(
            "Check payload against the JSON Schema schema with the server's Python jsonschema "
            "module: every violation as '<path>: <message>' ($ is the payload), empty when "
            "valid; an error when schema is not a valid JSON Schema. Used by enqueue for "
            "queues with a payload_schema. Generated from plpy/pgmq_jobs_plpy/"
            "jsonschema_check.py."
        ),
    ),
    PlFunction(
        module="cron",
        signature="cron_check(expr text)",
        identity="cron_check(text)",
        returns="text",
        attributes="immutable",
        call="return _mod.cron_check(expr)",
        comment=(
            "Null when expr is a valid pg_cron expression, else a message naming the field and "
            "the value that are wrong (or that it never fires). Generated from "
            "plpy/pgmq_jobs_plpy/cron.py."
        ),
    ),
    PlFunction(
        module="cron",
        signature="cron_next_runs(expr text, n integer, after timestamptz)",
        identity="cron_next_runs(text, integer, timestamptz)",
        returns="setof timestamptz",
        attributes="stable rows 10",
        call=(
            "if expr is None or n is None:\n"
            "    return []\n"
            'plan = SD.get("after")\n'
            "if plan is None:\n"
            "    plan = plpy.prepare(\n"
            '        "select extract(epoch from coalesce($1, now()))::float8 as e",'
            ' ["timestamptz"]\n'
            "    )\n"
            '    SD["after"] = plan\n'
            'epoch = plan.execute([after])[0]["e"]\n'
            "import datetime\n"
            "start = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)\n"
            "return [t.isoformat() for t in _mod.next_runs(expr, n, start)]"
        ),
        comment=(
            "The next n times (UTC, whole minutes) after after (null: now) at which pg_cron "
            "fires expr: day of week 7 is Sunday, and when day of month and day of week are "
            "both restricted either one matching fires. None for 'N seconds'. Shown as "
            "next_run_at in pgmq_jobs.schedules. Generated from plpy/pgmq_jobs_plpy/cron.py."
        ),
    ),
    PlFunction(
        module="poke",
        signature=(
            "invoke(url text, queue text, secret text, max_seconds integer default 50, "
            "max_jobs integer default 1000, timeout_seconds double precision default 60)"
        ),
        identity="invoke(text, text, text, integer, integer, double precision)",
        returns="jsonb",
        attributes="volatile",
        call=(
            "import json\n"
            "return json.dumps(\n"
            "    _mod.invoke(url, queue, secret, max_seconds, max_jobs, timeout_seconds)\n"
            ")"
        ),
        comment=(
            "POST {queue, max_seconds, max_jobs} to the HTTP invoker (pgmq-jobs serve) at url "
            "(a URL without a path gets /invoke) with Authorization: Bearer secret, and return "
            "its JSON summary plus http_status; an error when it is unreachable or answers "
            "other than 2xx. http(s) only, no redirects, no proxy. What pg_net does on "
            "Supabase; pg_cron calls it through schedule_invoke. Generated from "
            "plpy/pgmq_jobs_plpy/poke.py."
        ),
    ),
)


@dataclass
class PlpythonResult:
    """What :func:`install_plpython` did: installed, and the notes for the install report."""

    installed: bool
    functions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plpy_dir() -> Path:
    """``plpy/pgmq_jobs_plpy`` of the source checkout, else the copy inside the wheel."""
    root = repo_root()
    if root is not None and (root / "plpy" / PACKAGE).is_dir():
        return root / "plpy" / PACKAGE
    packaged = Path(__file__).resolve().parent.parent / "plpy"
    if packaged.is_dir():
        return packaged
    raise FileNotFoundError(
        f"cannot find plpy/{PACKAGE} (looked in the source checkout and in {packaged})"
    )


def module_path(module: str) -> Path:
    return plpy_dir() / f"{module}.py"


def module_source(module: str) -> str:
    return module_path(module).read_text(encoding="utf-8")


def load_plain(module: str) -> ModuleType:
    """Import ``plpy/pgmq_jobs_plpy/<module>.py`` as plain Python (what the tests call)."""
    name = f"{PACKAGE}.{module}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, module_path(module))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {module_path(module)}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def _indent(code: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in code.splitlines())


def function_body(fn: PlFunction) -> str:
    """The Python body of ``fn``: load its module (once per session) and call it."""
    source = module_source(fn.module)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"{PACKAGE}.{fn.module}"
    filename = f"plpy/{PACKAGE}/{fn.module}.py"
    key = f"{name}:{digest}"
    return f"""
# Generated by pgmq_jobs.ops.plpython from {filename} (sha256 {digest}); do not edit.
_mod = GD.get({key!r})
if _mod is None:
    import sys
    import types
    _mod = types.ModuleType({name!r})
    _mod.__file__ = {filename!r}
    sys.modules[{name!r}] = _mod
    exec(compile({source!r}, {filename!r}, "exec"), _mod.__dict__)
    GD[{key!r}] = _mod
try:
{_indent(fn.call)}
except plpy.SPIError:
    raise
except Exception as exc:
    state = getattr(exc, "sqlstate", None) or ("22023" if isinstance(exc, ValueError) else None)
    if state is None:
        raise
    plpy.error(str(exc), sqlstate=state)
"""


def function_sql(fn: PlFunction) -> str:
    return function_ddl(
        SCHEMA,
        fn.signature,
        fn.identity,
        fn.returns,
        fn.attributes,
        function_body(fn),
        fn.comment,
        ADMIN_ROLE,
    )


def install_sql(with_jsonschema: bool = True) -> str:
    """Everything :func:`install_plpython` applies (after ``create extension plpython3u``)."""
    parts = [schema_ddl(SCHEMA, ADMIN_ROLE)]
    parts += [
        function_sql(fn) for fn in FUNCTIONS if with_jsonschema or fn.module != "jsonschema_check"
    ]
    parts.append((plpy_dir() / "invoke_schedule.sql").read_text(encoding="utf-8"))
    parts.append(api_roles_revoke(SCHEMA))
    return "\n".join(parts)


def plpython_available(conn: Connection) -> bool:
    """The server offers the ``plpython3u`` extension (installed here or installable)."""
    return run(conn, ops.extension_available("plpython3u"))


def _is_superuser(conn: Connection) -> bool:
    return run(conn, ops.is_superuser())


def server_has_jsonschema(conn: Connection) -> bool:
    """The server's Python (the one PL/Python runs) can import ``jsonschema``."""
    try:
        with conn.transaction():
            run(conn, ops.server_python_imports("jsonschema"))
    except psycopg.Error:
        return False
    return True


def install_plpython(conn: Connection) -> PlpythonResult:
    """Create ``plpython3u`` and the ``pgmq_jobs_plpy`` functions, or say why not.

    Needs pgmq-jobs' ``sql/`` already applied (roles, ``pgmq_jobs._cron_schedule`` ...).
    """
    if not plpython_available(conn):
        return PlpythonResult(False, notes=[ABSENT_NOTE])
    if not _is_superuser(conn):
        user = run(conn, ops.current_user())
        return PlpythonResult(False, notes=[NOT_SUPERUSER_NOTE.format(user=user)])
    run(conn, ops.create_extension("plpython3u"))
    result = PlpythonResult(True)
    with_jsonschema = server_has_jsonschema(conn)
    if not with_jsonschema:
        run(conn, ops.drop_function(f"{SCHEMA}.validate_json_schema(jsonb, jsonb)"))
        result.notes.append(NO_JSONSCHEMA_NOTE)
    conn.execute(cast(LiteralString, install_sql(with_jsonschema)))
    result.functions = [
        f"{SCHEMA}.{fn.identity}"
        for fn in FUNCTIONS
        if with_jsonschema or fn.module != "jsonschema_check"
    ]
    return result


def uninstall_plpython(conn: Connection) -> None:
    """Drop schema ``pgmq_jobs_plpy`` and everything in it (the extension stays)."""
    run(conn, ops.drop_schema_cascade(SCHEMA))
