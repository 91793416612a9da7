"""The Supabase migrations: one file per release, append-only.

``supabase db push`` applies each file once and records it, so a released file can never
reach a database again and must never change. :data:`RELEASES` lists them in order, each
released one with the SHA-256 of the file as shipped. The current release (this package's
version, not yet released) is generated from ``sql/``: its upgrade step from the release
before it (``sql/upgrades/<prev>--<current>.sql``), then every ``sql/`` file, as an install
applies them.

``python -m pgmq_jobs.ops.migrations`` writes the current release's file;
``--check`` exits 1 when a released file changed or went missing, when the current file is
stale (with a diff), or when ``supabase/migrations/`` holds a file that is not a release.
The output is deterministic (no timestamps inside) so the check can compare bytes.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgmq_jobs.ops.install import PINNED_SEARCH_PATH, schema_sql, upgrades_dir
from pgmq_jobs.ops.paths import repo_root
from pgmq_jobs.ops.versions import PACKAGE_VERSION, upgrade_path, upgrade_steps


@dataclass(frozen=True)
class Release:
    """One release's migration file; ``sha256`` is None for the release in development."""

    version: str
    filename: str
    sha256: str | None


RELEASES: tuple[Release, ...] = (
    Release(
        "0.1.0",
        "20261123000000_pgmq_jobs.sql",
        "85ee6f37272c2abc0187aa535a7fc917ab7aa7800d34cbc03ea112e73dc43912",
    ),
    Release("0.2.0", "20261205000000_pgmq_jobs_0.2.0.sql", None),
)

PGMQ_MISSING_MESSAGE = (
    "PGMQ is not installed in this database: enable the pgmq extension "
    "(Supabase: Database -> Extensions -> pgmq, or `create extension pgmq`) "
    "or run `pgmq-jobs install --dsn <database url>`"
)


def current_release() -> Release:
    """The release this package is (the last of :data:`RELEASES`)."""
    release = RELEASES[-1]
    if release.version != PACKAGE_VERSION or release.sha256 is not None:
        raise RuntimeError(
            f"RELEASES must end with this package's release {PACKAGE_VERSION}, unreleased "
            f"(sha256 None); it ends with {release.version}"
        )
    return release


def _prologue(version: str, previous: str) -> str:
    return f"""\
-- pgmq-jobs {version}: the upgrade from {previous}, then the whole current schema.
-- GENERATED from sql/upgrades/ and sql/ by `python -m pgmq_jobs.ops.migrations`
-- (make migrations): do not edit. Released migrations are never edited either:
-- each release adds one file.
--
-- Everything below runs under search_path = {PINNED_SEARCH_PATH}, so an object
-- planted in a schema of the session's path never runs here.
set search_path = {PINNED_SEARCH_PATH};

-- PGMQ must be present (an existing pgmq schema is used as it is); pg_cron is
-- created only where it may live. A database of a newer release is refused.
do $pgmq_jobs_prologue$
declare
    installed text;
begin
    if not exists (select from pg_catalog.pg_namespace where nspname = 'pgmq') then
        if exists (select from pg_catalog.pg_available_extensions where name = 'pgmq') then
            create extension if not exists pgmq;
        else
            raise exception '{PGMQ_MISSING_MESSAGE}';
        end if;
    end if;
    if exists (select from pg_catalog.pg_available_extensions where name = 'pg_cron')
        and current_database() operator(pg_catalog.=)
            pg_catalog.current_setting('cron.database_name', true) then
        create extension if not exists pg_cron;
    end if;
    if pg_catalog.to_regclass('pgmq_jobs.schema_version') is not null then
        select v.version into installed
        from pgmq_jobs.schema_version as v
        order by pg_catalog.string_to_array(v.version, '.')::integer [] desc
        limit 1;
        if pg_catalog.string_to_array(installed, '.')::integer []
            operator(pg_catalog.>) pg_catalog.string_to_array('{version}', '.')::integer [] then
            raise exception 'the database has pgmq-jobs %, newer than this migration''s {version}: '
                'nothing was changed', installed;
        end if;
    end if;
end
$pgmq_jobs_prologue$;
"""


def render(sql_directory: Path | None = None) -> str:
    """The current release's migration text."""
    release = current_release()
    previous = RELEASES[-2].version
    [step] = upgrade_path(previous, release.version, upgrade_steps(upgrades_dir(sql_directory)))
    step_text = step.path.read_text(encoding="utf-8").rstrip("\n")
    return (
        _prologue(release.version, previous)
        + f"\n-- {'=' * 70}\n-- sql/upgrades/{step.path.name}\n-- {'=' * 70}\n{step_text}\n\n"
        + schema_sql(sql_directory)
        + "\nreset search_path;\n"
    )


def default_migrations_dir() -> Path:
    root = repo_root()
    base = root if root is not None else Path.cwd()
    return base / "supabase" / "migrations"


def write(migrations_dir: Path | None = None, sql_directory: Path | None = None) -> list[Path]:
    """Every release's file in ``migrations_dir``: the released ones copied as shipped (from
    the repository's ``supabase/migrations``), the current one generated. Returns the paths."""
    target_dir = migrations_dir if migrations_dir is not None else default_migrations_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    source_dir = default_migrations_dir()
    written: list[Path] = []
    for release in RELEASES[:-1]:
        target = target_dir / release.filename
        if target.resolve() != (source_dir / release.filename).resolve():
            shutil.copyfile(source_dir / release.filename, target)
        written.append(target)
    target = target_dir / current_release().filename
    target.write_text(render(sql_directory), encoding="utf-8")
    written.append(target)
    return written


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(migrations_dir: Path | None = None, sql_directory: Path | None = None) -> str | None:
    """None when every released file is as shipped and the current one is fresh; else what
    is wrong (a unified diff for a stale current file)."""
    target_dir = migrations_dir if migrations_dir is not None else default_migrations_dir()
    problems: list[str] = []
    for release in RELEASES[:-1]:
        path = target_dir / release.filename
        if not path.is_file():
            problems.append(f"{path}: the migration of released {release.version} is missing")
        elif sha256(path) != release.sha256:
            problems.append(
                f"{path}: the migration of released {release.version} was edited (sha256 "
                f"{sha256(path)}, shipped {release.sha256}); restore it: a release adds a "
                f"file, it never edits one"
            )
    known = {release.filename for release in RELEASES}
    problems.extend(
        f"{path}: not the migration of any release in pgmq_jobs.ops.migrations.RELEASES"
        for path in sorted(target_dir.glob("*.sql"))
        if path.name not in known
    )
    target = target_dir / current_release().filename
    fresh = render(sql_directory)
    committed = target.read_text(encoding="utf-8") if target.is_file() else ""
    if committed != fresh:
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            fromfile=f"{target} (committed)",
            tofile=f"{target} (generated from sql/)",
        )
        problems.append("".join(diff) or f"{target} is missing")
    return "\n".join(problems) if problems else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgmq_jobs.ops.migrations",
        description="Generate the current release's Supabase migration from sql/.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="fail if a released migration changed or the current one is stale",
    )
    parser.add_argument("--dir", type=Path, default=None, help="migrations directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.dir)
        if problems is None:
            print("migrations are up to date")
            return 0
        sys.stdout.write(problems + "\n")
        print(
            "\nmigrations are not as they should be: run `make migrations` and commit the result",
            file=sys.stderr,
        )
        return 1
    for path in write(args.dir):
        print(f"wrote {path}" if path.name == current_release().filename else f"kept {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
