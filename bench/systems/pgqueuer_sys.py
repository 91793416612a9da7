"""PgQueuer (PyPI, installed into bench/.peers/venv): asyncpg driver (its recommended one),
an async no-op entrypoint, ``Queries.enqueue`` (lists for batches) and ``PgQueuer.run``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import timedelta
from typing import Any

from bench.systems import driver_util as du
from bench.systems.base import System

ENTRYPOINT = "bench"


def system(python: str, version: str, unavailable: str | None) -> System:
    return System(
        name="PgQueuer",
        key="pgqueuer_sys",
        python=python,
        default_concurrency=0,
        version=version,
        unavailable=unavailable,
        settings_note=(
            "AsyncpgDriver on one asyncpg connection, async no-op entrypoint, schema by "
            "Queries.install(); run() defaults: batch_size 10, no cap on concurrent tasks "
            "(its 'default'); 'concurrency 10' = batch_size 5 + max_concurrent_tasks 10 (it "
            "requires cap >= 2x batch); failure path: RetryRequested(delay=0)"
        ),
        remaining_sql="select count(*) from pgqueuer",
        reset_sql=["truncate pgqueuer, pgqueuer_log"],
    )


async def _connect(dsn: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn)


async def amain(args: Any) -> dict[str, Any]:
    from pgqueuer import PgQueuer, Queries
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.errors import RetryRequested
    from pgqueuer.types import QueueExecutionMode

    def body(kind: str, seq: int) -> bytes:
        return json.dumps(du.payload(kind, seq)).encode()

    if args.command == "setup":
        q = Queries(AsyncpgDriver(await _connect(args.dsn)))
        if not await q.schema_is_installed():
            await q.install()
        return {"ok": True}
    if args.command == "enqueue":
        runs = []
        qs = [Queries(AsyncpgDriver(await _connect(args.dsn))) for _ in range(args.producers)]
        for _ in range(args.runs):
            share = [
                args.n // args.producers + (1 if i < args.n % args.producers else 0)
                for i in range(args.producers)
            ]

            async def producer(i: int, share: list[int] = share) -> None:
                base = sum(share[:i])
                for k in range(share[i]):
                    await qs[i].enqueue(ENTRYPOINT, body(args.kind, base + k), 0)

            t0 = time.perf_counter()
            await asyncio.gather(*(producer(i) for i in range(args.producers)))
            runs.append(time.perf_counter() - t0)
        return {"runs": runs}
    if args.command in ("batch", "fill"):
        q = Queries(AsyncpgDriver(await _connect(args.dsn)))
        runs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            for start in range(0, args.n, args.batch):
                seqs = range(start, min(args.n, start + args.batch))
                await q.enqueue(
                    [ENTRYPOINT] * len(seqs), [body(args.kind, s) for s in seqs], [0] * len(seqs)
                )
            runs.append(time.perf_counter() - t0)
        return {"runs": runs}
    if args.command == "latency":
        q = Queries(AsyncpgDriver(await _connect(args.dsn)))
        for k in range(10):
            await q.enqueue(ENTRYPOINT, body("lat", -(k + 1)), 0)
            await asyncio.sleep(args.gap_ms / 1000)
        await asyncio.sleep(0.3)
        sent = []
        for seq in range(args.n):
            await q.enqueue(ENTRYPOINT, body("lat", seq), 0)
            sent.append((seq, time.time()))
            await asyncio.sleep(args.gap_ms / 1000)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.writelines(f"{s} {t:.6f}\n" for s, t in sent)
        return {"ok": True}
    if args.command in ("work", "drain"):
        pgq = PgQueuer.from_asyncpg_connection(await _connect(args.dsn))

        @pgq.entrypoint(ENTRYPOINT)
        async def bench(job: Any) -> None:
            data = json.loads(job.payload or b"{}")
            du.record_start(data)
            if du.should_fail(data, job.attempts + 1):
                raise RetryRequested(delay=timedelta(0), reason="fails once (benchmark)")

        opts: dict[str, Any] = {
            "mode": QueueExecutionMode.continuous
            if args.command == "work"
            else QueueExecutionMode.drain
        }
        if args.concurrency:
            opts["batch_size"] = max(1, args.concurrency // 2)
            opts["max_concurrent_tasks"] = args.concurrency
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pgq.run(**opts), args.max_seconds)
        return {"ok": True}
    return {"error": f"unknown command {args.command}"}


def main() -> None:
    args = du.parser().parse_args()
    du.emit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
