"""The handler registries the benchmark's ``pgmq-jobs worker`` runs: a no-op that also serves
the pickup-latency (``lat``) and failure-path (``fail_once``) scenarios, as a ``def``
(``app``, in the worker's thread pool) and as an ``async def`` (``async_app``, awaited on the
worker's event loop)."""

from __future__ import annotations

from typing import Any

from bench.systems import driver_util as du
from pgmq_jobs.registry import JobContext, Registry

app = Registry()


@app.handler("bench")
def handle(payload: dict[str, Any], ctx: JobContext) -> None:
    du.record_start(payload)
    if du.should_fail(payload, ctx.attempt):
        raise RuntimeError("fails once (benchmark)")


async_app = Registry()


@async_app.handler("bench")
async def handle_async(payload: dict[str, Any], ctx: JobContext) -> None:
    du.record_start(payload)
    if du.should_fail(payload, ctx.attempt):
        raise RuntimeError("fails once (benchmark)")
