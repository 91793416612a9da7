"""What the orchestrator knows about a system: how to run its driver and its workers,
how to count its unfinished jobs and how to reset it between runs (standard library only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / ".pgmq-jobs" / "bench-logs"


class DriverError(RuntimeError):
    """A driver command failed; the message carries the tail of its output."""


@dataclass
class System:
    """One job system under test. ``key`` names its database (``bench_<key>``)."""

    name: str
    key: str
    python: str = sys.executable
    default_concurrency: int = 1
    settings_note: str = ""
    remaining_sql: str = ""
    reset_sql: list[str] = field(default_factory=list)
    version: str = ""
    supports_failure: bool = True
    failure_note: str = ""
    unavailable: str | None = None  # why this system cannot run (install error)
    lat_gap_ms: float = 0.0  # a longer gap between latency jobs where the system polls slowly

    @property
    def database(self) -> str:
        return f"bench_{self.key}"

    # ------------------------------------------------------------ driver commands

    def driver_argv(self) -> list[str]:
        return [self.python, "-m", f"bench.systems.{self.module}"]

    @property
    def module(self) -> str:
        return self.key

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT)
        env.pop("PYTHONHOME", None)
        return env

    def call(self, command: str, dsn: str, timeout: float = 300, **opts: Any) -> dict[str, Any]:
        """Run one driver command; returns its JSON answer or raises DriverError."""
        argv = [*self.driver_argv(), command, "--dsn", dsn]
        for key, val in opts.items():
            argv += [f"--{key.replace('_', '-')}", str(val)]
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / f"{self.key}-{command}.log"
        try:
            proc = subprocess.run(
                argv,
                cwd=ROOT,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DriverError(f"{self.name} {command}: no answer within {timeout:g}s") from exc
        log.write_text(f"$ {' '.join(argv)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        try:
            answer = json.loads(last) if last else {}
        except json.JSONDecodeError:
            answer = {}
        if proc.returncode != 0 or "error" in answer or not answer:
            tail = (answer.get("error") if answer else None) or _tail(proc.stderr or proc.stdout)
            raise DriverError(f"{self.name} {command} failed: {tail}")
        return answer

    # ------------------------------------------------------------ workers

    def worker_argv(self, dsn: str, concurrency: int, drain: bool, max_seconds: float) -> list[str]:
        command = "drain" if drain else "work"
        argv = [*self.driver_argv(), command, "--dsn", dsn, "--max-seconds", f"{max_seconds:g}"]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        return argv

    def start_worker(
        self,
        dsn: str,
        concurrency: int,
        *,
        drain: bool,
        max_seconds: float,
        number: int = 0,
        lat_file: str = "",
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start one worker process; its stdout goes to the returned file."""
        env = self.env()
        if lat_file:
            env["BENCH_LAT_FILE"] = lat_file
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        out = LOG_DIR / f"{self.key}-worker-{number}.out"
        with open(out, "wb") as stdout, open(LOG_DIR / f"{self.key}-worker.log", "ab") as stderr:
            proc = subprocess.Popen(
                self.worker_argv(dsn, concurrency, drain, max_seconds),
                cwd=ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        return proc, out


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-1200:] or "no output"
