"""The Python binding against the SQL catalog: QueueSettings lists exactly the arguments of
``pgmq_jobs.configure_queue`` (and, with the create-only ones, of ``create_queue``), with the
same types, so a setting added on one side and not the other fails here."""

from __future__ import annotations

from typing import Any

import psycopg

from pgmq_jobs.api.types import CREATE_ONLY, SETTING_SQL_TYPES, SETTINGS

_ARGUMENTS = """
select a.name, pg_catalog.format_type(a.type, null)
from pg_catalog.pg_proc as p,
    unnest(p.proargnames, p.proargtypes::oid[]) with ordinality as a (name, type, n)
where p.oid = %s::regprocedure::oid and a.name <> 'queue'
order by a.n
"""


def _signature(conn: psycopg.Connection[Any], function: str) -> str:
    row = conn.execute(
        "select p.oid::regprocedure::text from pg_catalog.pg_proc as p"
        " where p.pronamespace = 'pgmq_jobs'::regnamespace and p.proname = %s",
        (function,),
    ).fetchall()
    assert len(row) == 1, f"pgmq_jobs.{function} has {len(row)} overloads: {row}"
    return str(row[0][0])


def _arguments(conn: psycopg.Connection[Any], function: str) -> list[tuple[str, str]]:
    return [(str(n), str(t)) for n, t in conn.execute(_ARGUMENTS, (_signature(conn, function),))]


def test_queue_settings_are_configure_queues_arguments(conn: psycopg.Connection[Any]) -> None:
    expected = [(name, SETTING_SQL_TYPES[name]) for name in SETTINGS]
    assert _arguments(conn, "configure_queue") == expected


def test_create_queue_takes_the_settings_and_the_create_only_ones(
    conn: psycopg.Connection[Any],
) -> None:
    arguments = dict(_arguments(conn, "create_queue"))
    expected = {
        name: SETTING_SQL_TYPES[name]
        for name in (*SETTINGS, *CREATE_ONLY)
        if name != "payload_schema"
    }
    assert arguments == expected
