"""Machinery of the fault suite, shared by ``tests/test_faults.py`` and ``scripts/soak.py``.

Real ``pgmq-jobs worker`` processes run ``apps.fault_app`` (which records every execution in
``fault_ledger``); faults are real: SIGKILL, SIGSTOP/SIGCONT, ``pg_terminate_backend`` and
``pg_ctl stop -m immediate``. Each fault records which jobs were *in flight* (claimed and not
yet acknowledged) when it struck, the only jobs that may legitimately run twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import pgmq_jobs.client as jobs
from apps.fault_app import FAULT_LEDGER_DDL
from apps.harness import CLI, TESTS_DIR
from pgmq_jobs.ops.cluster import EmbeddedCluster
from support import wait_for

Connection = psycopg.Connection[Any]
Payload = dict[str, Any]

# Deliveries that are claimed and still open (no failure reported for the current attempt).
_OPEN = "q.read_ct > 0 and coalesce((q.headers #>> '{{errors,-1,attempt}}')::int, 0) < q.read_ct"


def create_ledger(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FAULT_LEDGER_DDL)


def now_utc() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- database probes


def held(conn: Connection, queue: str, worker_id: str | None = None) -> set[int]:
    """Jobs whose current delivery is claimed and unacknowledged (by ``worker_id``, if given)."""
    query = sql.SQL("select q.msg_id from pgmq.{} as q where " + _OPEN).format(
        sql.Identifier(f"q_{queue}")
    )
    if worker_id is not None:
        query = sql.SQL("{} and q.headers ->> 'worker' = %s").format(query)
        rows = conn.execute(query, (worker_id,)).fetchall()
    else:
        rows = conn.execute(query).fetchall()
    return {int(r[0]) for r in rows}


def quiesce(conn: Connection, pid: int, timeout: float = 5) -> None:
    """Wait until no statement of worker process ``pid`` is still running on the server.

    A killed or stopped worker's last statement (a claim, a completion) may still be
    executing; only after it finished do the queue's rows say what the worker held.
    """

    def idle() -> bool:
        row = conn.execute(
            "select count(*) from pg_stat_activity where application_name = %s"
            " and state = 'active'",
            (f"pgmq-jobs worker {pid}",),
        ).fetchone()
        return row is not None and row[0] == 0

    wait_for(idle, timeout=timeout, interval=0.01, what=f"worker {pid}'s last statement to end")


def remaining(conn: Connection, queue: str) -> int:
    row = conn.execute(
        sql.SQL("select count(*) from pgmq.{}").format(sql.Identifier(f"q_{queue}"))
    ).fetchone()
    return int(row[0]) if row else 0


def visible(conn: Connection, queue: str) -> int:
    row = conn.execute(
        sql.SQL("select count(*) from pgmq.{} where vt <= clock_timestamp()").format(
            sql.Identifier(f"q_{queue}")
        )
    ).fetchone()
    return int(row[0]) if row else 0


def present(conn: Connection, queue: str) -> set[int]:
    """Job ids in the queue, its archive or its DLQ, read in one statement (one snapshot)."""
    rows = conn.execute(
        sql.SQL(
            "select msg_id from pgmq.{q} union all select msg_id from pgmq.{a}"
            " union all select (message ->> 'job_id')::bigint from pgmq.{d}"
        ).format(
            q=sql.Identifier(f"q_{queue}"),
            a=sql.Identifier(f"a_{queue}"),
            d=sql.Identifier(f"q_{queue}_dlq"),
        )
    ).fetchall()
    return {int(r[0]) for r in rows}


def finished(conn: Connection, queue: str) -> int:
    """How many jobs are archived or dead-lettered."""
    row = conn.execute(
        sql.SQL("select (select count(*) from pgmq.{}) + (select count(*) from pgmq.{})").format(
            sql.Identifier(f"a_{queue}"), sql.Identifier(f"q_{queue}_dlq")
        )
    ).fetchone()
    return int(row[0]) if row else 0


def started_between(conn: Connection, queue: str, since: datetime, until: datetime) -> set[int]:
    """Jobs with a handler execution that started in [since, until] (the handler's clock)."""
    rows = conn.execute(
        "select distinct job_id from fault_ledger where queue = %s and event = 'start'"
        " and at between %s and %s",
        (queue, since, until),
    ).fetchall()
    return {int(r[0]) for r in rows}


def terminate_workers(conn: Connection) -> int:
    """``pg_terminate_backend`` every worker connection (jobs and LISTEN), waiting for each."""
    row = conn.execute(
        "select count(*) filter (where pg_terminate_backend(pid, 5000))"
        " from pg_stat_activity where application_name like 'pgmq-jobs %%'"
        " and pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else 0


def crash_and_restart(cluster: EmbeddedCluster) -> None:
    """``pg_ctl stop -m immediate`` (no checkpoint: crash recovery on start), then start."""
    result = cluster._run(
        [cluster._bin("pg_ctl"), "stop", "-D", str(cluster.data_dir), "-m", "immediate", "-w"],
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctl stop -m immediate failed: {result.stdout}{result.stderr}")
    cluster.start()


# ---------------------------------------------------------------- worker processes


def worker_env(dsn: str, queues: Sequence[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PGMQ_JOBS_DSN", "DATABASE_URL"}}
    env.update(
        PYTHONPATH=str(TESTS_DIR),
        FAULT_LEDGER_DSN=dsn,
        FAULT_QUEUES=",".join(queues),
        **extra,
    )
    return env


@dataclass
class WorkerProc:
    """A ``pgmq-jobs worker`` child process with ``apps.fault_app``; logs go to files."""

    worker_id: str
    proc: subprocess.Popen[bytes]
    log: Path
    out: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (after SIGCONT, in case it is stopped), then SIGKILL if it lingers."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stopped_state(self) -> bool:
        """The process is stopped (SIGSTOP took effect)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] in {"T", "t"}

    def summary(self) -> dict[str, Any] | None:
        """The run's JSON summary (stdout in drain mode, else the "stopped:" log line)."""
        lines = self.out.read_text().splitlines() + [
            line.split("stopped: ", 1)[1]
            for line in self.log.read_text().splitlines()
            if "stopped: {" in line
        ]
        for line in reversed(lines):
            if line.startswith("{"):
                return dict(json.loads(line))
        return None


def start_worker(
    dsn: str,
    queues: Sequence[str],
    worker_id: str,
    log_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> WorkerProc:
    argv = [CLI, "worker", "--dsn", dsn, "--app", "apps.fault_app:app", "--worker-id", worker_id]
    for queue in queues:
        argv += ["--queue", queue]
    log, out = log_dir / f"{worker_id}.log", log_dir / f"{worker_id}.out"
    with log.open("wb") as err_fh, out.open("wb") as out_fh:
        proc = subprocess.Popen(
            [*argv, *args], env=env or worker_env(dsn, queues), stdout=out_fh, stderr=err_fh
        )
    return WorkerProc(worker_id, proc, log, out)


@dataclass
class Fault:
    """One fault and the jobs in flight when it struck."""

    kind: str
    in_flight: set[int]
    at: datetime = field(default_factory=now_utc)


class Fleet:
    """``size`` supervised workers: a worker that dies (SIGKILL, a poison job) is replaced.

    Each death is recorded as a fault with the jobs the dead worker held (its open
    deliveries, read right after it died: it can claim or acknowledge nothing any more).
    """

    def __init__(
        self,
        dsn: str,
        queues: Sequence[str],
        log_dir: Path,
        *args: str,
        size: int = 2,
        name: str = "w",
        env: dict[str, str] | None = None,
    ) -> None:
        self.dsn, self.queues, self.log_dir, self.args = dsn, list(queues), log_dir, args
        self.env, self.name = env, name
        self.workers: list[WorkerProc] = []
        self.retired: list[WorkerProc] = []
        self.faults: list[Fault] = []
        self.deaths = 0
        self._serial = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for _ in range(size):
            self.workers.append(self._spawn())
        self._thread = threading.Thread(target=self._supervise, name="fleet", daemon=True)
        self._thread.start()

    def _spawn(self) -> WorkerProc:
        self._serial += 1
        worker_id = f"{self.name}{self._serial}"
        return start_worker(
            self.dsn, self.queues, worker_id, self.log_dir, *self.args, env=self.env
        )

    def _supervise(self) -> None:
        conn: Connection | None = None
        while not self._stop.wait(0.02):
            with self._lock:
                for i, worker in enumerate(self.workers):
                    if worker.alive() or self._stop.is_set():
                        continue
                    self.deaths += 1
                    in_flight, conn = self._held_after_death(conn, worker)
                    self.faults.append(Fault(f"death of {worker.worker_id}", in_flight))
                    self.retired.append(worker)
                    self.workers[i] = self._spawn()
        if conn is not None:
            conn.close()

    def _held_after_death(
        self, conn: Connection | None, worker: WorkerProc
    ) -> tuple[set[int], Connection]:
        """The dead worker's open deliveries; the database itself may be restarting (soak)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
                quiesce(conn, worker.pid)
                return set().union(*(held(conn, q, worker.worker_id) for q in self.queues)), conn
            except psycopg.OperationalError:
                conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def kill9(self, conn: Connection, index: int = 0) -> Fault:
        """SIGKILL worker ``index``; the supervisor records the fault and replaces it."""
        with self._lock:
            victim = self.workers[index]
            victim.kill()
            quiesce(conn, victim.pid)
            in_flight = set().union(*(held(conn, q, victim.worker_id) for q in self.queues))
            fault = Fault(f"kill -9 {victim.worker_id}", in_flight)
            self.faults.append(fault)
            self.retired.append(victim)
            self.workers[index] = self._spawn()
        return fault

    def summaries(self) -> list[dict[str, Any]]:
        """The JSON summaries of every worker that stopped cleanly (after :meth:`stop`)."""
        return [s for s in (w.summary() for w in self.retired + self.workers) if s is not None]

    def in_flight(self) -> set[int]:
        return set().union(*(f.in_flight for f in self.faults))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for worker in self.workers:
            worker.stop()


# ---------------------------------------------------------------- producing and draining


class Producer(threading.Thread):
    """Enqueues ``total`` jobs in batches on its own connection, surviving database faults.

    ``acknowledged`` holds the ids of enqueues that returned (committed); a batch whose
    commit went unanswered is not acknowledged (it may or may not exist).
    """

    def __init__(
        self,
        dsn: str,
        queue: str,
        make: Callable[[int], Payload],
        total: int,
        *,
        batch: int = 10,
        pause: float = 0.02,
    ) -> None:
        super().__init__(name="producer", daemon=True)
        self.dsn, self.queue, self.make, self.total = dsn, queue, make, total
        self.batch, self.pause = batch, pause
        self.acknowledged: list[int] = []
        self.unanswered = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn: Connection | None = None
        n = 0
        while n < self.total and not self.stop_event.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
                payloads = [self.make(n + i) for i in range(min(self.batch, self.total - n))]
                ids = jobs.enqueue_batch(conn, self.queue, payloads)
                self.acknowledged.extend(ids)
                n += len(payloads)
            except psycopg.OperationalError:
                self.unanswered += 1
                conn = None
                time.sleep(0.1)
                continue
            self.stop_event.wait(self.pause)
        if conn is not None:
            conn.close()


def drain(
    dsn: str,
    queue: str,
    log_dir: Path,
    *,
    timeout: float = 40,
    name: str = "drain",
) -> list[dict[str, Any]]:
    """Run healthy ``--drain`` workers until ``queue`` is empty (bounded by ``timeout``).

    A drain worker exits once nothing is ready; jobs still leased or waiting to retry make
    the next round wait until one becomes visible. Sleeps are capped at 50 ms.
    """
    deadline = time.monotonic() + timeout
    env = worker_env(dsn, [queue], FAULT_SLEEP_CAP="0.05")
    summaries: list[dict[str, Any]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for round_no in range(1, 1000):
            if remaining(conn, queue) == 0:
                return summaries
            left = deadline - time.monotonic()
            wait_for(
                lambda: remaining(conn, queue) == 0 or visible(conn, queue) > 0,
                timeout=max(left, 0.1),
                interval=0.05,
                what=f"a job of {queue} to become visible for the drain",
            )
            if remaining(conn, queue) == 0:
                return summaries
            worker = start_worker(
                dsn,
                [queue],
                f"{name}{round_no}",
                log_dir,
                "--drain",
                "--no-listen",
                "--poll-interval",
                "0.1",
                "--concurrency",
                "16",
                "--max-seconds",
                f"{max(deadline - time.monotonic(), 1):.1f}",
                "--grace",
                "5",
                env=env,
            )
            try:
                worker.proc.wait(timeout=max(deadline - time.monotonic(), 1) + 10)
            finally:
                worker.kill()
            summary = worker.summary()
            if summary is not None:
                summaries.append(summary)
            if time.monotonic() > deadline:
                break
        if remaining(conn, queue) == 0:
            return summaries
    raise AssertionError(f"the drain of {queue} did not empty it within {timeout}s")
