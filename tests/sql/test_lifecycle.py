"""The SQL job lifecycle: enqueue, claim, complete, fail, redelivery, dead letters, replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from support import make_visible, queue_rows, wait_for

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")


def test_enqueue_claim_complete_archives(conn: Connection, queue_name: str) -> None:
    assert jobs.create_queue(conn, queue_name) is True
    job_id = jobs.enqueue(conn, queue_name, {"n": 1})
    [job] = jobs.claim(conn, queue_name, 10, worker="w1")
    assert (job.job_id, job.attempt, job.max_attempts, job.payload) == (job_id, 1, 5, {"n": 1})
    assert job.visible_until > job.enqueued_at
    assert jobs.claim(conn, queue_name) == []  # hidden while in flight
    assert jobs.complete(conn, queue_name, [job]) == 1
    assert queue_rows(conn, queue_name) == []
    [archived] = queue_rows(conn, queue_name, "a")
    assert archived["msg_id"] == job_id and archived["message"] == {"n": 1}


def test_keep_completed_zero_deletes_instead_of_archiving(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, keep_completed=0)
    jobs.enqueue(conn, queue_name, {})
    [job] = jobs.claim(conn, queue_name)
    assert jobs.complete(conn, queue_name, [job]) == 1
    assert queue_rows(conn, queue_name) == [] and queue_rows(conn, queue_name, "a") == []


def test_create_queue_is_idempotent_and_keeps_settings(conn: Connection, queue_name: str) -> None:
    assert jobs.create_queue(conn, queue_name, max_attempts=3) is True
    assert jobs.create_queue(conn, queue_name, max_attempts=9) is False
    [row] = [q for q in jobs.queues(conn) if q["queue"] == queue_name]
    assert row["max_attempts"] == 3 and row["dead_letter_queue"] == f"{queue_name}_dlq"


def test_configure_queue_changes_only_given_settings(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3, jitter="none")
    settings = jobs.configure_queue(conn, queue_name, visibility_timeout=timedelta(minutes=2))
    assert settings["visibility_timeout"] == timedelta(minutes=2)
    assert settings["max_attempts"] == 3 and settings["jitter"] == "none"


def test_drop_queue_removes_queue_and_dead_letter_queue(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue(conn, queue_name, {})
    assert jobs.drop_queue(conn, queue_name) is True
    names = {r[0] for r in conn.execute("select queue_name from pgmq.list_queues()")}
    assert queue_name not in names and f"{queue_name}_dlq" not in names
    assert queue_name not in {q["queue"] for q in jobs.queues(conn)}
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue"):
        jobs.enqueue(conn, queue_name, {})


def test_delay_and_run_at_hide_the_job_until_then(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    delayed = jobs.enqueue(conn, queue_name, {"k": "delay"}, delay=3600)
    run_at = conn.execute("select clock_timestamp() + interval '2 hours'").fetchone()[0]  # type: ignore[index]
    scheduled = jobs.enqueue(conn, queue_name, {"k": "run_at"}, run_at=run_at)
    assert jobs.claim(conn, queue_name, 10) == []
    rows = {r["msg_id"]: r["vt"] for r in queue_rows(conn, queue_name)}
    assert rows[scheduled] == run_at
    make_visible(conn, queue_name, delayed)
    assert [j.job_id for j in jobs.claim(conn, queue_name, 10)] == [delayed]


def test_enqueue_batch_returns_ids_in_order(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    ids = jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(50)])
    assert len(ids) == 50 and ids == sorted(ids)
    claimed = jobs.claim(conn, queue_name, 100)
    assert sorted((j.job_id, j.payload["i"]) for j in claimed) == list(
        zip(ids, range(50), strict=True)
    )
    assert jobs.enqueue_batch(conn, queue_name, []) == []


def test_claim_skips_future_jobs_and_returns_oldest_ready_first(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    jobs.enqueue_batch(conn, queue_name, [{"future": i} for i in range(20)], delay=600)
    first = jobs.enqueue(conn, queue_name, {"ready": 1})
    second = jobs.enqueue(conn, queue_name, {"ready": 2})
    assert [j.job_id for j in jobs.claim(conn, queue_name)] == [first]
    assert [j.job_id for j in jobs.claim(conn, queue_name, 5)] == [second]


def test_rollback_leaves_no_job_and_commit_makes_it_visible(connect: Any, queue_name: str) -> None:
    producer: Connection = connect(autocommit=False)
    observer: Connection = connect(autocommit=True)
    jobs.create_queue(producer, queue_name)
    producer.commit()

    producer.execute("create temp table business (id int)")
    producer.execute("insert into business values (1)")
    jobs.enqueue(producer, queue_name, {"order": 1})
    assert jobs.claim(observer, queue_name) == []  # not visible before commit
    producer.rollback()
    assert jobs.claim(observer, queue_name) == []
    assert queue_rows(observer, queue_name) == []

    job_id = jobs.enqueue(producer, queue_name, {"order": 2})
    assert jobs.claim(observer, queue_name) == []
    producer.commit()
    assert [j.job_id for j in jobs.claim(observer, queue_name)] == [job_id]


def test_unfinished_job_is_redelivered_then_dead_lettered_then_replayed(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3, visibility_timeout=0.2)
    job_id = jobs.enqueue(conn, queue_name, {"poison": True})

    # Three deliveries, none completed: each is redelivered after its timeout.
    for attempt in (1, 2, 3):
        [job] = wait_for(
            lambda attempt=attempt: jobs.claim(conn, queue_name, worker=f"w{attempt}"),
            what=f"delivery {attempt}",
        )
        assert (job.job_id, job.attempt) == (job_id, attempt)

    # The fourth claim finds the job past its attempts: dead letter, not delivery.
    def dead() -> list[jobs.DeadLetter]:
        assert jobs.claim(conn, queue_name) == []
        return jobs.dead_letters(conn, queue_name)

    [letter] = wait_for(dead, what="the job in the DLQ")
    assert queue_rows(conn, queue_name) == []
    assert (letter.job_id, letter.payload, letter.attempts) == (job_id, {"poison": True}, 3)
    assert letter.reason == "expired"
    assert [e["attempt"] for e in letter.errors] == [1, 2, 3]
    assert [e["worker"] for e in letter.errors] == ["w1", "w2", "w3"]
    assert all("visibility timeout expired" in e["error"] for e in letter.errors)
    assert letter.died_at >= letter.enqueued_at

    assert jobs.replay(conn, queue_name, [letter.dead_id]) == 1
    assert jobs.dead_letters(conn, queue_name) == []
    [job] = jobs.claim(conn, queue_name)
    assert job.attempt == 1 and job.payload == {"poison": True} and job.job_id != job_id
    assert jobs.complete(conn, queue_name, [job]) == 1


def test_failures_record_every_error_and_exhaust_into_dlq(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3, jitter="none", retry_base=60)
    job_id = jobs.enqueue(conn, queue_name, {"x": 1})
    for attempt in (1, 2, 3):
        make_visible(conn, queue_name, job_id)
        [job] = jobs.claim(conn, queue_name, worker="w")
        assert job.attempt == attempt
        result = jobs.fail(conn, queue_name, job.job_id, job.attempt, f"boom {attempt}")
        assert result.attempt == attempt
        assert result.outcome == ("dead" if attempt == 3 else "retry")
        assert (result.next_attempt_at is None) == (attempt == 3)
    [letter] = jobs.dead_letters(conn, queue_name)
    assert letter.reason == "exhausted" and letter.attempts == 3
    assert [(e["attempt"], e["error"]) for e in letter.errors] == [
        (1, "boom 1"),
        (2, "boom 2"),
        (3, "boom 3"),
    ]
    assert letter.last_error == "boom 3"
    times = [e["at"] for e in letter.errors]
    assert times == sorted(times)


def test_per_job_max_attempts_overrides_queue(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=5)
    jobs.enqueue(conn, queue_name, {}, max_attempts=1)
    [job] = jobs.claim(conn, queue_name)
    assert job.max_attempts == 1
    assert jobs.fail(conn, queue_name, job.job_id, 1, "once").outcome == "dead"


def test_replay_all_and_purge(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(4)])
    for job in jobs.claim(conn, queue_name, 10):
        assert jobs.fail(conn, queue_name, job.job_id, job.attempt, "bad").outcome == "dead"
    assert len(jobs.dead_letters(conn, queue_name)) == 4
    assert len(jobs.dead_letters(conn, queue_name, lim=2)) == 2
    assert jobs.purge_dead_letters(conn, queue_name, older_than=3600) == 0
    assert jobs.replay(conn, queue_name, [jobs.dead_letters(conn, queue_name)[0].dead_id]) == 1
    assert jobs.purge_dead_letters(conn, queue_name, older_than=0) == 3
    assert jobs.dead_letters(conn, queue_name) == []
    assert len(jobs.claim(conn, queue_name, 10)) == 1  # the replayed one was not purged


def test_replayed_job_remembers_origin_when_it_dies_again(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    original = jobs.enqueue(conn, queue_name, {"again": 1})
    [job] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job.job_id, 1, "first life", permanent=True)
    [first_death] = jobs.dead_letters(conn, queue_name)
    assert first_death.reason == "permanent"
    assert jobs.replay(conn, queue_name) == 1
    [job] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job.job_id, 1, "second life")
    [letter] = jobs.dead_letters(conn, queue_name)
    assert letter.original_job_id == original and letter.job_id == job.job_id
    assert letter.replays == 1 and letter.reason == "exhausted"
    assert letter.enqueued_at == first_death.enqueued_at  # the first enqueue, not the replay
    assert [e["error"] for e in letter.errors] == ["second life"]  # a fresh history


def test_failing_jobs_and_purge_by_id(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3, retry_base=600, retry_max=600)
    ids = jobs.enqueue_batch(conn, queue_name, [{"i": i} for i in range(3)])
    claimed = {j.job_id: j for j in jobs.claim(conn, queue_name, 3)}
    jobs.fail(conn, queue_name, ids[0], 1, "first failure")
    jobs.fail(conn, queue_name, ids[1], 1, "dies", permanent=True)
    jobs.complete(conn, queue_name, [claimed[ids[2]]])
    [failing] = jobs.failing_jobs(conn, queue_name)
    assert (failing["job_id"], failing["attempts"], failing["last_error"]) == (
        ids[0],
        1,
        "first failure",
    )
    assert failing["next_attempt_at"] > failing["enqueued_at"]
    [letter] = jobs.dead_letters(conn, queue_name)
    assert jobs.purge_dead_letters(conn, queue_name, dead_ids=[letter.dead_id + 100]) == 0
    assert jobs.purge_dead_letters(conn, queue_name, dead_ids=[letter.dead_id]) == 1
    assert jobs.dead_letters(conn, queue_name) == []
