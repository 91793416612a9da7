"""Release versions: the package's, the schema's, the upgrade steps between them.

The package version and the schema version are one. ``pgmq_jobs.schema_version`` holds every
version applied to a database; its newest is the database's release. ``sql/upgrades/`` holds
one step per release, ``<from>--<to>.sql`` as PostgreSQL's extension scripts are named, and
:func:`upgrade_path` chains them from a database's release to this package's.

Compatibility of clients and schemas (checked by :func:`check_compatible`):

- same version: nothing to say;
- schema newer than the package: it still serves this package when the package is at least
  the schema's ``oldest_client`` (a warning says to upgrade the package), else an error;
- schema older than the package: an error saying to run ``pgmq-jobs install`` first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgmq_jobs.api.types import SchemaInfo

# The release this package is, and installs. pyproject.toml and sql/999_version.sql say the
# same (tests/test_versions.py holds them equal).
PACKAGE_VERSION = "0.2.0"

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_STEP_RE = re.compile(r"^(\d+\.\d+\.\d+)--(\d+\.\d+\.\d+)\.sql$")

Version = tuple[int, int, int]
Connection = psycopg.Connection[Any]


class VersionError(RuntimeError):
    """A database's schema and this package cannot work together (the message says why)."""


def parse(version: str) -> Version:
    """``'1.2.3'`` → ``(1, 2, 3)``; anything else is a :class:`ValueError` naming it."""
    match = _VERSION_RE.match(version.strip())
    if match is None:
        raise ValueError(f"not a release version (major.minor.patch): {version!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def newest(versions: list[str]) -> str | None:
    """The newest of ``versions`` by release order (not by text: 0.10.0 > 0.9.0)."""
    return max(versions, key=parse) if versions else None


@dataclass(frozen=True)
class Step:
    """One upgrade step: ``sql/upgrades/<source>--<target>.sql``."""

    source: str
    target: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.source}--{self.target}"


def upgrade_steps(directory: Path) -> list[Step]:
    """Every ``<from>--<to>.sql`` in ``directory``, oldest first."""
    steps: list[Step] = []
    if not directory.is_dir():
        return steps
    for path in directory.glob("*.sql"):
        match = _STEP_RE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: an upgrade step is named <from>--<to>.sql")
        steps.append(Step(match.group(1), match.group(2), path))
    return sorted(steps, key=lambda s: parse(s.source))


def upgrade_path(installed: str, target: str, steps: list[Step]) -> list[Step]:
    """The steps that turn release ``installed`` into ``target``, in order.

    Raises :class:`VersionError` when ``installed`` is newer than ``target`` or no chain of
    steps leads from one to the other.
    """
    if parse(installed) > parse(target):
        raise VersionError(
            f"the database has pgmq-jobs {installed}, newer than this package's {target}: "
            f"upgrade the package (pip install -U pgmq-jobs); nothing was changed"
        )
    by_source = {step.source: step for step in steps}
    path: list[Step] = []
    current = installed
    while current != target:
        step = by_source.get(current)
        if step is None or parse(step.target) > parse(target):
            raise VersionError(
                f"no upgrade step from pgmq-jobs {current} towards {target} "
                f"(sql/upgrades/ has: {', '.join(s.name for s in steps) or 'none'})"
            )
        path.append(step)
        current = step.target
    return path


def installed_version(conn: Connection) -> str | None:
    """The newest release recorded in ``pgmq_jobs.schema_version``, or None (not installed)."""
    from pgmq_jobs.api import ops
    from pgmq_jobs.api.sync import run

    if not run(conn, ops.relation_exists("pgmq_jobs.schema_version")):
        return None
    return newest(run(conn, ops.schema_versions()))


def check_compatible(
    schema: SchemaInfo | None, package: str = PACKAGE_VERSION, who: str = "this client"
) -> str | None:
    """None when ``package`` and ``schema`` are the same release; a warning text when the
    schema is newer and still serves ``package``; :class:`VersionError` otherwise."""
    if schema is None:
        raise VersionError(
            f"the database has no pgmq-jobs {package} schema (pgmq_jobs.schema_info() is "
            f"missing: pgmq-jobs is not installed, or an older release is): run "
            f"`pgmq-jobs install` before starting {who}"
        )
    if parse(schema.version) == parse(package):
        return None
    if parse(schema.version) < parse(package):
        raise VersionError(
            f"the database has pgmq-jobs {schema.version}, older than {who}'s {package}: run "
            f"`pgmq-jobs install` to upgrade the database first"
        )
    if parse(package) < parse(schema.oldest_client):
        raise VersionError(
            f"the database has pgmq-jobs {schema.version}, which serves clients from "
            f"{schema.oldest_client} on; {who} is {package}: upgrade the package"
        )
    return (
        f"the database has pgmq-jobs {schema.version}, newer than {who}'s {package}; it still "
        f"serves {package}, but upgrade the package soon"
    )


def read_schema_info(conn: Connection) -> SchemaInfo | None:
    """``pgmq_jobs.schema_info()``, or None where the function does not exist (0.1.0 and
    databases without pgmq-jobs). In a savepoint, so a caller's transaction survives."""
    from pgmq_jobs.api.sync import schema_info

    try:
        with conn.transaction():
            return schema_info(conn)
    except (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName):
        return None
