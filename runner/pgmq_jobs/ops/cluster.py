"""A throwaway PostgreSQL cluster started from the system's PostgreSQL binaries.

Used by ``pgmq-jobs dev``, the test suite and the benchmark. When running as root,
``initdb`` and ``pg_ctl`` run as the ``postgres`` OS user (PostgreSQL refuses root).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from pgmq_jobs.api import ops
from pgmq_jobs.api.sync import run

MIN_MAJOR = 15
PG_ROOT = Path("/usr/lib/postgresql")
CONF_NAME = "pgmq_jobs.conf"
LOG_NAME = "server.log"
SUPERUSER = "postgres"
DEFAULT_CRON_DATABASE = "pgmq_jobs"
# Unix socket paths must fit in sockaddr_un.sun_path (108 bytes incl. NUL).
_MAX_SOCKET_DIR = 90

Setting = str | int | float | bool


class ClusterError(RuntimeError):
    """Starting, stopping or initialising the embedded cluster failed."""


def find_bin_dir(min_major: int = MIN_MAJOR) -> Path:
    """Highest ``/usr/lib/postgresql/<ver>/bin`` with ``ver >= min_major``.

    ``$PGMQ_JOBS_PG_BIN`` overrides the search.
    """
    override = os.environ.get("PGMQ_JOBS_PG_BIN")
    if override:
        path = Path(override)
        if not (path / "pg_ctl").is_file():
            raise ClusterError(f"PGMQ_JOBS_PG_BIN={override} has no pg_ctl")
        return path
    versions: list[tuple[int, Path]] = []
    if PG_ROOT.is_dir():
        for child in PG_ROOT.iterdir():
            if child.name.isdigit() and int(child.name) >= min_major:
                bin_dir = child / "bin"
                if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
                    versions.append((int(child.name), bin_dir))
    if not versions:
        raise ClusterError(
            f"no PostgreSQL >= {min_major} server binaries under {PG_ROOT}; "
            "run `make setup` (installs postgresql-15 and friends)"
        )
    return max(versions)[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _format_setting(value: Setting) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _running_as_root() -> bool:
    return os.geteuid() == 0


class EmbeddedCluster:
    """A PostgreSQL cluster in ``data_dir``, reachable on 127.0.0.1:``port``.

    ``settings`` are written to the cluster's configuration on every start, after the
    defaults (listen address, port, socket directory, pg_cron preload,
    ``cron.database_name``, ``max_connections``), so callers can override any of them.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        settings: Mapping[str, Setting] | None = None,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        quiet: bool = False,
    ) -> None:
        self.requested_dir = Path(data_dir).absolute()
        self.bin_dir = Path(bin_dir) if bin_dir is not None else find_bin_dir()
        self.settings: dict[str, Setting] = dict(settings or {})
        self.quiet = quiet
        self._cron_notice_given = False
        self._requested_port = port
        self._port: int | None = port
        self.data_dir = self._resolve_data_dir(self.requested_dir)

    # ------------------------------------------------------------------ helpers

    def _notice(self, message: str) -> None:
        if not self.quiet:
            print(f"pgmq-jobs: {message}", file=sys.stderr)

    def _as_owner(self, argv: Sequence[str]) -> list[str]:
        if _running_as_root():
            return ["runuser", "-u", SUPERUSER, "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self._as_owner(argv),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return result

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _owner_can_use(self, path: Path) -> bool:
        """Whether the cluster owner can reach ``path`` (traverse every parent)."""
        if not _running_as_root():
            return True
        probe = subprocess.run(
            ["runuser", "-u", SUPERUSER, "--", "test", "-x", str(path)],
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def _resolve_data_dir(self, requested: Path) -> Path:
        """``requested``, or a stable stand-in under /tmp if postgres cannot reach it."""
        if not _running_as_root():
            return requested
        requested.parent.mkdir(parents=True, exist_ok=True)
        if self._owner_can_use(requested.parent):
            return requested
        digest = hashlib.sha256(str(requested).encode()).hexdigest()[:12]
        fallback = Path("/tmp") / f"pgmq-jobs-{digest}" / requested.name
        self._notice(
            f"user {SUPERUSER} cannot traverse to {requested.parent}; "
            f"using {fallback} for the cluster data instead"
        )
        fallback.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(fallback.parent, 0o755)
        return fallback

    def _chown_to_owner(self, path: Path) -> None:
        if _running_as_root():
            entry = pwd.getpwnam(SUPERUSER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    @property
    def conf_path(self) -> Path:
        return self.data_dir / CONF_NAME

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def major_version(self) -> int:
        return int(self.bin_dir.parent.name) if self.bin_dir.parent.name.isdigit() else 0

    def _pkglibdir(self) -> Path:
        pg_config = self.bin_dir / "pg_config"
        if pg_config.is_file():
            out = subprocess.run(
                [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
        return self.bin_dir.parent / "lib"

    def has_pg_cron(self) -> bool:
        return (self._pkglibdir() / "pg_cron.so").is_file()

    # ------------------------------------------------------------------ state

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def is_running(self) -> bool:
        if not self.initialised:
            return False
        return self._run([self._bin("pg_ctl"), "status", "-D", str(self.data_dir)]).returncode == 0

    @property
    def port(self) -> int:
        if self._port is None:
            running = self._port_from_pidfile() if self.is_running else None
            self._port = running if running is not None else self._choose_port()
        return self._port

    def _port_from_pidfile(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        # Line 4 of postmaster.pid holds the port.
        if len(lines) >= 4 and lines[3].strip().isdigit():
            return int(lines[3].strip())
        return None

    def _port_from_conf(self) -> int | None:
        try:
            text = self.conf_path.read_text(encoding="utf-8")
        except OSError:
            return None
        match = re.search(r"^port\s*=\s*(\d+)", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    def _choose_port(self) -> int:
        previous = self._port_from_conf()
        if previous is not None and port_is_free(previous):
            return previous
        return free_port()

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    # ------------------------------------------------------------------ lifecycle

    def initdb(self) -> None:
        if self.initialised:
            return
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise ClusterError(f"{self.data_dir} is not empty and holds no cluster")
        self._chown_to_owner(self.data_dir)
        result = self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        if result.returncode != 0:
            raise ClusterError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        main_conf = self.data_dir / "postgresql.conf"
        with main_conf.open("a", encoding="utf-8") as fh:
            fh.write(f"\n# settings written by pgmq-jobs on every start\ninclude '{CONF_NAME}'\n")
        self._write_conf()

    def _socket_dir(self) -> str:
        if len(str(self.data_dir)) <= _MAX_SOCKET_DIR:
            return str(self.data_dir)
        return "/tmp"

    def effective_settings(self) -> dict[str, Setting]:
        settings: dict[str, Setting] = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": self._socket_dir(),
            "max_connections": 200,
            "cron.database_name": DEFAULT_CRON_DATABASE,
        }
        if self.has_pg_cron():
            settings["shared_preload_libraries"] = "pg_cron"
        elif not self._cron_notice_given:
            self._cron_notice_given = True
            self._notice(
                f"pg_cron is not installed for PostgreSQL {self.major_version}; starting "
                "without it (run `pgmq-jobs sweep` periodically instead)"
            )
        settings.update(self.settings)
        return settings

    def _write_conf(self) -> None:
        lines = [
            "# Written by pgmq-jobs (EmbeddedCluster); rewritten on every start.",
            *(f"{key} = {_format_setting(val)}" for key, val in self.effective_settings().items()),
        ]
        self.conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._chown_to_owner(self.conf_path)

    def start(self, timeout: float = 60) -> EmbeddedCluster:
        """Initialise if needed and start; a running cluster is reused as it is."""
        if self.is_running:
            self._port = self._port_from_pidfile() or self._port
            self.wait_ready(timeout)
            return self
        self.initdb()
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            if attempt:
                self._port = free_port()
            self._write_conf()
            result = self._run(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    str(int(timeout)),
                ],
                timeout=timeout + 30,
            )
            if result.returncode == 0:
                self.wait_ready(timeout)
                return self
            if "could not bind" not in self.tail_log():
                break
        output = f"{result.stdout}\n{result.stderr}"
        raise ClusterError(f"pg_ctl start failed:\n{output}\n--- log ---\n{self.tail_log()}")

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll until a connection succeeds, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2, autocommit=True) as conn:
                    run(conn, ops.ping())
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.05)
        raise ClusterError(f"cluster on port {self.port} not ready after {timeout}s: {last}")

    def stop(self, timeout: float = 60) -> None:
        if not self.is_running:
            return
        result = self._run(
            [
                self._bin("pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
            ],
            timeout=timeout + 30,
        )
        if result.returncode != 0:
            raise ClusterError(f"pg_ctl stop failed:\n{result.stdout}\n{result.stderr}")

    def destroy(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def tail_log(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` if it does not exist; return its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            create_database(conn, name, template)
        return self.dsn(name)

    # ------------------------------------------------------------------ standby

    @classmethod
    def standby_of(
        cls,
        primary_dsn: str,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        settings: Mapping[str, Setting] | None = None,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        quiet: bool = False,
        timeout: float = 120,
    ) -> EmbeddedCluster:
        """A streaming hot standby of the server at ``primary_dsn``, not yet started.

        ``pg_basebackup -R -X stream -c fast`` copies the primary into ``data_dir`` (which must
        not hold a cluster) and writes ``standby.signal`` and ``primary_conninfo``; the primary
        needs ``wal_level`` replica or logical (the default), a free WAL sender
        (``max_wal_senders``) and a ``replication`` line in ``pg_hba.conf`` for the user (an
        embedded cluster has one: initdb's trust defaults). ``cron.database_name`` is taken
        from the primary unless ``settings`` gives one, so pg_cron finds its database.
        """
        standby = cls(data_dir, port, settings, bin_dir=bin_dir, quiet=quiet)
        if standby.initialised:
            raise ClusterError(f"{standby.data_dir} already holds a cluster")
        with psycopg.connect(primary_dsn, autocommit=True, connect_timeout=10) as conn:
            cron_database = run(conn, ops.setting("cron.database_name"))
        if cron_database and "cron.database_name" not in standby.settings:
            standby.settings["cron.database_name"] = cron_database
        standby.data_dir.parent.mkdir(parents=True, exist_ok=True)
        standby.data_dir.mkdir(mode=0o700, exist_ok=True)
        if any(standby.data_dir.iterdir()):
            raise ClusterError(f"{standby.data_dir} is not empty")
        standby._chown_to_owner(standby.data_dir)
        result = standby._run(
            [
                standby._bin("pg_basebackup"),
                "-d",
                primary_dsn,
                "-D",
                str(standby.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            timeout=timeout,
        )
        if result.returncode != 0:
            shutil.rmtree(standby.data_dir, ignore_errors=True)
            raise ClusterError(f"pg_basebackup failed:\n{result.stdout}\n{result.stderr}")
        # The primary's server log and pid file are not the standby's.
        for leftover in (LOG_NAME, "postmaster.pid", "postmaster.opts"):
            (standby.data_dir / leftover).unlink(missing_ok=True)
        return standby

    def in_recovery(self) -> bool:
        """The server is a standby (``pg_is_in_recovery()``)."""
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as conn:
            return run(conn, ops.in_recovery())

    def wait_replayed(self, primary_dsn: str, timeout: float = 30) -> None:
        """Wait until this standby has replayed everything committed on the primary so far.

        The target is the WAL *insert* position: with synchronous_commit off a commit record
        can sit in the primary's WAL buffers for up to wal_writer_delay, behind the write
        position that pg_current_wal_lsn() reports, and a wait for that would return before
        the commit reaches the standby.
        """
        with psycopg.connect(primary_dsn, autocommit=True, connect_timeout=5) as conn:
            target = run(conn, ops.wal_insert_lsn())
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as conn:
            while True:
                if run(conn, ops.replayed_to(target)):
                    return
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"standby on port {self.port} did not replay up to {target} "
                        f"within {timeout}s"
                    )
                time.sleep(0.02)

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_database(conn: psycopg.Connection[Any], name: str, template: str | None) -> bool:
    """Create database ``name`` on ``conn``'s server if missing; True if created."""
    if run(conn, ops.database_exists(name)):
        return False
    run(conn, ops.create_database(name, template))
    return True
