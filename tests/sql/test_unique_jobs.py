"""Unique jobs: enqueue(..., dedupe_key, dedupe_window)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import queue_rows

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def concurrent_enqueues(
    connect: Any, queue: str, n: int, **kwargs: Any
) -> tuple[list[int], list[BaseException]]:
    """n producers in separate transactions enqueue at the same instant; all commit."""
    conns: list[Connection] = [connect(autocommit=False) for _ in range(n)]
    barrier = threading.Barrier(n)
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def produce(c: Connection, i: int) -> None:
        try:
            barrier.wait()
            job_id = jobs.enqueue(c, queue, {"producer": i}, **kwargs)
            c.commit()
            with lock:
                ids.append(job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(c, i)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return ids, errors


@pytest.mark.parametrize("window", [None, 3600])
def test_eight_concurrent_producers_with_one_key_make_one_job(
    conn: Connection, connect: Any, queue_name: str, window: int | None
) -> None:
    jobs.create_queue(conn, queue_name)
    ids, errors = concurrent_enqueues(
        connect, queue_name, 8, dedupe_key="order-42", dedupe_window=window
    )
    assert errors == []
    assert len(ids) == 8 and len(set(ids)) == 1
    [row] = queue_rows(conn, queue_name)
    assert row["msg_id"] == ids[0]


def test_without_window_a_finished_job_frees_its_key(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    first = jobs.enqueue(conn, queue_name, {"v": 1}, dedupe_key="k")
    assert jobs.enqueue(conn, queue_name, {"v": 2}, dedupe_key="k") == first
    [job] = jobs.claim(conn, queue_name)
    # In flight and then waiting to retry: still unfinished, still the same job.
    assert jobs.enqueue(conn, queue_name, {"v": 3}, dedupe_key="k") == first
    assert jobs.complete(conn, queue_name, [job]) == 1
    second = jobs.enqueue(conn, queue_name, {"v": 4}, dedupe_key="k")
    assert second != first
    # Dead-lettered also finishes it.
    [job] = jobs.claim(conn, queue_name)
    assert jobs.fail(conn, queue_name, job.job_id, job.attempt, "x").outcome == "dead"
    third = jobs.enqueue(conn, queue_name, {"v": 5}, dedupe_key="k")
    assert third not in (first, second)
    # Other keys and keyless jobs are independent.
    assert jobs.enqueue(conn, queue_name, {"v": 6}, dedupe_key="other") != third
    assert len({jobs.enqueue(conn, queue_name, {"v": 7}) for _ in range(2)}) == 2


def test_retrying_job_keeps_its_key(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, retry_base=600, retry_max=600)
    first = jobs.enqueue(conn, queue_name, {}, dedupe_key="k")
    [job] = jobs.claim(conn, queue_name)
    assert jobs.fail(conn, queue_name, job.job_id, 1, "later").outcome == "retry"
    assert jobs.enqueue(conn, queue_name, {}, dedupe_key="k") == first


def test_with_window_a_finished_job_still_holds_its_key(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    first = jobs.enqueue(conn, queue_name, {"v": 1}, dedupe_key="w", dedupe_window=3600)
    [job] = jobs.claim(conn, queue_name)
    assert jobs.complete(conn, queue_name, [job]) == 1
    assert jobs.enqueue(conn, queue_name, {"v": 2}, dedupe_key="w", dedupe_window=3600) == first
    assert queue_rows(conn, queue_name) == []
    # Past the window (time travel on the key), a new job is made.
    conn.execute(
        "update pgmq_jobs.dedupe_keys set created_at = created_at - interval '2 hours',"
        " keep_until = keep_until - interval '2 hours' where queue = %s",
        (queue_name,),
    )
    second = jobs.enqueue(conn, queue_name, {"v": 3}, dedupe_key="w", dedupe_window=3600)
    assert second != first
    # A shorter window of the caller decides: the key was made 0 s ago, so within 1 s.
    assert jobs.enqueue(conn, queue_name, {}, dedupe_key="w", dedupe_window=1) == second


def test_rolled_back_enqueue_leaves_no_key(connect: Any, queue_name: str) -> None:
    c: Connection = connect(autocommit=False)
    jobs.create_queue(c, queue_name)
    c.commit()
    for window in (None, 3600):
        rolled = jobs.enqueue(c, queue_name, {}, dedupe_key=f"r{window}", dedupe_window=window)
        c.rollback()
        kept = jobs.enqueue(c, queue_name, {}, dedupe_key=f"r{window}", dedupe_window=window)
        c.commit()
        assert kept != rolled
    keys = c.execute(
        "select count(*) from pgmq_jobs.dedupe_keys where queue = %s", (queue_name,)
    ).fetchone()
    assert keys == (1,)  # only the windowed key that was committed


def test_command_id_makes_resending_idempotent(conn: Connection, queue_name: str) -> None:
    """The README's use: a command id as dedupe key; a client that re-sends is harmless."""
    jobs.create_queue(conn, queue_name)
    command = {"command_id": "c-9f1", "op": "charge", "amount": 100}
    ids = {
        jobs.enqueue(
            conn, queue_name, command, dedupe_key=command["command_id"], dedupe_window=86400
        )
        for _ in range(3)
    }
    assert len(ids) == 1 and len(queue_rows(conn, queue_name)) == 1


