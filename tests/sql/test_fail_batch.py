"""fail_batch: many failure reports in one statement, each as fail() would have it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import queue_rows

Connection = psycopg.Connection[Any]

MAX_ATTEMPTS = 3


def _jobs_in_every_state(conn: Connection, queue: str) -> dict[str, jobs.Job]:
    """Six deliveries of ``queue``: five open ones (attempts 1, 2 and 3) and a stale one."""
    jobs.create_queue(
        conn,
        queue,
        max_attempts=MAX_ATTEMPTS,
        retry_base=10,
        retry_max=3600,
        retry_factor=2,
        jitter="none",
    )
    names = ["first", "second", "override", "permanent", "last", "stale"]
    ids = jobs.enqueue_batch(conn, queue, [{"name": n} for n in names])
    by_id = {j.job_id: j for j in jobs.claim(conn, queue, len(names), worker="w")}
    held = {name: by_id[job_id] for name, job_id in zip(names, ids, strict=True)}
    # Fail and reclaim at once to reach later attempts: "second" at 2, "last" at 3.
    for name, attempts in (("second", 2), ("last", 3)):
        for _ in range(attempts - 1):
            job = held[name]
            jobs.fail(conn, queue, job.job_id, job.attempt, "again", retry_after=0)
            [held[name]] = jobs.claim(conn, queue, worker="w")
    # "stale": completed since, so its delivery is no longer open.
    assert jobs.complete(conn, queue, [held["stale"]]) == 1
    return held


def _failures(held: dict[str, jobs.Job]) -> list[jobs.Failure]:
    def failure(name: str, **options: Any) -> jobs.Failure:
        job = held[name]
        return jobs.Failure(job.job_id, job.attempt, f"{name} failed", **options)

    return [
        failure("first"),
        failure("second"),
        failure("override", retry_after=5),
        failure("permanent", permanent=True),
        failure("last"),
        failure("stale"),
    ]


@pytest.mark.usefixtures("both_queue_kinds")
def test_each_outcome_in_input_order_and_same_state_as_fail_one_by_one(
    conn: Connection, queue_name: str
) -> None:
    batch_queue, single_queue = f"{queue_name}_b", f"{queue_name}_s"
    failures = {q: _failures(_jobs_in_every_state(conn, q)) for q in (batch_queue, single_queue)}

    before = conn.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]
    batch = jobs.fail_batch(conn, batch_queue, failures[batch_queue])
    single = [
        jobs.fail(conn, single_queue, f.job_id, f.attempt, f.error, **_options(f))
        for f in failures[single_queue]
    ]
    after = conn.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]

    assert [(r.outcome, r.attempt) for r in batch] == [
        ("retry", 1),
        ("retry", 2),
        ("retry", 1),
        ("dead", 1),
        ("dead", MAX_ATTEMPTS),
        ("stale", 1),
    ]
    assert [(r.outcome, r.attempt) for r in batch] == [(r.outcome, r.attempt) for r in single]
    # Backoff: retry_base * factor^(attempt-1), or retry_after where given.
    for result, delay in zip(batch[:3], (10, 20, 5), strict=True):
        assert result.next_attempt_at is not None
        assert before + timedelta(seconds=delay) <= result.next_attempt_at
        assert result.next_attempt_at <= after + timedelta(seconds=delay)
    assert all(r.next_attempt_at is None for r in batch[3:])

    # The queues and the dead-letter queues hold the same, errors and all.
    assert _state(conn, batch_queue) == _state(conn, single_queue)
    retried = {r["message"]["name"]: r for r in queue_rows(conn, batch_queue)}
    assert set(retried) == {"first", "second", "override"}
    assert [e["error"] for e in retried["second"]["headers"]["errors"]] == [
        "again",
        "second failed",
    ]
    letters = {d.payload["name"]: d for d in jobs.dead_letters(conn, batch_queue)}
    assert (letters["permanent"].reason, letters["permanent"].attempts) == ("permanent", 1)
    assert (letters["last"].reason, letters["last"].attempts) == ("exhausted", MAX_ATTEMPTS)
    assert [e["error"] for e in letters["last"].errors] == ["again", "again", "last failed"]

    # Reported again, every delivery is stale now, and nothing changes.
    again = jobs.fail_batch(conn, batch_queue, failures[batch_queue])
    assert [r.outcome for r in again] == ["stale"] * 6
    assert _state(conn, batch_queue) == _state(conn, single_queue)


def _options(failure: jobs.Failure) -> dict[str, Any]:
    return {"retry_after": failure.retry_after, "permanent": failure.permanent}


def _state(conn: Connection, queue: str) -> dict[str, Any]:
    """What a queue holds, with times and ids left out."""
    rows = {
        r["message"]["name"]: (r["read_ct"], _errors(r["headers"]["errors"]))
        for r in queue_rows(conn, queue)
    }
    letters = {
        d.payload["name"]: (d.reason, d.attempts, _errors(d.errors))
        for d in jobs.dead_letters(conn, queue)
    }
    return {"queue": rows, "dead": letters}


def _errors(errors: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["attempt"], e["error"], e.get("worker")) for e in errors]


def test_empty_batch_does_nothing(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    assert jobs.fail_batch(conn, queue_name, []) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("array[%(id)s, %(id)s]::bigint[], array[1, 1], array['e', 'e']", "must not repeat a job"),
        ("array[%(id)s, 999999]::bigint[], array[1, 1], array['e', 'e']", "job 999999 does not"),
        ("array[%(id)s]::bigint[], array[1], array['e', 'f']", "errors must have one element"),
        ("array[%(id)s]::bigint[], array[1], null", "errors must have one element"),
        ("array[%(id)s]::bigint[], array[1, 2], array['e']", "the same length"),
        ("array[%(id)s]::bigint[], array[null]::int[], array['e']", "must not contain nulls"),
        (
            "array[%(id)s]::bigint[], array[1], array['e'],"
            " retry_after => array['-1 s']::interval[]",
            "retry_after",
        ),
        (
            "array[%(id)s]::bigint[], array[1], array['e'], retry_after => array[]::interval[]",
            "retry_after must have one element",
        ),
        (
            "array[%(id)s]::bigint[], array[1], array['e'], permanent => array[null]::boolean[]",
            "permanent must not contain nulls",
        ),
        (
            "array[%(id)s]::bigint[], array[1], array['e'], permanent => array[true, false]",
            "permanent must have one element",
        ),
    ],
)
def test_bad_input_is_refused_and_nothing_is_applied(
    conn: Connection, queue_name: str, args: str, message: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    job_id = jobs.enqueue(conn, queue_name, {"n": 1})
    [job] = jobs.claim(conn, queue_name)
    before = queue_rows(conn, queue_name)
    with pytest.raises(psycopg.DataError) as info:
        conn.execute(
            f"select * from pgmq_jobs.fail_batch(%(queue)s, {args})",
            {"queue": queue_name, "id": job_id},
        )
    assert message in str(info.value)
    assert queue_rows(conn, queue_name) == before
    assert jobs.dead_letters(conn, queue_name) == []
    assert jobs.fail_batch(conn, queue_name, [jobs.Failure(job.job_id, job.attempt, "ok")])[
        0
    ].outcome == ("dead")


def test_unknown_queue_is_refused(conn: Connection) -> None:
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue 'no_such_queue'"):
        jobs.fail_batch(conn, "no_such_queue", [jobs.Failure(1, 1, "e")])
