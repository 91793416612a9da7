"""procrastinate (PyPI, installed into bench/.peers/venv): PsycopgConnector, an async no-op
task, ``defer_async`` / ``batch_defer_async``, and ``run_worker_async`` in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.systems import driver_util as du
from bench.systems.base import System

TASK = "bench_task"
QUEUE = "bench"


def system(python: str, version: str, unavailable: str | None) -> System:
    return System(
        name="procrastinate",
        key="procrastinate_sys",
        python=python,
        default_concurrency=1,
        version=version,
        unavailable=unavailable,
        settings_note=(
            "PsycopgConnector (pool), async no-op task on queue 'bench', schema by "
            "schema_manager.apply_schema_async; worker defaults (LISTEN/NOTIFY on, fetch "
            "polling 5 s, finished jobs kept: delete_jobs=never) with concurrency as given; "
            "failure path: RetryStrategy(max_attempts=5, wait=0)"
        ),
        remaining_sql="select count(*) from procrastinate_jobs where status in ('todo', 'doing')",
        reset_sql=["truncate procrastinate_jobs, procrastinate_events cascade"],
    )


def make_app(dsn: str, pool: int = 10) -> tuple[Any, Any]:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=pool)
    )

    @app.task(
        name=TASK,
        queue=QUEUE,
        pass_context=True,
        retry=procrastinate.RetryStrategy(max_attempts=5, wait=0),
    )
    async def bench_task(context: Any, **data: Any) -> None:
        du.record_start(data)
        if du.should_fail(data, context.job.attempts + 1):
            raise RuntimeError("fails once (benchmark)")

    return app, bench_task


async def amain(args: Any) -> dict[str, Any]:
    pool = max(10, args.producers + 2, args.concurrency + 2)
    app, task = make_app(args.dsn, pool)
    async with app.open_async():
        if args.command == "setup":
            try:
                await app.schema_manager.apply_schema_async()
            except Exception as exc:  # already applied in a previous run of this database
                if "already exists" not in str(exc):
                    raise
            return {"ok": True}
        if args.command == "enqueue":
            runs = []
            for _ in range(args.runs):
                share = [
                    args.n // args.producers + (1 if i < args.n % args.producers else 0)
                    for i in range(args.producers)
                ]

                async def producer(i: int, share: list[int] = share) -> None:
                    base = sum(share[:i])
                    for k in range(share[i]):
                        await task.defer_async(**du.payload(args.kind, base + k))

                t0 = time.perf_counter()
                await asyncio.gather(*(producer(i) for i in range(args.producers)))
                runs.append(time.perf_counter() - t0)
            return {"runs": runs}
        if args.command in ("batch", "fill"):
            runs = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                for start in range(0, args.n, args.batch):
                    items = [
                        du.payload(args.kind, s)
                        for s in range(start, min(args.n, start + args.batch))
                    ]
                    await task.batch_defer_async(*items)
                runs.append(time.perf_counter() - t0)
            return {"runs": runs}
        if args.command == "latency":
            loop = asyncio.get_running_loop()
            sent: list[tuple[int, float]] = []
            for k in range(10):
                await task.defer_async(**du.payload("lat", -(k + 1)))
                await asyncio.sleep(args.gap_ms / 1000)
            await asyncio.sleep(0.3)
            for seq in range(args.n):
                await task.defer_async(**du.payload("lat", seq))
                sent.append((seq, time.time()))
                await asyncio.sleep(args.gap_ms / 1000)
            del loop
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.writelines(f"{s} {t:.6f}\n" for s, t in sent)
            return {"ok": True}
        if args.command in ("work", "drain"):
            opts: dict[str, Any] = {"queues": [QUEUE], "wait": args.command == "work"}
            if args.concurrency:
                opts["concurrency"] = args.concurrency
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.run_worker_async(**opts), args.max_seconds)
            return {"ok": True}
    return {"error": f"unknown command {args.command}"}


def main() -> None:
    args = du.parser().parse_args()
    du.emit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
