"""``make soak``: a long mixed run with random faults, then the ledger checker's table.

    SOAK_SECONDS=600 python scripts/soak.py [--seconds N] [--seed N] [--workers 3]

On its own throwaway :class:`~pgmq_jobs.ops.cluster.EmbeddedCluster` with durability on (fsync,
synchronous_commit, full_page_writes): a producer enqueues a mix of jobs (ordinary work,
flaky jobs that fail then succeed, unparseable payloads, rare jobs that kill their worker)
into one queue (2 s visibility timeout, 4 attempts) while supervised ``pgmq-jobs worker``
processes (``tests/apps/fault_app.py``) run them and two sweepers call ``sweep()`` at
random moments (sometimes at once). Every few seconds a random fault strikes:

- ``kill -9`` a worker;
- SIGSTOP a worker past its visibility timeout, then SIGCONT (its late outcomes are stale);
- ``pg_terminate_backend`` on every worker connection;
- PostgreSQL stopped with ``-m immediate`` and restarted;
- a burst of sweeps in a tight loop from two connections.

Each fault records the jobs in flight when it struck. At the end the producer stops, the
queue is drained by a healthy worker and ``tests/ledger_checker.py`` classifies every
acknowledged enqueue. Exit status 1 if an invariant broke (a lost job, a job dead-lettered
twice or both completed and dead, a duplicate that was not in flight at a fault).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import psycopg  # noqa: E402

import pgmq_jobs.client as jobs  # noqa: E402
from fault_harness import (  # noqa: E402
    Fault,
    Fleet,
    Producer,
    crash_and_restart,
    create_ledger,
    drain,
    finished,
    held,
    now_utc,
    present,
    quiesce,
    started_between,
    terminate_workers,
)
from ledger_checker import check, format_table  # noqa: E402
from pgmq_jobs.ops.cluster import EmbeddedCluster  # noqa: E402
from pgmq_jobs.ops.install import install  # noqa: E402

QUEUE = "soak"
Connection = psycopg.Connection[Any]


def connect(dsn: str, timeout: float = 60) -> Connection:
    """A connection, waiting (bounded) while the server restarts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def late_finishes(conn: Connection) -> int:
    """Executions that returned for a delivery that was no longer current: the archive holds
    a later attempt, so their completion was fenced off (stale) or not sent in time."""
    row = conn.execute(
        "select count(*) from fault_ledger as l join pgmq.a_soak as a on a.msg_id = l.job_id"
        " where l.queue = 'soak' and l.event = 'done' and l.attempt < a.read_ct"
    ).fetchone()
    return int(row[0]) if row else 0


def payload_maker(seed: int) -> Any:
    rng = random.Random(seed)
    lock = threading.Lock()

    def make(i: int) -> dict[str, Any]:
        with lock:
            r = rng.random()
            sleep = round(rng.uniform(0.0, 0.15), 3)
            fail_times = rng.randint(1, 2)
        if r < 0.0002:
            return {"kind": "kill", "i": i}
        if r < 0.02:
            return {"kind": "parse", "i": i, "body": "{not json"}
        if r < 0.05:
            return {"kind": "parse", "i": i, "body": json.dumps({"n": i})}
        if r < 0.13:
            return {"kind": "flaky", "i": i, "fail_times": fail_times, "sleep": sleep}
        return {"kind": "work", "i": i, "sleep": sleep}

    return make


class Sweepers:
    """Two threads calling ``sweep()`` at random moments, or in a tight loop during a burst."""

    def __init__(self, dsn: str, seed: int) -> None:
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.burst_until = 0.0
        self.runs = self.skipped = self.expired = 0
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        conn: Connection | None = None
        while not self.stop_event.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
                result = jobs.sweep(conn)
                with self._lock:
                    self.runs += 1
                    self.skipped += bool(result.get("skipped"))
                    self.expired += int(result.get("expired_to_dlq", 0))
            except psycopg.Error as exc:
                with self._lock:
                    self.errors[type(exc).__name__] += 1
                conn = None
                self.stop_event.wait(0.1)
            if time.monotonic() >= self.burst_until:
                with self._lock:
                    pause = self.rng.uniform(0.0, 1.0)
                self.stop_event.wait(pause)
        if conn is not None:
            conn.close()

    def burst(self, seconds: float) -> None:
        self.burst_until = time.monotonic() + seconds

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)


