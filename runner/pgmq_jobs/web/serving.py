"""Serving an ASGI app with uvicorn on a socket bound up front.

The socket is bound when the server object is made, so a busy port or a bad address is an
``OSError`` there (the CLI prints one line for it) and port 0 gets a free port that is known
before serving starts. :class:`Served` runs uvicorn in a background thread (tests, embedding,
the CLI's main thread waits for a signal).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv6 when the host has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" serves IPv6 and, where the system allows it, IPv4 too.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listen_error(what: str, host: str, port: int, exc: OSError) -> str:
    """The one line a CLI prints when it cannot listen."""
    reason = exc.strerror or str(exc)
    return f"{what}: cannot listen on {host}:{port}: {reason}"


class Served:
    """``app`` served by uvicorn on ``sock`` in a background thread."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        name: str,
        http: type[asyncio.Protocol] | str = "h11",
    ) -> None:
        self.sock = sock
        self.name = name
        config = uvicorn.Config(
            app,
            log_config=None,  # leave the process's logging alone
            access_log=False,
            lifespan="off",
            http=http,
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self, timeout: float = 15.0) -> None:
        """Serve in a background thread; return once uvicorn accepts connections."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{self.name} stopped before it started serving")
            deadline.wait(0.01)
            waited += 0.01
            if waited > timeout:
                raise RuntimeError(f"{self.name} did not start within {timeout:g} s")

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.sock.close()


def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT (the main thread of a CLI verb)."""
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
