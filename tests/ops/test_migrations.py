"""The Supabase migration: up to date, deployable with the real Supabase CLI, same schema."""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from dbutil import dsn_to_url, normalise_dump, pg_dump_schema
from pgmq_jobs.ops import migrations
from pgmq_jobs.ops.install import install
from pgmq_jobs.ops.paths import pgmq_sql_path, repo_root
from support import ROOT as SUPPORT_ROOT

ROOT = repo_root() or SUPPORT_ROOT
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


# The 0.1.0 migration as it was shipped (databases run it; it is never edited).
RELEASED_0_1_0_SHA256 = "85ee6f37272c2abc0187aa535a7fc917ab7aa7800d34cbc03ea112e73dc43912"


def test_the_released_0_1_0_migration_is_byte_for_byte_as_shipped() -> None:
    path = ROOT / "supabase" / "migrations" / "20261123000000_pgmq_jobs.sql"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == RELEASED_0_1_0_SHA256
    assert migrations.RELEASES[0].sha256 == RELEASED_0_1_0_SHA256


def test_committed_migration_is_current() -> None:
    diff = migrations.check(ROOT / "supabase" / "migrations")
    assert diff is None, f"run `make migrations` and commit the result:\n{diff}"


def test_check_catches_an_edited_release_and_a_stray_file(tmp_path: Path) -> None:
    migrations.write(tmp_path)
    assert migrations.check(tmp_path) is None
    released = tmp_path / migrations.RELEASES[0].filename
    released.write_text(released.read_text(encoding="utf-8") + "\n-- edited\n", encoding="utf-8")
    (tmp_path / "20990101000000_other.sql").write_text("select 1;\n", encoding="utf-8")
    problems = migrations.check(tmp_path)
    assert problems is not None
    assert "released 0.1.0 was edited" in problems
    assert "20990101000000_other.sql: not the migration of any release" in problems


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


def test_pushing_the_next_release_upgrades_a_0_1_0_project_in_place(
    empty_db: Callable[[], str], supabase_workdir: Path, pg_bin_dir: Path
) -> None:
    """A project that pushed 0.1.0 and holds a job pushes again after this release's file is
    added: the CLI applies only the new file, the job is still there, and the schema is a
    fresh install's."""
    project = empty_db()
    _load_pgmq_sql(project)
    newest = supabase_workdir / "supabase" / "migrations" / migrations.current_release().filename
    held_back = supabase_workdir / newest.name
    newest.rename(held_back)
    first = supabase_db_push(supabase_workdir, project)
    assert first.returncode == 0, first.stdout + first.stderr
    with psycopg.connect(project, autocommit=True) as conn:
        assert conn.execute("select version from pgmq_jobs.schema_version").fetchall() == [
            ("0.1.0",)
        ]
        conn.execute("select pgmq_jobs.create_queue('kept')")
        job_id = conn.execute("""select pgmq_jobs.enqueue('kept', '{"a": 1}')""").fetchone()

    held_back.rename(newest)
    second = supabase_db_push(supabase_workdir, project)

    assert second.returncode == 0, second.stdout + second.stderr
    assert newest.name in second.stdout + second.stderr
    assert migrations.RELEASES[0].filename not in second.stdout + second.stderr
    fresh = empty_db()
    install(fresh)
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("select pgmq_jobs.create_queue('kept')")
    pushed = normalise_dump(pg_dump_schema(pg_bin_dir, project, "pgmq_jobs", "pgmq"))
    installed = normalise_dump(pg_dump_schema(pg_bin_dir, fresh, "pgmq_jobs", "pgmq"))
    assert pushed == installed
    with psycopg.connect(project, autocommit=True) as conn:
        rows = conn.execute("select job_id, payload from pgmq_jobs.claim('kept')").fetchall()
    assert job_id is not None and rows == [(job_id[0], {"a": 1})]


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
