"""pgmq-jobs: the public SQL API through the thin Python client, and the real
``pgmq-jobs worker`` process (``--drain`` for the processing runs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bench.systems import driver_util as du
from bench.systems.base import ROOT, System

QUEUE = "bench"
APP = "bench.systems.pgmq_jobs_app:app"
ASYNC_APP = "bench.systems.pgmq_jobs_app:async_app"


class PgmqJobs(System):
    # The handler the workers run: "sync" (a def) or "async" (an async def); the processing
    # scenario switches it for its async rows.
    handler_kind: str = "sync"

    def worker_argv(self, dsn: str, concurrency: int, drain: bool, max_seconds: float) -> list[str]:
        argv = [
            str(ROOT / ".venv" / "bin" / "pgmq-jobs"),
            "worker",
            "--dsn",
            dsn,
            "--app",
            ASYNC_APP if self.handler_kind == "async" else APP,
            "--queue",
            QUEUE,
            "--log-level",
            "warning",
            "--max-seconds",
            f"{max_seconds:g}",
        ]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        if drain:
            argv.append("--drain")
        return argv


def system() -> System:
    from importlib.metadata import version

    return PgmqJobs(
        name="pgmq-jobs",
        key="pgmq_jobs",
        default_concurrency=10,
        version=version("pgmq-jobs"),
        settings_note=(
            "queue created with defaults (archive completions, visibility 30 s, LISTEN/NOTIFY "
            "wake-ups) except retry_base 1 ms, jitter none (so a failed job is retried at once); "
            "worker: `pgmq-jobs worker` CLI, default concurrency 10, 1 s poll fallback; "
            "client: pgmq_jobs.client (enqueue, enqueue_batch)"
        ),
        remaining_sql=f"select count(*) from pgmq.q_{QUEUE}",
        reset_sql=[
            f"truncate pgmq.q_{QUEUE}, pgmq.a_{QUEUE}, pgmq.q_{QUEUE}_dlq",
            "truncate pgmq_jobs.outcome_log",
        ],
    )


# ---------------------------------------------------------------- driver


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def sender(dsn: str, queue: str = QUEUE, kind: str = "noop") -> Any:
    """One job per transaction on a connection of its own: ``send(seq)``."""
    from pgmq_jobs import client

    conn = _connect(dsn)
    return lambda seq: client.enqueue(conn, queue, du.payload(kind, seq))


def batch_sender(dsn: str, queue: str = QUEUE, kind: str = "noop") -> Any:
    """Jobs ``start .. start + count - 1`` in one ``enqueue_batch``: ``send(start, count)``."""
    from pgmq_jobs import client

    conn = _connect(dsn)
    return lambda start, count: client.enqueue_batch(
        conn, queue, [du.payload(kind, s) for s in range(start, start + count)]
    )


def setup(dsn: str) -> dict[str, Any]:
    from pgmq_jobs import client
    from pgmq_jobs.ops.install import install

    report = install(dsn)
    with _connect(dsn) as conn:
        client.create_queue(
            conn,
            QUEUE,
            retry_base=timedelta(milliseconds=1),
            retry_max=timedelta(seconds=1),
            jitter="none",
        )
    return {"pgmq": f"{report.pgmq_source} {report.pgmq_version}"}


def main() -> None:

    args = du.parser().parse_args()
    if args.command == "setup":
        du.emit(setup(args.dsn))
    elif args.command == "enqueue":

        def make(_i: int) -> Any:
            return sender(args.dsn, args.queue, args.kind)

        runs = [du.run_producers(args.n, args.producers, make) for _ in range(args.runs)]
        du.emit({"runs": runs})
    elif args.command in ("batch", "fill"):
        du.emit({"runs": du.run_batches(args, batch_sender(args.dsn, args.queue, args.kind))})
    elif args.command == "latency":
        du.latency_producer(args.n, args.gap_ms, args.out, sender(args.dsn, args.queue, "lat"))
        du.emit({"ok": True})
    else:
        du.fail(f"unknown command {args.command}")


if __name__ == "__main__":
    main()
