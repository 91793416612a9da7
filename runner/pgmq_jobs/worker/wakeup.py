"""LISTEN for enqueue notifications on a dedicated connection and wake the worker.

``pgmq_jobs.enqueue`` (and ``replay``) send ``NOTIFY pgmq_jobs_<queue>`` at commit. The
listener holds one session connection (``--listen-dsn`` may point it past a transaction
pooler straight at the server) and calls ``on_wake(queue)`` for every notification, and
``on_wake(None)`` after each (re)connect, since notifications sent while it was away are
lost. When it cannot listen it retries with capped backoff; the worker keeps polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from pgmq_jobs.api import calls
from pgmq_jobs.api.sync import run

log = logging.getLogger("pgmq_jobs.worker")

WakeCallback = Callable[[str | None], None]


def channel_of(queue: str) -> str:
    """The NOTIFY channel of a queue (see ``pgmq_jobs._wake``)."""
    return f"pgmq_jobs_{queue}"


def backoff_delay(failures: int, base: float = 0.1, cap: float = 5.0) -> float:
    """Capped exponential backoff with jitter in [d/2, d] for the ``failures``-th retry."""
    delay = min(cap, base * 2 ** max(failures - 1, 0))
    return delay / 2 + random.random() * delay / 2


class Listener(threading.Thread):
    """A daemon thread that LISTENs on the queues' channels until :meth:`stop`."""

    def __init__(
        self,
        dsn: str,
        queues: Iterable[str],
        on_wake: WakeCallback,
        *,
        reconnect_cap: float = 5.0,
    ) -> None:
        super().__init__(name="pgmq-jobs-listener", daemon=True)
        self.dsn = dsn
        self.queues = {channel_of(q): q for q in queues}
        self.on_wake = on_wake
        self.reconnect_cap = reconnect_cap
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._failures = 0

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen_until_stopped()
                return
            except psycopg.Error as exc:
                self._failures += 1
                self.listening.clear()
                delay = backoff_delay(self._failures, cap=self.reconnect_cap)
                log.warning("listen connection lost (%s); polling; retrying in %.1fs", exc, delay)
                self._stopping.wait(delay)
            finally:
                self._close()

    def _listen_until_stopped(self) -> None:
        self._conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=5,
            application_name=f"pgmq-jobs listen {os.getpid()}",
        )
        for channel in self.queues:
            run(self._conn, calls.listen(channel))
        self.listening.set()
        self._failures = 0
        self.on_wake(None)
        while not self._stopping.is_set():
            for note in self._conn.notifies(timeout=0.5):
                self.on_wake(self.queues.get(note.channel))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
