"""Locations of the SQL sources: this project's ``sql/`` and PGMQ's shipped SQL."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SQL_DIR_ENV = "PGMQ_JOBS_SQL_DIR"

# The pgmq_jobs package (this module lives in pgmq_jobs/ops/).
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    candidate = _PACKAGE_DIR.parent.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "runner").is_dir():
        return candidate
    return None


def sql_dir() -> Path:
    """Directory holding the ordered ``*.sql`` files.

    Order of precedence: ``$PGMQ_JOBS_SQL_DIR``; ``<repo>/sql`` for a source checkout
    (editable install); ``pgmq_jobs/sql`` inside an installed wheel.
    """
    override = os.environ.get(SQL_DIR_ENV)
    if override:
        path = Path(override)
        if not path.is_dir():
            raise FileNotFoundError(f"{SQL_DIR_ENV}={override} is not a directory")
        return path
    root = repo_root()
    if root is not None and (root / "sql").is_dir():
        return root / "sql"
    packaged = _PACKAGE_DIR / "sql"
    if packaged.is_dir():
        return packaged
    raise FileNotFoundError(
        f"cannot find the pgmq-jobs sql/ directory (looked in the source checkout and in "
        f"{packaged}); set {SQL_DIR_ENV}"
    )


def pgmq_sql_path() -> Path:
    """``pgmq/sql/pgmq.sql`` shipped by the PyPI ``pgmq`` package, without importing it."""
    spec = importlib.util.find_spec("pgmq")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "sql" / "pgmq.sql"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the PyPI package 'pgmq' (which ships pgmq/sql/pgmq.sql) is not installed; "
        "run `pip install pgmq` or install the pgmq extension in the database"
    )


def pgmq_sql_version() -> str | None:
    """Version of the PGMQ SQL shipped by the PyPI package (its ``sql/VERSION`` file)."""
    try:
        version_file = pgmq_sql_path().parent / "VERSION"
    except FileNotFoundError:
        return None
    if version_file.is_file():
        return version_file.read_text(encoding="utf-8").strip() or None
    return None
