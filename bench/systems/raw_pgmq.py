"""Raw PGMQ: the floor. A minimal psycopg loop doing the same work with ``pgmq.send``,
``pgmq.send_batch``, ``pgmq.read`` (100 at a time) and ``pgmq.archive(queue, ids[])``;
a failed message is made visible again with ``pgmq.set_vt(queue, id, 0)``. Idle, it
waits with ``pgmq.read_with_poll`` (10 ms poll: PGMQ itself has no wake-up here)."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from bench.systems import driver_util as du
from bench.systems.base import System

QUEUE = "bench"
READ_QTY = 100


def system() -> System:
    from importlib.metadata import version

    return System(
        name="raw PGMQ",
        key="raw_pgmq",
        default_concurrency=1,
        version=f"pgmq SQL (PyPI pgmq {version('pgmq')})",
        settings_note=(
            "pgmq.create (logged); one connection, autocommit; read(vt 30 s, 100) + "
            "archive(ids[]) per batch, handlers run inline one after another; idle: "
            "read_with_poll(max 1 s, poll 10 ms)"
        ),
        remaining_sql=f"select count(*) from pgmq.q_{QUEUE}",
        reset_sql=[f"truncate pgmq.q_{QUEUE}, pgmq.a_{QUEUE}"],
    )


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True, application_name="bench raw pgmq")


def setup(dsn: str) -> dict[str, Any]:
    from pgmq_jobs.ops.install import _ensure_pgmq

    with _connect(dsn) as conn:
        with conn.transaction():
            source, version = _ensure_pgmq(conn)
        if not conn.execute("select 1 from pgmq.meta where queue_name = %s", (QUEUE,)).fetchone():
            conn.execute("select pgmq.create(%s)", (QUEUE,))
    return {"pgmq": f"{source} {version}"}


def sender(dsn: str, queue: str = QUEUE, kind: str = "noop") -> Any:
    """One job per transaction on a connection of its own: ``send(seq)``."""
    from psycopg.types.json import Jsonb

    conn = _connect(dsn)
    return lambda seq: conn.execute(
        "select pgmq.send(%s, %s)", (queue, Jsonb(du.payload(kind, seq)))
    )


def batch_sender(dsn: str, queue: str = QUEUE, kind: str = "noop") -> Any:
    """Jobs ``start .. start + count - 1`` in one ``send_batch``: ``send(start, count)``."""
    conn = _connect(dsn)

    def send(start: int, count: int) -> None:
        items = [json.dumps(du.payload(kind, s)) for s in range(start, start + count)]
        conn.execute("select pgmq.send_batch(%s, %s::jsonb[])", (queue, items)).fetchall()

    return send


def work(dsn: str, queue: str, drain: bool, max_seconds: float) -> dict[str, Any]:
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    conn = _connect(dsn)
    done = failed = 0
    deadline = time.monotonic() + max_seconds
    while not stop["now"] and time.monotonic() < deadline:
        if drain:
            rows = conn.execute(
                "select msg_id, read_ct, message from pgmq.read(%s, 30, %s)", (queue, READ_QTY)
            ).fetchall()
            if not rows:
                break
        else:
            rows = conn.execute(
                "select msg_id, read_ct, message from pgmq.read_with_poll(%s, 30, %s, 1, 10)",
                (queue, READ_QTY),
            ).fetchall()
        ok: list[int] = []
        for msg_id, read_ct, message in rows:
            du.record_start(message)
            if du.should_fail(message, read_ct):
                conn.execute("select pgmq.set_vt(%s, %s, 0)", (queue, msg_id))
                failed += 1
            else:
                ok.append(msg_id)
        if ok:
            conn.execute("select pgmq.archive(%s, %s::bigint[])", (queue, ok))
            done += len(ok)
    return {"completed": done, "failed": failed}


def main() -> None:
    args = du.parser().parse_args()
    q = args.queue
    if args.command == "setup":
        du.emit(setup(args.dsn))
    elif args.command == "enqueue":

        def make(_i: int) -> Any:
            return sender(args.dsn, q, args.kind)

        du.emit(
            {"runs": [du.run_producers(args.n, args.producers, make) for _ in range(args.runs)]}
        )
    elif args.command in ("batch", "fill"):
        du.emit({"runs": du.run_batches(args, batch_sender(args.dsn, q, args.kind))})
    elif args.command == "latency":
        du.latency_producer(args.n, args.gap_ms, args.out, sender(args.dsn, q, "lat"))
        du.emit({"ok": True})
    elif args.command in ("work", "drain"):
        du.emit(work(args.dsn, q, args.command == "drain", args.max_seconds))
    else:
        du.fail(f"unknown command {args.command}")


if __name__ == "__main__":
    main()
