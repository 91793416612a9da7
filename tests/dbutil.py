"""Helpers for tests that compare catalogs or drive external tools (pg_dump, supabase)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

# pg_dump lines that differ between two dumps of identical schemas.
_VOLATILE = re.compile(
    r"^(--\s*Dumped (from|by) |\\(un)?restrict |SET |SELECT pg_catalog\.set_config)"
)


def dsn_to_url(dsn: str) -> str:
    """A ``postgresql://`` URL for tools that only take URLs (the Supabase CLI)."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.get("user", "postgres")), safe="")
    password = params.get("password")
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    dbname = quote(str(params.get("dbname", "postgres")), safe="")
    url = f"postgresql://{auth}@{host}:{port}/{dbname}"
    sslmode = params.get("sslmode")
    return f"{url}?sslmode={sslmode}" if sslmode else url


def pg_dump_schema(bin_dir: Path, dsn: str, *schemas: str) -> str:
    """``pg_dump --schema-only`` of ``schemas`` (comments, owners, privileges kept)."""
    argv = [str(bin_dir / "pg_dump"), "--schema-only", "--no-tablespaces"]
    argv += [f"--schema={schema}" for schema in schemas]
    argv += ["--dbname", dsn]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {result.stderr}")
    return result.stdout


def normalise_dump(text: str) -> str:
    """Drop volatile lines and collapse blank runs, so equal schemas give equal text."""
    kept = [line.rstrip() for line in text.splitlines() if not _VOLATILE.match(line)]
    out: list[str] = []
    for line in kept:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"
