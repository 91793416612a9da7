"""Generate the Supabase migration from ``sql/``.

``python -m pgmq_jobs.migrations`` rewrites ``supabase/migrations/<MIGRATION_NAME>``;
``--check`` exits 1 (with a diff) when the committed file differs from a fresh generation.
The output is deterministic (no timestamps inside) so the check can compare bytes.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from pgmq_jobs.install import schema_sql
from pgmq_jobs.paths import repo_root

MIGRATION_NAME = "20261123000000_pgmq_jobs.sql"

PGMQ_MISSING_MESSAGE = (
    "PGMQ is not installed in this database: enable the pgmq extension "
    "(Supabase: Database -> Extensions -> pgmq, or `create extension pgmq`) "
    "or run `pgmq-jobs install --dsn <database url>`"
)

PROLOGUE = f"""\
-- pgmq-jobs schema migration.
-- GENERATED from sql/ by `python -m pgmq_jobs.migrations` (make migrations): do not edit.
--
-- Prologue: PGMQ must be present. An existing pgmq schema (extension or plain SQL) is used
-- as it is; otherwise the pgmq extension is created where the server offers it. pg_cron is
-- created only where it may live (the database named by cron.database_name).
do $pgmq_jobs_prologue$
begin
    if not exists (select 1 from pg_catalog.pg_namespace where nspname = 'pgmq') then
        if exists (select 1 from pg_catalog.pg_available_extensions where name = 'pgmq') then
            create extension if not exists pgmq;
        else
            raise exception '{PGMQ_MISSING_MESSAGE}';
        end if;
    end if;
    if exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron')
        and current_database() = current_setting('cron.database_name', true) then
        create extension if not exists pg_cron;
    end if;
end
$pgmq_jobs_prologue$;
"""


def default_migrations_dir() -> Path:
    root = repo_root()
    base = root if root is not None else Path.cwd()
    return base / "supabase" / "migrations"


def render(sql_directory: Path | None = None) -> str:
    """The full migration text."""
    return PROLOGUE + "\n" + schema_sql(sql_directory)


def write(migrations_dir: Path | None = None, sql_directory: Path | None = None) -> Path:
    target_dir = migrations_dir if migrations_dir is not None else default_migrations_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / MIGRATION_NAME
    target.write_text(render(sql_directory), encoding="utf-8")
    return target


def check(migrations_dir: Path | None = None, sql_directory: Path | None = None) -> str | None:
    """None when the committed migration is current, else a unified diff (committed → fresh)."""
    target_dir = migrations_dir if migrations_dir is not None else default_migrations_dir()
    target = target_dir / MIGRATION_NAME
    fresh = render(sql_directory)
    committed = target.read_text(encoding="utf-8") if target.is_file() else ""
    if committed == fresh:
        return None
    diff = difflib.unified_diff(
        committed.splitlines(keepends=True),
        fresh.splitlines(keepends=True),
        fromfile=f"{target} (committed)",
        tofile=f"{target} (generated from sql/)",
    )
    return "".join(diff) or f"{target} is missing"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgmq_jobs.migrations",
        description="Generate supabase/migrations from sql/.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="fail if the committed migration differs from a fresh generation",
    )
    parser.add_argument("--dir", type=Path, default=None, help="migrations directory")
    args = parser.parse_args(argv)
    if args.check:
        diff = check(args.dir)
        if diff is None:
            print("migration is up to date")
            return 0
        sys.stdout.write(diff)
        print("\nmigration is stale: run `make migrations` and commit the result", file=sys.stderr)
        return 1
    path = write(args.dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
