"""The Supabase migration: up to date, deployable with the real Supabase CLI, same schema."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from dbutil import dsn_to_url, normalise_dump, pg_dump_schema
from pgmq_jobs import migrations
from pgmq_jobs.install import install
from pgmq_jobs.paths import pgmq_sql_path, repo_root

ROOT = repo_root() or Path(__file__).resolve().parent.parent
SUPABASE_CLI = ROOT / "node_modules" / ".bin" / "supabase"


def _load_pgmq_sql(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(pgmq_sql_path().read_text(encoding="utf-8"))  # type: ignore[arg-type]


@pytest.fixture
def supabase_workdir(tmp_path: Path) -> Path:
    """A Supabase project dir: the committed config.toml and a freshly generated migration.

    Fresh, so these tests check what sql/ deploys to (staleness of the committed file is
    test_committed_migration_is_current's job); a copy, so the CLI's scratch files
    (supabase/.temp) stay out of the work tree.
    """
    if not SUPABASE_CLI.exists():
        pytest.skip("Supabase CLI not installed (run `make setup`)")
    (tmp_path / "supabase").mkdir()
    shutil.copy2(ROOT / "supabase" / "config.toml", tmp_path / "supabase" / "config.toml")
    migrations.write(tmp_path / "supabase" / "migrations")
    return tmp_path


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


def test_committed_migration_is_current() -> None:
    diff = migrations.check(ROOT / "supabase" / "migrations")
    assert diff is None, f"run `make migrations` and commit the result:\n{diff}"


def test_migration_is_deterministic() -> None:
    assert migrations.render() == migrations.render()


def test_supabase_db_push_then_use_the_api(
    empty_db: Callable[[], str], supabase_workdir: Path
) -> None:
    dsn = empty_db()
    _load_pgmq_sql(dsn)

    result = supabase_db_push(supabase_workdir, dsn)

    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pgmq_jobs.create_queue('pushq')")
        conn.execute("""select pgmq_jobs.enqueue('pushq', '{"a":1}')""")
        rows = conn.execute("select payload from pgmq_jobs.claim('pushq')").fetchall()
    assert rows == [({"a": 1},)]


def test_supabase_db_push_without_pgmq_says_how_to_install(
    empty_db: Callable[[], str], supabase_workdir: Path
) -> None:
    dsn = empty_db()
    with psycopg.connect(dsn) as conn:
        available = conn.execute(
            "select exists(select from pg_available_extensions where name = 'pgmq')"
        ).fetchone()
    if available == (True,):
        pytest.skip("this server offers the pgmq extension, so the migration creates it")

    result = supabase_db_push(supabase_workdir, dsn)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "PGMQ is not installed in this database" in output
    assert "pgmq-jobs install --dsn" in output
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select to_regnamespace('pgmq_jobs') is null").fetchone()
    assert row == (True,), "a failed push left part of the schema behind"


def test_migration_schema_equals_install_schema(
    empty_db: Callable[[], str], supabase_workdir: Path, pg_bin_dir: Path
) -> None:
    via_push = empty_db()
    _load_pgmq_sql(via_push)
    result = supabase_db_push(supabase_workdir, via_push)
    assert result.returncode == 0, result.stdout + result.stderr

    via_install = empty_db()
    install(via_install)

    pushed = normalise_dump(pg_dump_schema(pg_bin_dir, via_push, "pgmq_jobs"))
    installed = normalise_dump(pg_dump_schema(pg_bin_dir, via_install, "pgmq_jobs"))
    assert "CREATE SCHEMA pgmq_jobs" in installed
    if pushed != installed:
        diff = "".join(
            difflib.unified_diff(
                installed.splitlines(keepends=True),
                pushed.splitlines(keepends=True),
                fromfile="install (sql/)",
                tofile="supabase db push (migration)",
            )
        )
        pytest.fail(f"pgmq_jobs schema differs between install and migration:\n{diff}")
