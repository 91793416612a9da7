"""Test app of typed tasks: one task per queue named in $TASK_QUEUES (comma-separated).

Each task takes ``n`` (int) and ``word`` (str, default ``"hi"``) and records
``(queue, n, word)`` in the table ``task_runs`` of $TASK_DSN, so a test sees which queues a
worker started with ``--app`` alone worked, and with which arguments.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

import pgmq_jobs

TASK_RUNS_DDL = (
    "create table if not exists task_runs (queue text not null, n int not null, word text)"
)

app = pgmq_jobs.Registry()


def _recorder(queue: str) -> Any:
    def record(n: int, word: str = "hi") -> None:
        with psycopg.connect(os.environ["TASK_DSN"], autocommit=True) as conn:
            conn.execute("insert into task_runs values (%s, %s, %s)", (queue, n, word))

    record.__qualname__ = f"record_{queue}"
    return record


for _queue in filter(None, os.environ.get("TASK_QUEUES", "").split(",")):
    app.task(_queue)(_recorder(_queue))
