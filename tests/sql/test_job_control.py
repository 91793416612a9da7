"""Job control (issue 21): cancel, job, reschedule and snooze, on plain and partitioned queues.

The SQL functions are called directly; the Python clients' bindings are tested with them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

import pgmq_jobs.client as jobs
from support import db_now, make_visible, queue_rows, wait_for

Connection = psycopg.Connection[Any]

# Every test here runs on a plain and on a partitioned queue.
pytestmark = pytest.mark.usefixtures("both_queue_kinds")

HOUR = timedelta(hours=1)


# ---------------------------------------------------------------- helpers


def job(conn: Connection, queue: str, job_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from pgmq_jobs.job(%s, %s)", (queue, job_id))
        rows = cur.fetchall()
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def state(conn: Connection, queue: str, job_id: int) -> str | None:
    info = job(conn, queue, job_id)
    return None if info is None else str(info["state"])


def cancel(conn: Connection, queue: str, job_ids: list[int]) -> int:
    row = conn.execute("select pgmq_jobs.cancel(%s, %s::bigint[])", (queue, job_ids)).fetchone()
    assert row is not None
    return int(row[0])


def reschedule(conn: Connection, queue: str, job_ids: list[int], run_at: datetime | None) -> int:
    row = conn.execute(
        "select pgmq_jobs.reschedule(%s, %s::bigint[], %s::timestamptz)", (queue, job_ids, run_at)
    ).fetchone()
    assert row is not None
    return int(row[0])


def snooze(
    conn: Connection, queue: str, job_id: int, attempt: int, by: timedelta | str | None
) -> datetime | None:
    row = conn.execute(
        "select pgmq_jobs.snooze(%s, %s::bigint, %s::integer, %s::interval)",
        (queue, job_id, attempt, by),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def claim_ids(conn: Connection, queue: str, qty: int = 100) -> list[int]:
    return sorted(j.job_id for j in jobs.claim(conn, queue, qty))


def make_all_visible(conn: Connection, queue: str) -> None:
    """Test-only time travel: every job of the queue visible now (parked ones too)."""
    conn.execute(
        sql.SQL("update pgmq.{} set vt = clock_timestamp()").format(sql.Identifier(f"q_{queue}"))
    )


def vt_of(conn: Connection, queue: str, job_id: int) -> datetime:
    row = conn.execute(
        sql.SQL("select vt from pgmq.{} where msg_id = %s").format(sql.Identifier(f"q_{queue}")),
        (job_id,),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def audit_rows(conn: Connection, queue: str, action: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from pgmq_jobs.audit where queue = %s and action = %s order by id",
            (queue, action),
        )
        return list(cur.fetchall())


def five_states(conn: Connection, queue: str) -> dict[str, int]:
    """One job in each state cancel takes: waiting, delayed, retrying, parked, in flight."""
    ids = {
        "retrying": jobs.enqueue(conn, queue, {"s": "retrying"}),
        "in_flight": jobs.enqueue(conn, queue, {"s": "in_flight"}),
        "head": jobs.enqueue(conn, queue, {"s": "head"}, group_key="g"),
        "parked": jobs.enqueue(conn, queue, {"s": "parked"}, group_key="g"),
    }
    claimed = {j.job_id: j for j in jobs.claim(conn, queue, 10)}
    assert sorted(claimed) == sorted([ids["retrying"], ids["in_flight"], ids["head"]])
    assert jobs.fail(conn, queue, ids["retrying"], 1, "boom", retry_after=3600).outcome == "retry"
    ids["waiting"] = jobs.enqueue(conn, queue, {"s": "waiting"})
    ids["delayed"] = jobs.enqueue(conn, queue, {"s": "delayed"}, delay=3600)
    return ids


# ---------------------------------------------------------------- cancel


def test_cancel_takes_every_state_and_none_is_delivered_again(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    ids = five_states(conn, queue_name)
    for name in ("waiting", "delayed", "retrying", "parked", "in_flight"):
        assert state(conn, queue_name, ids[name]) == name
    wanted = [ids[n] for n in ("waiting", "delayed", "retrying", "parked", "in_flight")]
    assert cancel(conn, queue_name, wanted) == 5
    for name in ("waiting", "delayed", "retrying", "parked", "in_flight"):
        info = job(conn, queue_name, ids[name])
        assert info is not None and info["state"] == "cancelled", name
        assert info["payload"] == {"s": name}
        assert info["visible_at"] is None
    # What each was when cancelled is on record.
    recorded = dict(
        conn.execute(
            "select job_id, state from pgmq_jobs.cancelled_jobs where queue = %s", (queue_name,)
        ).fetchall()
    )
    assert recorded == {
        ids[n]: n for n in ("waiting", "delayed", "retrying", "parked", "in_flight")
    }
    # Never delivered again, whatever the clock says: only the group head is left.
    make_all_visible(conn, queue_name)
    assert [r["msg_id"] for r in queue_rows(conn, queue_name)] == [ids["head"]]
    assert claim_ids(conn, queue_name) == [ids["head"]]
    assert jobs.dead_letters(conn, queue_name) == []
    # Cancelled again, or finished, or never issued: not counted.
    assert cancel(conn, queue_name, [ids["waiting"], ids["waiting"], 10**9]) == 0


def test_cancelled_job_keeps_its_history(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=4)
    job_id = jobs.enqueue(conn, queue_name, {"n": 1}, max_attempts=3)
    [claimed] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job_id, claimed.attempt, "first failure", retry_after=0)
    [claimed] = jobs.claim(conn, queue_name)
    assert claimed.attempt == 2
    assert cancel(conn, queue_name, [job_id]) == 1
    info = job(conn, queue_name, job_id)
    assert info is not None
    assert (info["state"], info["attempt"], info["max_attempts"]) == ("cancelled", 2, 3)
    assert [e["error"] for e in info["errors"]] == ["first failure"]


def test_in_flight_cancel_makes_the_workers_outcomes_stale(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    a, b, c, d, e = (jobs.enqueue(conn, queue_name, {"i": i}) for i in range(5))
    held = {j.job_id: j for j in jobs.claim(conn, queue_name, 5)}
    assert cancel(conn, queue_name, [a, b, c, d, e]) == 5
    assert jobs.complete(conn, queue_name, [held[a]]) == 0
    assert jobs.fail(conn, queue_name, b, 1, "late").outcome == "stale"
    assert jobs.extend(conn, queue_name, c, 1, 60) is None
    assert snooze(conn, queue_name, d, 1, "1 minute") is None
    assert jobs.release(conn, queue_name, [held[e]]) == 0
    # Nothing came back: no archive row, no dead letter, no job.
    assert queue_rows(conn, queue_name) == []
    assert queue_rows(conn, queue_name, "a") == []
    assert jobs.dead_letters(conn, queue_name) == []
    assert {state(conn, queue_name, i) for i in (a, b, c, d, e)} == {"cancelled"}


def test_cancelled_group_head_releases_the_next_job(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    first, second, third = (
        jobs.enqueue(conn, queue_name, {"n": i}, group_key="g") for i in range(3)
    )
    [held] = jobs.claim(conn, queue_name, 10)
    assert held.job_id == first
    assert state(conn, queue_name, second) == "parked"
    assert cancel(conn, queue_name, [first]) == 1  # in flight
    assert claim_ids(conn, queue_name) == [second]
    # A waiting head (never claimed) releases its group too.
    other_first = jobs.enqueue(conn, queue_name, {"n": 0}, group_key="h")
    other_second = jobs.enqueue(conn, queue_name, {"n": 1}, group_key="h")
    assert state(conn, queue_name, other_second) == "parked"
    assert cancel(conn, queue_name, [other_first]) == 1
    assert state(conn, queue_name, other_second) == "waiting"
    # Cancelling a head and the job behind it at once releases the one after them.
    assert cancel(conn, queue_name, [second, third]) == 2
    assert claim_ids(conn, queue_name) == [other_second]


def test_cancel_frees_an_unwindowed_dedupe_key(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    first = jobs.enqueue(conn, queue_name, {"v": 1}, dedupe_key="k")
    assert jobs.enqueue(conn, queue_name, {"v": 2}, dedupe_key="k") == first
    assert cancel(conn, queue_name, [first]) == 1
    second = jobs.enqueue(conn, queue_name, {"v": 3}, dedupe_key="k")
    assert second != first
    cancelled, waiting = job(conn, queue_name, first), job(conn, queue_name, second)
    assert cancelled is not None and waiting is not None
    assert (cancelled["state"], cancelled["dedupe_key"]) == ("cancelled", "k")
    assert (waiting["state"], waiting["dedupe_key"]) == ("waiting", "k")


def test_cancel_keeps_a_windowed_dedupe_key_until_its_window_ends(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    first = jobs.enqueue(conn, queue_name, {"v": 1}, dedupe_key="w", dedupe_window=3600)
    assert cancel(conn, queue_name, [first]) == 1
    # Within the window the key still names the cancelled job: nothing is enqueued.
    assert jobs.enqueue(conn, queue_name, {"v": 2}, dedupe_key="w", dedupe_window=3600) == first
    assert queue_rows(conn, queue_name) == []
    info = job(conn, queue_name, first)
    assert info is not None and (info["state"], info["dedupe_key"]) == ("cancelled", "w")
    # Once the window is over (test-only time travel), the key is free again.
    conn.execute(
        "update pgmq_jobs.dedupe_keys set created_at = created_at - interval '2 hours',"
        " keep_until = keep_until - interval '2 hours' where queue = %s",
        (queue_name,),
    )
    second = jobs.enqueue(conn, queue_name, {"v": 3}, dedupe_key="w", dedupe_window=3600)
    assert second != first


def test_cancel_refuses_bad_input_and_changes_nothing(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="job_ids must not be null"):
        cancel(conn, queue_name, None)  # type: ignore[arg-type]
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="must not contain nulls"):
        cancel(conn, queue_name, [job_id, None])  # type: ignore[list-item]
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue"):
        cancel(conn, f"{queue_name}_nope", [job_id])
    assert state(conn, queue_name, job_id) == "waiting"
    assert audit_rows(conn, queue_name, "cancel") == []
    assert cancel(conn, queue_name, []) == 0


def test_cancel_and_reschedule_are_audited(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    a = jobs.enqueue(conn, queue_name, {})
    b = jobs.enqueue(conn, queue_name, {})
    at = db_now(conn) + HOUR
    assert reschedule(conn, queue_name, [a, b], at) == 2
    assert cancel(conn, queue_name, [a, 10**9]) == 1
    [cancelled] = audit_rows(conn, queue_name, "cancel")
    assert cancelled["role"] == conn.info.user
    assert cancelled["change"] == {"job_ids": [a, 10**9], "cancelled": 1}
    [moved] = audit_rows(conn, queue_name, "reschedule")
    assert moved["change"]["job_ids"] == [a, b] and moved["change"]["rescheduled"] == 2
    assert datetime.fromisoformat(moved["change"]["run_at"]) == at
    info = job(conn, queue_name, a)
    assert info is not None and info["state"] == "cancelled"
    by = conn.execute(
        "select cancelled_by from pgmq_jobs.cancelled_jobs where queue = %s and job_id = %s",
        (queue_name, a),
    ).fetchone()
    assert by == (conn.info.user,)


# ---------------------------------------------------------------- job


def test_job_reports_each_of_the_eight_states(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=2, keep_completed=3600)
    done = jobs.enqueue(conn, queue_name, {"s": "completed"})
    assert jobs.complete(conn, queue_name, jobs.claim(conn, queue_name)) == 1
    dead = jobs.enqueue(conn, queue_name, {"s": "dead"}, max_attempts=1)
    [held] = jobs.claim(conn, queue_name)
    assert held.job_id == dead
    assert jobs.fail(conn, queue_name, dead, 1, "poison").outcome == "dead"
    gone = jobs.enqueue(conn, queue_name, {"s": "cancelled"}, delay=60)
    assert cancel(conn, queue_name, [gone]) == 1
    ids = five_states(conn, queue_name)
    # A released delivery is undone: the job is waiting again.
    [held] = jobs.claim(conn, queue_name)
    assert held.job_id == ids["waiting"]
    assert jobs.release(conn, queue_name, [held]) == 1
    wanted = {
        "waiting": ids["waiting"],
        "delayed": ids["delayed"],
        "in_flight": ids["in_flight"],
        "retrying": ids["retrying"],
        "parked": ids["parked"],
        "completed": done,
        "dead": dead,
        "cancelled": gone,
    }
    now = db_now(conn)
    for name, job_id in wanted.items():
        info = job(conn, queue_name, job_id)
        assert info is not None, name
        assert (info["job_id"], info["state"]) == (job_id, name)
        assert info["priority"] == 0
        assert isinstance(info["errors"], list)
        assert info["enqueued_at"] is not None and info["enqueued_at"] <= now
    assert job(conn, queue_name, 10**9) is None
    assert job(conn, queue_name, ids["head"] + 10**6) is None

    info = {name: job(conn, queue_name, job_id) for name, job_id in wanted.items()}
    # attempt: deliveries so far (the in-flight one's is its fencing token).
    attempts = {name: i["attempt"] for name, i in info.items() if i is not None}
    assert attempts == {
        "waiting": 0,
        "delayed": 0,
        "in_flight": 1,
        "retrying": 1,
        "parked": 0,
        "completed": 1,
        "dead": 1,
        "cancelled": 0,
    }
    max_attempts = {name: i["max_attempts"] for name, i in info.items() if i is not None}
    assert max_attempts == dict.fromkeys(wanted, 2) | {"dead": 1}
    assert info["retrying"] is not None and info["dead"] is not None
    assert [e["error"] for e in info["retrying"]["errors"]] == ["boom"]
    assert [(e["attempt"], e["error"]) for e in info["dead"]["errors"]] == [(1, "poison")]
    for name in ("waiting", "delayed", "in_flight", "parked", "completed", "cancelled"):
        assert info[name] is not None and info[name]["errors"] == [], name  # type: ignore[index]
    payloads = {name: i["payload"] for name, i in info.items() if i is not None}
    assert payloads == {name: {"s": name} for name in wanted}
    # Times: visible now / later / until the timeout / at the retry; none once finished.
    visible = {name: i["visible_at"] for name, i in info.items() if i is not None}
    assert visible["waiting"] is not None and visible["waiting"] <= now
    assert visible["delayed"] is not None and visible["delayed"] > now + timedelta(minutes=59)
    assert visible["in_flight"] is not None and visible["in_flight"] > now
    assert visible["retrying"] is not None and visible["retrying"] > now + timedelta(minutes=59)
    assert visible["parked"] is not None and visible["parked"] <= now  # its own time: now
    assert visible["completed"] is None and visible["dead"] is None
    assert visible["cancelled"] is None
    groups = {name: i["group_key"] for name, i in info.items() if i is not None}
    assert groups == dict.fromkeys(wanted) | {"parked": "g"}
    head = job(conn, queue_name, ids["head"])
    assert head is not None and (head["state"], head["group_key"]) == ("in_flight", "g")


def test_a_failed_job_is_retrying_until_claimed_again(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    [held] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job_id, held.attempt, "flaky", retry_after=3600)
    assert state(conn, queue_name, job_id) == "retrying"
    # Its retry time has come: visible, still retrying (not waiting) until a claim takes it.
    make_visible(conn, queue_name, job_id)
    info = job(conn, queue_name, job_id)
    assert info is not None and info["state"] == "retrying"
    assert info["visible_at"] <= db_now(conn)
    [again] = jobs.claim(conn, queue_name)
    assert again.attempt == 2
    info = job(conn, queue_name, job_id)
    assert info is not None and (info["state"], info["attempt"]) == ("in_flight", 2)


def test_a_timed_out_delivery_is_retrying_with_the_timeout_in_its_errors(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    jobs.claim(conn, queue_name)
    assert state(conn, queue_name, job_id) == "in_flight"
    make_visible(conn, queue_name, job_id)  # its worker went silent past the timeout
    info = job(conn, queue_name, job_id)
    assert info is not None and (info["state"], info["attempt"]) == ("retrying", 1)
    assert [e["attempt"] for e in info["errors"]] == [1]
    assert "visibility timeout expired" in info["errors"][0]["error"]
    # job() only reads: the next claim records the same entry, once.
    [again] = jobs.claim(conn, queue_name)
    assert again.attempt == 2
    info = job(conn, queue_name, job_id)
    assert info is not None and info["state"] == "in_flight"
    assert [e["attempt"] for e in info["errors"]] == [1]


def test_job_of_a_replayed_dead_letter(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    first = jobs.enqueue(conn, queue_name, {"x": 1})
    jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, first, 1, "bad")
    died = job(conn, queue_name, first)
    assert died is not None and died["state"] == "dead"
    assert jobs.replay(conn, queue_name) == 1
    [row] = queue_rows(conn, queue_name)
    replayed = job(conn, queue_name, row["msg_id"])
    assert replayed is not None and row["msg_id"] != first
    assert (replayed["state"], replayed["attempt"], replayed["payload"]) == ("waiting", 0, {"x": 1})
    # It keeps the first enqueue time; the old id left the dead-letter queue with it.
    assert replayed["enqueued_at"] == died["enqueued_at"]
    assert job(conn, queue_name, first) is None


def test_job_with_keys_and_options(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(
        conn, queue_name, {"a": 1}, dedupe_key="d1", group_key="g1", max_attempts=9
    )
    windowed = jobs.enqueue(conn, queue_name, {"a": 2}, dedupe_key="d2", dedupe_window=3600)
    info = job(conn, queue_name, job_id)
    assert info is not None
    assert (info["dedupe_key"], info["group_key"], info["max_attempts"]) == ("d1", "g1", 9)
    info = job(conn, queue_name, windowed)
    assert info is not None and (info["dedupe_key"], info["max_attempts"]) == ("d2", 5)
    # A job's priority comes from its headers (0 when it has none).
    conn.execute(
        sql.SQL(
            "update pgmq.{} set headers = coalesce(headers, '{{}}') || '{{\"priority\": 5}}'"
            " where msg_id = %s"
        ).format(sql.Identifier(f"q_{queue_name}")),
        (job_id,),
    )
    info = job(conn, queue_name, job_id)
    assert info is not None and info["priority"] == 5


def test_job_refuses_bad_input(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="job_id must not be null"):
        job(conn, queue_name, None)  # type: ignore[arg-type]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="job_id must be positive"):
        job(conn, queue_name, 0)
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue"):
        job(conn, f"{queue_name}_nope", 1)
    # An id the queue never issued: no row, not an error.
    assert job(conn, queue_name, 1) is None


def test_a_queue_created_again_forgets_its_cancelled_jobs(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {"old": True})
    assert cancel(conn, queue_name, [job_id]) == 1
    jobs.drop_queue(conn, queue_name)
    left = conn.execute(
        "select count(*) from pgmq_jobs.cancelled_jobs where queue = %s", (queue_name,)
    ).fetchone()
    assert left == (0,)
    jobs.create_queue(conn, queue_name)
    new_id = jobs.enqueue(conn, queue_name, {"new": True})
    info = job(conn, queue_name, new_id)
    assert info is not None and (info["state"], info["payload"]) == ("waiting", {"new": True})


# ---------------------------------------------------------------- reschedule


def test_reschedule_moves_waiting_delayed_and_retrying_jobs(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    ids = five_states(conn, queue_name)
    later = db_now(conn) + timedelta(hours=5)
    movable = [ids["waiting"], ids["delayed"], ids["retrying"]]
    assert reschedule(conn, queue_name, movable, later) == 3
    for job_id in movable:
        assert vt_of(conn, queue_name, job_id) == later
    assert state(conn, queue_name, ids["waiting"]) == "delayed"
    assert state(conn, queue_name, ids["delayed"]) == "delayed"
    assert state(conn, queue_name, ids["retrying"]) == "retrying"
    assert claim_ids(conn, queue_name) == []
    # A time in the past means now: ready, claimed in line, attempts unchanged.
    assert reschedule(conn, queue_name, movable, datetime(2000, 1, 1).astimezone()) == 3
    assert state(conn, queue_name, ids["delayed"]) == "waiting"
    claimed = {j.job_id: j.attempt for j in jobs.claim(conn, queue_name, 10)}
    assert claimed == {ids["waiting"]: 1, ids["delayed"]: 1, ids["retrying"]: 2}


def test_reschedule_leaves_in_flight_jobs_alone(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    [held] = jobs.claim(conn, queue_name)
    before = vt_of(conn, queue_name, job_id)
    assert reschedule(conn, queue_name, [job_id], db_now(conn) + HOUR) == 0
    assert reschedule(conn, queue_name, [job_id], db_now(conn)) == 0
    assert vt_of(conn, queue_name, job_id) == before
    assert jobs.complete(conn, queue_name, [held]) == 1
    # Finished and unknown jobs are not counted either.
    assert reschedule(conn, queue_name, [job_id, 10**9], db_now(conn)) == 0


def test_reschedule_of_a_timed_out_delivery_closes_it(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    [held] = jobs.claim(conn, queue_name)
    make_visible(conn, queue_name, job_id)  # its worker stalled past the timeout
    assert state(conn, queue_name, job_id) == "retrying"
    assert reschedule(conn, queue_name, [job_id], db_now(conn) + HOUR) == 1
    # The stalled worker's outcome is stale now; the timeout is in the history once.
    assert jobs.complete(conn, queue_name, [held]) == 0
    make_visible(conn, queue_name, job_id)
    [again] = jobs.claim(conn, queue_name)
    assert again.attempt == 2
    info = job(conn, queue_name, job_id)
    assert info is not None and [e["attempt"] for e in info["errors"]] == [1]


def test_reschedule_of_a_parked_job_sets_its_own_time(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    head = jobs.enqueue(conn, queue_name, {}, group_key="g")
    parked = jobs.enqueue(conn, queue_name, {}, group_key="g")
    later = db_now(conn) + HOUR
    assert reschedule(conn, queue_name, [parked], later) == 1
    info = job(conn, queue_name, parked)
    assert info is not None and (info["state"], info["visible_at"]) == ("parked", later)
    # Released when its head completes, but not before its own time.
    [held] = jobs.claim(conn, queue_name, 10)
    assert held.job_id == head
    assert jobs.complete(conn, queue_name, [held]) == 1
    assert claim_ids(conn, queue_name) == []
    assert vt_of(conn, queue_name, parked) == later
    assert state(conn, queue_name, parked) == "delayed"


def test_reschedule_refuses_bad_input_and_changes_nothing(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    before = vt_of(conn, queue_name, job_id)
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="run_at must not be null"):
        reschedule(conn, queue_name, [job_id], None)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="run_at must be a finite"):
        conn.execute(
            "select pgmq_jobs.reschedule(%s, %s::bigint[], 'infinity')", (queue_name, [job_id])
        )
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="job_ids must not be null"):
        reschedule(conn, queue_name, None, db_now(conn))  # type: ignore[arg-type]
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="must not contain nulls"):
        reschedule(conn, queue_name, [None], db_now(conn))  # type: ignore[list-item]
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue"):
        reschedule(conn, f"{queue_name}_nope", [job_id], db_now(conn))
    assert vt_of(conn, queue_name, job_id) == before
    assert audit_rows(conn, queue_name, "reschedule") == []


# ---------------------------------------------------------------- snooze


def test_snooze_brings_the_job_back_later_without_using_an_attempt(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=1)
    job_id = jobs.enqueue(conn, queue_name, {"n": 1})
    # Snoozed again and again: with one attempt allowed, it never reaches the DLQ.
    for _ in range(3):
        [held] = jobs.claim(conn, queue_name)
        assert (held.job_id, held.attempt) == (job_id, 1)
        start = db_now(conn)
        until = snooze(conn, queue_name, job_id, 1, HOUR)
        assert until is not None and start + HOUR <= until <= db_now(conn) + HOUR
        assert vt_of(conn, queue_name, job_id) == until
        info = job(conn, queue_name, job_id)
        assert info is not None
        assert (info["state"], info["attempt"], info["visible_at"]) == ("delayed", 0, until)
        assert jobs.claim(conn, queue_name) == []
        make_visible(conn, queue_name, job_id)
    [held] = jobs.claim(conn, queue_name)
    assert held.attempt == 1
    assert jobs.complete(conn, queue_name, [held]) == 1
    assert jobs.dead_letters(conn, queue_name) == []


def test_snoozed_job_returns_after_the_delay(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    [held] = jobs.claim(conn, queue_name)
    assert snooze(conn, queue_name, job_id, held.attempt, "0.3 seconds") is not None
    assert jobs.claim(conn, queue_name) == []
    [back] = wait_for(lambda: jobs.claim(conn, queue_name), timeout=10, what="the snoozed job")
    assert (back.job_id, back.attempt) == (job_id, 1)
    # by = 0: visible at once.
    assert snooze(conn, queue_name, job_id, 1, "0") is not None
    [back] = jobs.claim(conn, queue_name)
    assert (back.job_id, back.attempt) == (job_id, 1)


def test_snooze_after_a_failed_attempt_keeps_the_count(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3)
    job_id = jobs.enqueue(conn, queue_name, {})
    jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job_id, 1, "first", retry_after=0)
    [held] = jobs.claim(conn, queue_name)
    assert held.attempt == 2
    assert snooze(conn, queue_name, job_id, 2, HOUR) is not None
    info = job(conn, queue_name, job_id)
    assert info is not None and (info["state"], info["attempt"]) == ("retrying", 1)
    assert [e["error"] for e in info["errors"]] == ["first"]
    make_visible(conn, queue_name, job_id)
    [again] = jobs.claim(conn, queue_name)
    assert again.attempt == 2
    # Its history did not gain a timeout entry for the snoozed delivery.
    info = job(conn, queue_name, job_id)
    assert info is not None and [e["error"] for e in info["errors"]] == ["first"]


def test_a_stale_snooze_is_null_and_changes_nothing(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    [held] = jobs.claim(conn, queue_name)
    rows = queue_rows(conn, queue_name)
    assert snooze(conn, queue_name, job_id, held.attempt + 1, HOUR) is None  # wrong attempt
    assert queue_rows(conn, queue_name) == rows
    # Snoozed once: a second snooze of that delivery is stale.
    assert snooze(conn, queue_name, job_id, held.attempt, HOUR) is not None
    rows = queue_rows(conn, queue_name)
    assert snooze(conn, queue_name, job_id, held.attempt, "0") is None
    assert queue_rows(conn, queue_name) == rows
    # A failed delivery cannot be snoozed either.
    make_visible(conn, queue_name, job_id)
    [held] = jobs.claim(conn, queue_name)
    jobs.fail(conn, queue_name, job_id, held.attempt, "x", retry_after=3600)
    rows = queue_rows(conn, queue_name)
    assert snooze(conn, queue_name, job_id, held.attempt, "0") is None
    assert queue_rows(conn, queue_name) == rows
    # A never-delivered job has no delivery to snooze.
    other = jobs.enqueue(conn, queue_name, {})
    assert snooze(conn, queue_name, other, 1, "0") is None


def test_snooze_refuses_bad_input(conn: Connection, queue_name: str) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    [held] = jobs.claim(conn, queue_name)
    rows = queue_rows(conn, queue_name)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="by must be at least"):
        snooze(conn, queue_name, job_id, held.attempt, "-1 second")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="by must be at most"):
        snooze(conn, queue_name, job_id, held.attempt, "3651 days")
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="by must not be null"):
        snooze(conn, queue_name, job_id, held.attempt, None)
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="attempt must not be null"):
        snooze(conn, queue_name, job_id, None, HOUR)  # type: ignore[arg-type]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="does not exist"):
        snooze(conn, queue_name, 10**9, 1, HOUR)
    with pytest.raises(psycopg.errors.UndefinedObject, match="unknown queue"):
        snooze(conn, f"{queue_name}_nope", job_id, 1, HOUR)
    assert queue_rows(conn, queue_name) == rows


# ---------------------------------------------------------------- racing a claim


def _blocked_on_a_lock(conn: Connection, pid: int) -> bool:
    row = conn.execute(
        "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,)
    ).fetchone()
    return bool(row and row[0])


def _race_a_claim(
    conn: Connection, connect: Callable[..., Connection], queue: str, call: Callable[..., int]
) -> tuple[int, Any]:
    """Claim the queue's job in an open transaction, run ``call(other_conn)`` in a thread
    while the claim holds the row, commit the claim; return ``call``'s result and the job."""
    claimer = connect()
    other = connect(autocommit=True)
    [held] = jobs.claim(claimer, queue)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(call(other)))
    thread.start()
    wait_for(lambda: _blocked_on_a_lock(conn, other.info.backend_pid), what="the row lock")
    claimer.commit()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(result) == 1
    return result[0], held