class Soak:
    def __init__(self, dsn: str, cluster: EmbeddedCluster, args: argparse.Namespace) -> None:
        self.dsn, self.cluster, self.args = dsn, cluster, args
        self.rng = random.Random(args.seed)
        self.log_dir = Path(tempfile.mkdtemp(prefix="pgmq-jobs-soak-logs-"))
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def run(self) -> int:
        with connect(self.dsn) as conn:
            jobs.create_queue(
                conn,
                QUEUE,
                visibility_timeout=2,
                max_attempts=4,
                retry_base=0.2,
                retry_max=2,
            )
        producer = Producer(
            self.dsn, QUEUE, payload_maker(self.args.seed), 10**9, batch=5, pause=0.05
        )
        fleet = Fleet(
            self.dsn,
            [QUEUE],
            self.log_dir,
            "--concurrency",
            "8",
            "--poll-interval",
            "0.2",
            size=self.args.workers,
            name="soak",
        )
        sweepers = Sweepers(self.dsn, self.args.seed + 1)
        started = time.monotonic()
        end = started + self.args.seconds
        next_report = started + 10
        try:
            producer.start()
            while time.monotonic() < end:
                time.sleep(self.rng.uniform(2.0, 6.0))
                if time.monotonic() >= end:
                    break
                self.strike(fleet, sweepers)
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + 10
                    self.progress(started, producer, fleet)
        finally:
            producer.stop_event.set()
            producer.join(timeout=30)
        print(f"soak: producer stopped after {len(producer.acknowledged)} acknowledged enqueues")
        with connect(self.dsn) as conn:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if finished(conn, QUEUE) >= len(producer.acknowledged):
                    break
                time.sleep(0.2)
        fleet.stop()
        sweepers.stop()
        drain(self.dsn, QUEUE, self.log_dir, timeout=180, name="soakdrain")
        faults = self.faults + fleet.faults
        in_flight = set().union(*(f.in_flight for f in faults)) if faults else set()
        with connect(self.dsn) as conn:
            report = check(
                conn,
                QUEUE,
                producer.acknowledged,
                scenario=f"soak {self.args.seconds:g}s",
                in_flight_at_fault=in_flight,
            )
            superseded = late_finishes(conn)
        kinds = Counter(f.kind.split(" ")[0] for f in fleet.faults)
        self.counts["poison death"] = kinds["death"]
        print()
        print(format_table([report]))
        print()
        print("faults: " + ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items())))
        print(
            f"sweeps: {sweepers.runs} ({sweepers.skipped} skipped, another running;"
            f" {sweepers.expired} expired to the DLQ; errors: {dict(sweepers.errors) or 'none'})"
        )
        print(
            f"superseded deliveries whose handler finished anyway (outcome fenced off or"
            f" dropped): {superseded};"
            f" enqueue batches unanswered during faults: {producer.unanswered};"
            f" jobs present but never acknowledged: {report.unacknowledged_extras}"
        )
        print(f"worker logs: {self.log_dir}")
        problems = report.violations() + self.problems
        for problem in problems:
            print(f"VIOLATION: {problem}")
        if not problems and not self.args.keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return 1 if problems else 0

    def progress(self, started: float, producer: Producer, fleet: Fleet) -> None:
        with connect(self.dsn) as conn:
            done = finished(conn, QUEUE)
        print(
            f"soak: {time.monotonic() - started:5.0f}s acknowledged {len(producer.acknowledged)}"
            f" finished {done} faults {sum(self.counts.values())} deaths {fleet.deaths}",
            flush=True,
        )

    # ------------------------------------------------------------ faults

    def strike(self, fleet: Fleet, sweepers: Sweepers) -> None:
        kind = self.rng.choices(
            ["kill9", "sigstop", "terminate", "crash", "sweep_burst"], weights=[3, 2, 3, 1, 2]
        )[0]
        self.counts[kind] += 1
        getattr(self, f"fault_{kind}")(fleet, sweepers)

    def fault_kill9(self, fleet: Fleet, _sweepers: Sweepers) -> None:
        with connect(self.dsn) as conn:
            fleet.kill9(conn, self.rng.randrange(len(fleet.workers)))

    def fault_sigstop(self, fleet: Fleet, _sweepers: Sweepers) -> None:
        victim = fleet.workers[self.rng.randrange(len(fleet.workers))]
        victim.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not victim.stopped_state() and victim.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        with connect(self.dsn) as conn:
            quiesce(conn, victim.pid)
            in_flight = held(conn, QUEUE, victim.worker_id)
            self.faults.append(Fault(f"SIGSTOP {victim.worker_id}", in_flight))
            # Past its visibility timeout: wait until another worker took over its jobs.
            deadline = time.monotonic() + 10
            while held(conn, QUEUE, victim.worker_id) and time.monotonic() < deadline:
                time.sleep(0.05)
        victim.signal(signal.SIGCONT)

    def fault_terminate(self, _fleet: Fleet, _sweepers: Sweepers) -> None:
        with connect(self.dsn) as conn:
            before = held(conn, QUEUE)
            terminate_workers(conn)
            self.faults.append(Fault("pg_terminate_backend", before | held(conn, QUEUE)))

    def fault_crash(self, _fleet: Fleet, _sweepers: Sweepers) -> None:
        with connect(self.dsn) as conn:
            committed = present(conn, QUEUE)  # queue, archive or DLQ: never shrinks here
            since = now_utc()  # before the snapshot: a claim it misses starts after this
            before = held(conn, QUEUE)
        crash_and_restart(self.cluster)
        with connect(self.dsn) as conn:
            missing = committed - present(conn, QUEUE)
            if missing:
                self.problems.append(f"jobs committed before a crash gone: {sorted(missing)}")
            in_flight = before | started_between(conn, QUEUE, since, now_utc())
            self.faults.append(Fault("pg_ctl stop -m immediate", in_flight))

    def fault_sweep_burst(self, _fleet: Fleet, sweepers: Sweepers) -> None:
        sweepers.burst(self.rng.uniform(1.0, 3.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600"))
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "0")) or None)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1, 1 << 30)
    print(f"soak: {args.seconds:g}s, seed {args.seed}, {args.workers} workers", flush=True)
    base = Path(tempfile.mkdtemp(prefix="pgmq-jobs-soak-"))
    os.chmod(base, 0o755)
    durable = {"fsync": True, "synchronous_commit": True, "full_page_writes": True}
    cluster = EmbeddedCluster(base / "data", settings=durable, quiet=True)
    cluster.start()
    try:
        dsn = cluster.create_database("soak")
        install(dsn)
        create_ledger(dsn)
        return Soak(dsn, cluster, args).run()
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