def test_batch_with_per_item_keys(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    existing = jobs.enqueue(conn, queue_name, {"n": 0}, dedupe_key="a")
    ids = jobs.enqueue_batch(
        conn,
        queue_name,
        [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}],
        dedupe_keys=["a", "b", None, "b"],
    )
    assert ids[0] == existing and ids[1] == ids[3] and len(set(ids)) == 3
    assert len(queue_rows(conn, queue_name)) == 3
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one element per payload"):
        jobs.enqueue_batch(conn, queue_name, [{"n": 1}], dedupe_keys=["x", "y"])


def test_sweep_expires_window_keys_without_scanning_history(
    fresh_db: Any,
) -> None:
    with psycopg.connect(fresh_db(), autocommit=True) as c:
        jobs.create_queue(c, "keysq")
        for i in range(5):
            jobs.enqueue(c, "keysq", {}, dedupe_key=f"k{i}", dedupe_window=60)
        c.execute(
            "update pgmq_jobs.dedupe_keys set keep_until = now() - interval '1 s'"
            " where dedupe_key in ('k0', 'k1')"
        )
        assert jobs.sweep(c)["dedupe_keys_expired"] == 2
        left = c.execute("select dedupe_key from pgmq_jobs.dedupe_keys order by 1").fetchall()
        assert [r[0] for r in left] == ["k2", "k3", "k4"]
        # Many live keys: the sweep's search still goes by the keep_until index.
        c.execute(
            "insert into pgmq_jobs.dedupe_keys (queue, dedupe_key, job_id, keep_until)"
            " select 'keysq', 'live' || g, g, now() + interval '1 day'"
            " from generate_series(1, 20000) as g"
        )
        c.execute("analyze pgmq_jobs.dedupe_keys")
        plan = "\n".join(
            r[0]
            for r in c.execute(
                "explain select queue, dedupe_key from pgmq_jobs.dedupe_keys"
                " where keep_until < clock_timestamp() order by keep_until limit 10000"
            )
        )
        assert "dedupe_keys_keep_until_idx" in plan, plan


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dedupe_key": ""}, "dedupe_key must be 1 to 512"),
        ({"dedupe_key": "x" * 513}, "dedupe_key must be 1 to 512"),
        ({"dedupe_window": 60}, "dedupe_window needs a dedupe_key"),
        ({"dedupe_key": "k", "dedupe_window": 0}, "dedupe_window must be greater than"),
        ({"group_key": ""}, "group_key must be 1 to 512"),
    ],
)
def test_bad_keys_are_refused(
    conn: Connection, queue_name: str, kwargs: dict[str, Any], message: str
) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        jobs.enqueue(conn, queue_name, {}, **kwargs)
    assert queue_rows(conn, queue_name) == []
