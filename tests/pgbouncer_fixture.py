"""A throwaway PgBouncer (Debian's ``pgbouncer``) in front of a test server.

It writes ``pgbouncer.ini`` and ``userlist.txt`` into a temporary directory owned by the
``postgres`` OS user (PgBouncer refuses to run as root), starts it in the foreground as that
user on a free loopback port, waits until it answers, and stops it with SIGINT. Every
database of the server is reachable through it (``* = host=… port=…``) with ``auth_type =
trust`` on loopback.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgmq_jobs.ops.cluster import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
OWNER = "postgres"


def available() -> bool:
    return Path(PGBOUNCER).is_file()


class PgBouncer:
    """PgBouncer for the server of ``server_dsn`` in ``pool_mode`` (default: transaction)."""

    def __init__(
        self,
        server_dsn: str,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 4,
        max_client_conn: int = 200,
    ) -> None:
        params = conninfo_to_dict(server_dsn)
        self.server_host = str(params.get("host") or "127.0.0.1")
        self.server_port = int(params.get("port") or 5432)
        self.user = str(params.get("user") or OWNER)
        self.password = params.get("password")
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.port = free_port()
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ config

    def _ini(self, directory: Path) -> str:
        server = f"host={self.server_host} port={self.server_port} user={self.user}"
        if self.password:
            server += f" password={self.password}"
        return "\n".join(
            [
                "[databases]",
                f"* = {server}",
                "",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {directory / 'userlist.txt'}",
                f"pool_mode = {self.pool_mode}",
                f"default_pool_size = {self.pool_size}",
                f"max_client_conn = {self.max_client_conn}",
                f"logfile = {directory / 'pgbouncer.log'}",
                f"pidfile = {directory / 'pgbouncer.pid'}",
                f"admin_users = {self.user}",
                "ignore_startup_parameters = extra_float_digits",
                "server_login_retry = 1",
                "",
            ]
        )

    def _write(self, directory: Path, name: str, text: str) -> None:
        path = directory / name
        path.write_text(text, encoding="utf-8")
        self._own(path)

    @staticmethod
    def _own(path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OWNER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # ------------------------------------------------------------------ lifecycle

    def dsn(self, dbname: str, **params: str | int) -> str:
        """A DSN for ``dbname`` through this PgBouncer."""
        return make_conninfo(
            host="127.0.0.1", port=self.port, user=self.user, dbname=dbname, **params
        )

    def start(self, timeout: float = 15) -> PgBouncer:
        directory = Path(tempfile.mkdtemp(prefix="pgmq-jobs-pgbouncer-"))
        directory.chmod(0o755)
        self._own(directory)
        self.dir = directory
        self._write(directory, "userlist.txt", f'"{self.user}" ""\n')
        self._write(directory, "pgbouncer.ini", self._ini(directory))
        as_owner: dict[str, str] = {"user": OWNER, "group": OWNER} if os.geteuid() == 0 else {}
        self.proc = subprocess.Popen(
            [PGBOUNCER, str(directory / "pgbouncer.ini")],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **as_owner,  # type: ignore[call-overload]
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with psycopg.connect(
                    self.dsn("postgres"), connect_timeout=2, prepare_threshold=None
                ) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer not ready: {exc}\n{self.log()}") from exc
                time.sleep(0.05)

    def log(self) -> str:
        if self.dir is None:
            return ""
        try:
            return (self.dir / "pgbouncer.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # immediate shutdown
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