def test_cancel_waits_for_a_claim_and_cancels_its_delivery(
    conn: Connection, connect: Callable[..., Connection], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    cancelled, held = _race_a_claim(
        conn, connect, queue_name, lambda other: cancel(other, queue_name, [job_id])
    )
    assert cancelled == 1
    assert jobs.complete(conn, queue_name, [held]) == 0
    info = job(conn, queue_name, job_id)
    assert info is not None and (info["state"], info["attempt"]) == ("cancelled", 1)


def test_reschedule_waits_for_a_claim_and_leaves_its_delivery_alone(
    conn: Connection, connect: Callable[..., Connection], queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    later = db_now(conn) + timedelta(hours=5)
    moved, held = _race_a_claim(
        conn, connect, queue_name, lambda other: reschedule(other, queue_name, [job_id], later)
    )
    assert moved == 0
    assert vt_of(conn, queue_name, job_id) == held.visible_until
    assert jobs.complete(conn, queue_name, [held]) == 1


# ---------------------------------------------------------------- roles and the sweep


def test_worker_may_look_and_snooze_but_not_cancel_or_reschedule(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    job_id = jobs.enqueue(conn, queue_name, {})
    conn.execute("set role pgmq_jobs_worker")
    try:
        [held] = jobs.claim(conn, queue_name)
        assert state(conn, queue_name, job_id) == "in_flight"
        assert snooze(conn, queue_name, job_id, held.attempt, HOUR) is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cancel(conn, queue_name, [job_id])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reschedule(conn, queue_name, [job_id], None)
    finally:
        conn.execute("reset role")
    conn.execute("set role pgmq_jobs_producer")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            job(conn, queue_name, job_id)
    finally:
        conn.execute("reset role")
    conn.execute("set role pgmq_jobs_admin")
    try:
        assert reschedule(conn, queue_name, [job_id], db_now(conn)) == 1
        assert cancel(conn, queue_name, [job_id]) == 1
    finally:
        conn.execute("reset role")
    [row] = audit_rows(conn, queue_name, "cancel")
    assert row["role"] == "pgmq_jobs_admin"


@pytest.fixture
def fresh(fresh_db: Callable[[], str]) -> Iterator[Connection]:
    """A database of its own: no other test's queues for the sweep to visit."""
    with psycopg.connect(fresh_db(), autocommit=True) as connection:
        yield connection


def _rows_read(conn: Connection, table: str) -> int:
    row = conn.execute(
        "select coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)"
        " from pg_catalog.pg_stat_xact_user_tables where relname = %s",
        (table,),
    ).fetchone()
    return 0 if row is None else int(row[0])


def test_sweep_drops_cancelled_jobs_after_keep_completed(fresh: Connection) -> None:
    conn = fresh
    jobs.create_queue(conn, "cq", keep_completed=3600)
    n = 2000
    ids = jobs.enqueue_batch(conn, "cq", [{"i": i} for i in range(n + 3)])
    assert cancel(conn, "cq", ids) == n + 3
    # Three of them were cancelled long ago (test-only time travel).
    old = ids[:3]
    conn.execute(
        "update pgmq_jobs.cancelled_jobs set cancelled_at = cancelled_at - interval '2 hours'"
        " where queue = 'cq' and job_id = any(%s)",
        (old,),
    )
    conn.execute("analyze pgmq_jobs.cancelled_jobs")
    with conn.transaction():
        before = _rows_read(conn, "cancelled_jobs")
        summary = jobs.sweep(conn)
        read = _rows_read(conn, "cancelled_jobs") - before
    assert summary["cancelled_deleted"] == 3
    # An index walk: the old rows (found, then deleted), not the fresh ones behind them.
    assert read <= 20, read
    assert [job(conn, "cq", i) for i in old] == [None] * 3
    info = job(conn, "cq", ids[3])
    assert info is not None and info["state"] == "cancelled"
    assert jobs.sweep(conn)["cancelled_deleted"] == 0
