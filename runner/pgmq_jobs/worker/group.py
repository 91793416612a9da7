"""Several databases: one :class:`~pgmq_jobs.worker.loop.Worker` per database, each queue
served from the database where it exists."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, replace
from types import FrameType

import psycopg

from pgmq_jobs.api import calls
from pgmq_jobs.api.sync import run
from pgmq_jobs.registry import Registry
from pgmq_jobs.worker.loop import Worker
from pgmq_jobs.worker.options import Summary, WorkerOptions, default_worker_id

log = logging.getLogger("pgmq_jobs.worker")


@dataclass(frozen=True)
class Database:
    """One database of a sharded deployment: a name (for logs and worker ids), the DSN of
    its job connection and, optionally, a direct DSN for its LISTEN connection."""

    name: str
    dsn: str
    listen_dsn: str | None = None


def locate_queues(databases: list[Database], queues: list[str]) -> dict[str, list[str]]:
    """Which of ``queues`` each database holds: ``{database name: [queue, …]}``.

    Every queue must exist in exactly one database; otherwise a ValueError names the queue
    and the databases. A database holding none of them maps to an empty list.
    """
    found: dict[str, list[str]] = {}
    for db in databases:
        # The catalog (readable by every role) rather than pgmq_jobs.queues (admin only).
        with psycopg.connect(
            db.dsn, autocommit=True, connect_timeout=5, prepare_threshold=None
        ) as conn:
            present = set(run(conn, calls.queues_present(queues)))
        found[db.name] = [q for q in queues if q in present]
    names = ", ".join(db.name for db in databases)
    for queue in queues:
        where = [name for name, held in found.items() if queue in held]
        if not where:
            raise ValueError(f"queue {queue} exists in none of the databases ({names})")
        if len(where) > 1:
            raise ValueError(
                f"queue {queue} exists in more than one database ({', '.join(where)}): "
                "a worker serves each queue from one database; run one worker per database"
            )
    return found


class WorkerGroup:
    """One :class:`Worker` per database, each in its own thread, stopped together.

    Each queue is bound to the database where it exists (:func:`locate_queues`). Every member
    keeps the single-database budget (one job connection, one LISTEN connection), so a
    process serving D databases holds at most 2·D connections (D with ``listen=False``).
    ``concurrency``, ``max_jobs`` and ``drain`` apply to each database separately; the
    summary adds them up. When one member fails, the others are stopped and its error is
    raised.
    """

    def __init__(self, databases: list[Database], registry: Registry, options: WorkerOptions):
        options.check()
        if len({db.name for db in databases}) != len(databases):
            raise ValueError("database names must be unique")
        placement = locate_queues(databases, list(options.queues))
        base_id = options.worker_id or default_worker_id()
        self.members: list[tuple[Database, Worker]] = []
        for db in databases:
            queues = placement[db.name]
            if not queues:
                log.warning("database %s holds none of the queues; not connecting to it", db.name)
                continue
            member_options = replace(
                options,
                queues=queues,
                worker_id=f"{base_id}@{db.name}",
                listen_dsn=db.listen_dsn,
            )
            self.members.append((db, Worker(db.dsn, registry, member_options)))
        self._stop_requested = threading.Event()
        self._errors: list[BaseException] = []

    def stop(self) -> None:
        """Stop every member gracefully (thread-safe)."""
        self._stop_requested.set()
        for _, worker in self.members:
            worker.stop()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second signal exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_requested.is_set():
            os._exit(128 + signum)
        self.stop()

    def _run_member(self, worker: Worker) -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced by run() in the calling thread
            self._errors.append(exc)
            self.stop()

    def run(self) -> Summary:
        """Run every member until all have stopped; the summed summary."""
        threads = [
            threading.Thread(
                target=self._run_member, args=(worker,), name=f"pgmq-jobs-db-{db.name}"
            )
            for db, worker in self.members
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        total = Summary()
        for _, worker in self.members:
            total.add(worker.summary)
        return total


def run_worker_group(
    databases: list[Database], registry: Registry, options: WorkerOptions
) -> Summary:
    """Run a :class:`WorkerGroup` in this thread with signal handling (as the CLI does)."""
    group = WorkerGroup(databases, registry, options)
    if threading.current_thread() is threading.main_thread():
        group.install_signal_handlers()
    return group.run()
