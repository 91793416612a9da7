"""The worker: claim jobs, run their handlers, report the outcomes.

The parts, each doing one job (River's producer / executor / completer split is the model):

- :mod:`~pgmq_jobs.worker.loop`: :class:`Worker`, the loop: timers, limits, shutdown;
- :mod:`~pgmq_jobs.worker.claimer`: prefetch sizing, claims, waiting marks;
- :mod:`~pgmq_jobs.worker.executor`: handler threads, the event loop, timeouts;
- :mod:`~pgmq_jobs.worker.reporter`: batched outcomes and lease extensions;
- :mod:`~pgmq_jobs.worker.heartbeat`: heartbeats and the connection (reconnects);
- :mod:`~pgmq_jobs.worker.group`: one worker per database (:class:`WorkerGroup`);
- :mod:`~pgmq_jobs.worker.api`: :class:`WorkerApi`, the only way the parts reach the
  database (:class:`DatabaseApi` over :mod:`pgmq_jobs.api.calls`, or a fake in tests);
- :mod:`~pgmq_jobs.worker.state`: what the parts share (deliveries, reports, timers).

``def`` handlers run in a small thread pool; ``async def`` handlers are awaited on one event
loop in a thread of its own. A delivery whose lease cannot be extended (``extend`` returns
null: it was redelivered, settled elsewhere or cancelled) is no longer ours:
``ctx.cancelled`` tells its handler so.
"""

from __future__ import annotations

from pgmq_jobs.worker.api import Beat, Claimed, DatabaseApi, Failed, WorkerApi
from pgmq_jobs.worker.group import Database, WorkerGroup, locate_queues, run_worker_group
from pgmq_jobs.worker.loop import Worker, run_worker
from pgmq_jobs.worker.options import Summary, WorkerOptions, default_worker_id
from pgmq_jobs.worker.state import Delivery, Report

__all__ = [
    "Beat",
    "Claimed",
    "Database",
    "DatabaseApi",
    "Delivery",
    "Failed",
    "Report",
    "Summary",
    "Worker",
    "WorkerApi",
    "WorkerGroup",
    "WorkerOptions",
    "default_worker_id",
    "locate_queues",
    "run_worker",
    "run_worker_group",
]
