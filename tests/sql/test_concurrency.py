"""Concurrent claimers never receive the same job."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def test_four_connections_claiming_concurrently_never_share_a_job(
    connect: Any, queue_name: str
) -> None:
    admin: Connection = connect(autocommit=True)
    jobs.create_queue(admin, queue_name, visibility_timeout=600)
    total = 2000
    ids = jobs.enqueue_batch(admin, queue_name, [{"i": i} for i in range(total)])

    claimers: list[Connection] = [connect(autocommit=True) for _ in range(4)]
    start = threading.Barrier(len(claimers))
    got: list[list[int]] = [[] for _ in claimers]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            while True:
                batch = jobs.claim(claimers[index], queue_name, 7)
                if not batch:
                    return
                got[index].extend(j.job_id for j in batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(claimers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    counts = Counter(job_id for ids_ in got for job_id in ids_)
    assert [job_id for job_id, n in counts.items() if n > 1] == []
    assert sorted(counts) == sorted(ids)
    assert all(got), "every claimer should have received some jobs"
