"""Heartbeats and the connection: the worker's liveness towards the database.

:class:`Connection` (re)opens the api's connection, checks the database's release once, at
the first connection, and after a loss waits with capped exponential backoff (handlers keep
running meanwhile). :class:`Heartbeat` tells ``pgmq_jobs.workers`` every few seconds that
the worker is alive, and a last time that it stops.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

import psycopg

from pgmq_jobs.ops.versions import check_compatible
from pgmq_jobs.worker.api import CONNECTION_ERRORS, Beat, WorkerApi
from pgmq_jobs.worker.options import WorkerOptions
from pgmq_jobs.worker.state import State
from pgmq_jobs.worker.wakeup import backoff_delay

log = logging.getLogger("pgmq_jobs.worker")


class Connection:
    """The state of the api's connection: up, or down until ``reconnect_at``."""

    def __init__(
        self, api: WorkerApi, options: WorkerOptions, on_connect: Callable[[], None]
    ) -> None:
        self.api = api
        self.options = options
        self.on_connect = on_connect
        self.failures = 0
        self.reconnect_at = 0.0
        self.schema_checked = False

    @property
    def up(self) -> bool:
        return self.api.connected

    def waiting(self, now: float) -> bool:
        """Down, and not yet time to try again."""
        return not self.api.connected and now < self.reconnect_at

    def ensure(self) -> None:
        """Connect unless connected (raises one of CONNECTION_ERRORS when it cannot)."""
        if self.api.connected:
            return
        self.api.connect()
        if not self.schema_checked:
            self._check_schema()
        if self.failures:
            log.info("database connection restored")
        self.failures = 0
        self.on_connect()

    def _check_schema(self) -> None:
        """The database's release against this package's, once, at the first connection:
        a newer compatible schema is a warning; anything else raises VersionError."""
        warning = check_compatible(self.api.schema_info(), who="this worker")
        if warning is not None:
            log.warning("%s", warning)
        self.schema_checked = True

    def lost(self, exc: Exception) -> None:
        self.failures += 1
        delay = backoff_delay(self.failures, cap=self.options.reconnect_cap)
        self.reconnect_at = time.monotonic() + delay
        self.api.close()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("database unavailable (%s); reconnecting in %.2fs", reason, delay)


class Heartbeat:
    """Beats every ``heartbeat_interval`` seconds with the run's counts."""

    def __init__(
        self, state: State, options: WorkerOptions, api: WorkerApi, worker_id: str
    ) -> None:
        self.state = state
        self.options = options
        self.api = api
        self.worker_id = worker_id
        self.next_beat = 0.0
        self.host = socket.gethostname()

    def due(self, now: float) -> bool:
        return now >= self.next_beat

    def beat(self, *, stopping: bool = False) -> None:
        self.next_beat = time.monotonic() + self.options.heartbeat_interval
        summary = self.state.summary
        beat = Beat(
            worker_id=self.worker_id,
            queues=list(self.options.queues),
            host=self.host,
            pid=os.getpid(),
            jobs_done=summary.completed,
            jobs_failed=summary.failed,
            in_flight=len(self.state.active),
            interval=self.options.heartbeat_interval,
            stopping=stopping,
        )
        try:
            self.api.heartbeat(beat)
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error as exc:
            log.warning("heartbeat failed: %s", exc)
