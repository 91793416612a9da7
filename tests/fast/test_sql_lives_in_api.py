"""Every SQL statement the Python package sends is written in ``pgmq_jobs/api/``: no string
literal elsewhere in the package reads as SQL. (The ``sql/`` and ``plpy/`` files that install
applies are files, not Python strings.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pgmq_jobs

PACKAGE = Path(pgmq_jobs.__file__).resolve().parent

# The start of an SQL statement, or of a fragment of one, as the package writes them
# (lowercase, as every statement of the project is).
SQL = re.compile(
    r"""^\s*(
        select\s+(\*|\d|(distinct\s+)?[a-z_][a-z0-9_]*(\.[a-z_*]+)?\s*(\(|,|\s+from\b|\s+as\b|::|$))
        | insert\s+into\s | update\s+[a-z_."]+\s+(as\s+\w+\s+)?set\s
        | delete\s+from\s | with\s+(recursive\s+)?[a-z_]+\s+as\s*\(
        | create\s+(or\s+replace\s+)?(unique\s+)?
          (extension|schema|function|procedure|index|table|database|role|view|trigger)\s
        | drop\s+(extension|schema|function|procedure|index|table|database|role|view)\s
        | alter\s+(table|role|database|function|extension)\s
        | (grant|revoke)\s+\w+(\s+\w+)*\s+on\s | do\s+(language|\$)
        | listen\s+[a-z_"{}]+\s*$ | notify\s+[a-z_"{}]+\s*(,|$)
        | call\s+[a-z_]+\. | vacuum\b | analyze\s+[a-z_]
        | set\s+(local\s+)?[a-z_.]+\s*(=|to)\s | show\s+[a-z_]+$
        | from\s+[a-z_]+\.[a-z_]+ | where\s+[a-z_.]+\s*(=|<|>|in\s) | order\s+by\s
    )""",
    re.VERBOSE,
)


def sql_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value.strip().splitlines()[0][:80])
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SQL.match(node.value)
    ]


def test_the_pattern_tells_sql_from_prose() -> None:
    for statement in (
        "select * from pgmq_jobs.queues",
        "select pgmq_jobs.enqueue(%s, %s)",
        "insert into pgmq_jobs.audit_log (actor) values (%s)",
        "update pgmq.q_x set vt = now()",
        "create index if not exists x on pgmq.q_x (vt)",
        "drop function if exists pgmq_jobs.f()",
        "grant execute on function f() to r",
        "listen pgmq_jobs_q",
        "notify {}, %s",
        "do $$ begin end $$",
        "set local statement_timeout = 1000",
        " from pgmq.q_x where vt <= now()",
    ):
        assert SQL.match(statement), statement
    for prose in (
        "create or update a schedule (by name)",
        "drop a queue and all its jobs",
        "select the queues to work",
        "delete dead letters for good",
        "show one job",
        "order of the jobs",
        "listen connection lost (%s); polling",
    ):
        assert not SQL.match(prose), prose


def test_no_sql_string_outside_api() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if "api" not in path.relative_to(PACKAGE).parts[:1] and (found := sql_strings(path))
    }
    assert offenders == {}, offenders
