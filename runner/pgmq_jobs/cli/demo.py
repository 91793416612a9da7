"""``pgmq-jobs demo`` (``make demo``): the whole story in well under a minute.

On the embedded dev database (or ``--dsn``): create a queue with fast retries, enqueue
ordinary, flaky and poison jobs, run a worker with a live progress line, watch retries
happen and the poison job land in the dead-letter queue, "deploy a fix", replay it, and
print the final numbers.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from pgmq_jobs import client
from pgmq_jobs.registry import JobContext, Registry
from pgmq_jobs.worker import Summary, Worker, WorkerOptions

QUEUE = "demo_invoices"
ORDINARY, FLAKY = 40, 6
Connection = psycopg.Connection[Any]


class DemoApp:
    """The demo's handler: invoices to render; one is malformed until the fix ships."""

    def __init__(self) -> None:
        self.fixed = False
        self.registry = Registry()
        self.registry.add(QUEUE, self.render, timeout=10)

    def render(self, payload: dict[str, Any], ctx: JobContext) -> None:
        time.sleep(payload.get("ms", 20) / 1000)
        if payload.get("poison") and not self.fixed:
            raise ValueError(f"invoice {payload['invoice']}: amount 'twelve' is not a number")
        if ctx.attempt <= payload.get("fail_times", 0):
            raise ConnectionError(f"payment API timed out (attempt {ctx.attempt})")


# ---------------------------------------------------------------- output


def say(text: str = "") -> None:
    clear_line()
    print(text, flush=True)


def clear_line() -> None:
    if sys.stdout.isatty():
        sys.stdout.write("\r\033[K")


class EventPrinter(logging.Handler):
    """Shows the worker's retry and dead-letter events as they happen."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retry in" in message:
            say(f"  ↻ {message}")
        elif "dead-letter" in message:
            say(f"  ✗ {message}")


def progress_line(done: int, total: int, in_flight: int, retrying: int, dead: int) -> str:
    width = 30
    filled = width * done // max(total, 1)
    bar = "█" * filled + "·" * (width - filled)
    return f"  [{bar}] {done}/{total} done, {in_flight} running, {retrying} retrying, {dead} dead"


def show_progress(line: str) -> None:
    if sys.stdout.isatty():
        sys.stdout.write("\r\033[K" + line)
        sys.stdout.flush()


# ---------------------------------------------------------------- database


def count(conn: Connection, state: str) -> int:
    """How many of the demo queue's jobs are in ``state`` (``pgmq_jobs.list_jobs``)."""
    return len(client.list_jobs(conn, QUEUE, state, 1000))


def snapshot(conn: Connection, worker: Worker) -> tuple[int, int, int, int]:
    return count(conn, "completed"), worker.in_flight, count(conn, "retrying"), count(conn, "dead")


def set_up_queue(conn: Connection) -> None:
    if any(q["queue"] == QUEUE for q in client.queues(conn)):
        client.drop_queue(conn, QUEUE)
    client.create_queue(conn, QUEUE, max_attempts=4, retry_base=0.2, retry_max=1, jitter="equal")


def enqueue_jobs(conn: Connection) -> int:
    payloads: list[dict[str, Any]] = [{"invoice": i, "ms": 10 + i % 30} for i in range(ORDINARY)]
    payloads += [{"invoice": 100 + i, "fail_times": 1 + i % 2} for i in range(FLAKY)]
    client.enqueue_batch(conn, QUEUE, payloads)
    client.enqueue(conn, QUEUE, {"invoice": 666, "poison": True})
    return len(payloads) + 1


def wait_until(
    conn: Connection, worker: Worker, total: int, done: Callable[[tuple[int, int, int, int]], bool]
) -> tuple[int, int, int, int]:
    deadline = time.monotonic() + 40
    while True:
        state = snapshot(conn, worker)
        show_progress(progress_line(state[0], total, *state[1:]))
        if done(state) or time.monotonic() > deadline:
            clear_line()
            say(progress_line(state[0], total, *state[1:]))
            return state
        time.sleep(0.1)


# ---------------------------------------------------------------- the story


def start_worker(dsn: str, app: DemoApp) -> tuple[Worker, threading.Thread, list[Summary]]:
    options = WorkerOptions([QUEUE], concurrency=8, poll_interval=0.5, heartbeat_interval=1)
    worker = Worker(dsn, app.registry, options)
    result: list[Summary] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    return worker, thread, result


def tell_story(dsn: str) -> Summary:
    app = DemoApp()
    with psycopg.connect(dsn, autocommit=True) as conn:
        say(f"1. queue {QUEUE}: 4 attempts, retries after 0.2 s doubling up to 1 s")
        set_up_queue(conn)
        total = enqueue_jobs(conn)
        say(f"2. enqueued {ORDINARY} ordinary, {FLAKY} flaky and 1 poison job")
        say("3. a worker (8 threads) runs them; retries and dead letters show up as they happen:")
        worker, thread, result = start_worker(dsn, app)
        try:
            wait_until(conn, worker, total, lambda s: s[0] == total - 1 and s[3] == 1)
            show_dead_letter(conn)
            say("5. deploy the fix and replay the dead letter:")
            app.fixed = True
            say(f"   replayed {client.replay(conn, QUEUE)} job(s)")
            wait_until(conn, worker, total, lambda s: s[0] == total and s[3] == 0)
        finally:
            worker.stop()
            thread.join(timeout=30)
        show_workers(conn)
    return result[0] if result else worker.summary


def show_dead_letter(conn: Connection) -> None:
    [dead] = client.dead_letters(conn, QUEUE)
    last = (dead.last_error or "").strip().splitlines()[-1:]
    say(f"4. dead letter: job {dead.job_id}, reason {dead.reason}, {dead.attempts} attempts")
    say(f"   last error: {last[0] if last else '-'}")


def show_workers(conn: Connection) -> None:
    mine = [w for w in client.workers(conn, include_gone=True) if QUEUE in (w["queues"] or [])]
    mine.sort(key=lambda w: w["last_seen_at"], reverse=True)
    rows = [
        (
            w["worker_id"],
            "stopped cleanly" if w["stopped_at"] is not None else w["status"],
            w["jobs_done"],
            w["jobs_failed"],
        )
        for w in mine[:1]
    ]
    for worker_id, status, done, failed in rows:
        say(f"6. worker {worker_id}: {status}, {done} jobs done, {failed} failed attempts")


def run_demo(dsn: str | None = None) -> int:
    started = time.monotonic()
    if dsn is None:
        from pgmq_jobs.ops.dev import start_dev

        say("0. starting the embedded dev database (pgmq-jobs dev)…")
        dsn = start_dev().dsn
        say(f"   {dsn}")
    events = EventPrinter()
    logger = logging.getLogger("pgmq_jobs.worker")
    logger.addHandler(events)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        summary = tell_story(dsn)
    finally:
        logger.removeHandler(events)
    say(
        f"7. final: {summary.claimed} deliveries, {summary.completed} completed, "
        f"{summary.failed} failed attempts, {summary.dead} dead-lettered (then replayed), "
        f"{summary.stale} stale; demo took {time.monotonic() - started:.1f} s"
    )
    return 0
