"""Release versions: one version for package, schema and migrations; upgrade paths; the
compatibility verdicts clients give at start. No database needed."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

import pytest

import pgmq_jobs
from pgmq_jobs.ops import migrations
from pgmq_jobs.ops.paths import repo_root
from pgmq_jobs.ops.versions import (
    PACKAGE_VERSION,
    SchemaInfo,
    Step,
    VersionError,
    check_compatible,
    newest,
    parse,
    upgrade_path,
    upgrade_steps,
)
from support import ROOT as SUPPORT_ROOT

ROOT = repo_root() or SUPPORT_ROOT


def test_package_schema_and_migration_name_one_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == PACKAGE_VERSION == pgmq_jobs.__version__
    recorded = re.findall(
        r"values \('([^']+)'\)", (ROOT / "sql" / "999_version.sql").read_text(encoding="utf-8")
    )
    assert recorded == [PACKAGE_VERSION]
    assert migrations.current_release().version == PACKAGE_VERSION
    assert PACKAGE_VERSION in migrations.current_release().filename
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {PACKAGE_VERSION}" in changelog


def test_every_release_after_the_first_has_its_upgrade_step() -> None:
    steps = upgrade_steps(ROOT / "sql" / "upgrades")
    versions = [release.version for release in migrations.RELEASES]
    assert [step.name for step in steps] == [f"{a}--{b}" for a, b in itertools.pairwise(versions)]


def test_versions_order_as_releases_not_as_text() -> None:
    assert parse("0.10.0") > parse("0.9.1")
    assert newest(["0.9.1", "0.10.0", "0.2.0"]) == "0.10.0"
    assert newest([]) is None
    with pytest.raises(ValueError, match=r"'1\.2'"):
        parse("1.2")


def _steps(*names: str) -> list[Step]:
    out = []
    for name in names:
        source, target = name.split("--")
        out.append(Step(source, target, Path(f"{name}.sql")))
    return out


def test_upgrade_path_chains_steps_and_names_what_is_missing() -> None:
    steps = _steps("0.1.0--0.2.0", "0.2.0--0.3.0", "0.3.0--1.0.0")
    assert [s.name for s in upgrade_path("0.1.0", "1.0.0", steps)] == [
        "0.1.0--0.2.0",
        "0.2.0--0.3.0",
        "0.3.0--1.0.0",
    ]
    assert [s.name for s in upgrade_path("0.2.0", "0.3.0", steps)] == ["0.2.0--0.3.0"]
    assert upgrade_path("0.3.0", "0.3.0", steps) == []
    with pytest.raises(VersionError, match=r"no upgrade step from pgmq-jobs 0\.0\.9"):
        upgrade_path("0.0.9", "0.3.0", steps)
    with pytest.raises(VersionError, match=r"1\.0\.0, newer than this package's 0\.3\.0"):
        upgrade_path("1.0.0", "0.3.0", steps)


def test_an_upgrade_step_file_must_be_named_from_to(tmp_path: Path) -> None:
    (tmp_path / "0.1.0-0.2.0.sql").write_text("select 1;\n")
    with pytest.raises(ValueError, match=r"<from>--<to>\.sql"):
        upgrade_steps(tmp_path)


def test_compatibility_verdicts_name_both_versions() -> None:
    assert check_compatible(SchemaInfo("0.2.0", "0.1.0"), "0.2.0") is None
    warning = check_compatible(SchemaInfo("0.3.0", "0.2.0"), "0.2.0", who="this worker")
    assert warning is not None and "0.3.0" in warning and "0.2.0" in warning
    with pytest.raises(VersionError, match=r"serves clients from 0\.3\.0 on; this worker is 0\.2"):
        check_compatible(SchemaInfo("0.4.0", "0.3.0"), "0.2.0", who="this worker")
    with pytest.raises(VersionError, match=r"0\.1\.0, older than this worker's 0\.2\.0"):
        check_compatible(SchemaInfo("0.1.0", "0.1.0"), "0.2.0", who="this worker")
    with pytest.raises(VersionError, match="pgmq-jobs install"):
        check_compatible(None, "0.2.0")
