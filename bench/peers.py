"""Install the peers from their registries into a throwaway, git-ignored environment:
PyPI packages into ``bench/.peers/venv``, npm packages into ``bench/.peers/node``.
Nothing is vendored; a failed install is recorded and the bench goes on without that peer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"
VENV = PEERS / "venv"
NODE_DIR = PEERS / "node"

PY_PACKAGES = {
    "procrastinate": "procrastinate==3.10.0",
    "pgqueuer": "pgqueuer==1.6.0",
}
PY_SUPPORT = ["asyncpg", "psycopg[binary]", "psycopg-pool"]
NODE_PACKAGES = {"pg-boss": "10.4.2", "graphile-worker": "0.17.3", "pg": "8"}


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-5:]
        raise RuntimeError(f"{' '.join(argv[:4])} … failed: {' | '.join(tail)}")
    return proc.stdout


def python_peers(log: object = print) -> tuple[str, dict[str, str], dict[str, str]]:
    """(python path, {name: version}, {name: error}) for the PyPI peers."""
    python = VENV / "bin" / "python"
    versions: dict[str, str] = {}
    errors: dict[str, str] = {}
    stamp = VENV / ".bench-stamp"
    wanted = json.dumps([*PY_PACKAGES.values(), *PY_SUPPORT])
    try:
        if not python.exists():
            log(f"peers: creating {VENV.relative_to(HERE.parent)}")  # type: ignore[operator]
            _run([sys.executable, "-m", "venv", str(VENV)])
        if not stamp.exists() or stamp.read_text() != wanted:
            log("peers: pip install " + " ".join(PY_PACKAGES.values()))  # type: ignore[operator]
            _run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    *PY_SUPPORT,
                ]
            )
            for name, spec in PY_PACKAGES.items():
                try:
                    _run(
                        [
                            str(python),
                            "-m",
                            "pip",
                            "install",
                            "-q",
                            "--disable-pip-version-check",
                            spec,
                        ]
                    )
                except RuntimeError as exc:
                    errors[name] = str(exc)
            if not errors:
                stamp.write_text(wanted)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return str(python), versions, {name: str(exc) for name in PY_PACKAGES}
    for name in PY_PACKAGES:
        if name in errors:
            continue
        try:
            versions[name] = _run(
                [str(python), "-c", f"import importlib.metadata as m; print(m.version('{name}'))"]
            ).strip()
        except RuntimeError as exc:
            errors[name] = str(exc)
    return str(python), versions, errors


def node_peers(log: object = print) -> tuple[Path, dict[str, str], dict[str, str]]:
    """(node_modules path, {name: version}, {name: error}) for the npm peers."""
    modules = NODE_DIR / "node_modules"
    versions: dict[str, str] = {}
    errors: dict[str, str] = {}
    package = {
        "name": "pgmq-jobs-bench-peers",
        "private": True,
        "description": "throwaway: the benchmark's npm peers (git-ignored)",
        "dependencies": NODE_PACKAGES,
    }
    try:
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        text = json.dumps(package, indent=2) + "\n"
        pkg = NODE_DIR / "package.json"
        stamp = NODE_DIR / ".bench-stamp"
        if not pkg.exists() or pkg.read_text() != text:
            pkg.write_text(text)
        if not stamp.exists() or stamp.read_text() != text or not modules.is_dir():
            log("peers: npm install " + " ".join(f"{k}@{v}" for k, v in NODE_PACKAGES.items()))  # type: ignore[operator]
            _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR)
            stamp.write_text(text)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return modules, versions, {"pg-boss": str(exc), "graphile-worker": str(exc)}
    for name in ("pg-boss", "graphile-worker"):
        try:
            meta = json.loads((modules / name / "package.json").read_text())
            versions[name] = meta["version"]
        except (OSError, ValueError, KeyError) as exc:
            errors[name] = f"not installed: {exc}"
    return modules, versions, errors
