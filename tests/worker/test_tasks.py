"""Typed tasks (``@app.task``): arguments checked against the signature before anything is
sent, enqueued as a plain JSON object, options from ``configure``, and the worker calling the
function with the payload's keys; ``pgmq-jobs worker --app`` alone works every queue."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgmq_jobs
import pgmq_jobs.client as client
from apps.harness import CLI, worker_env
from apps.task_app import TASK_RUNS_DDL
from pgmq_jobs.outcomes import Permanent
from pgmq_jobs.registry import JobContext
from pgmq_jobs.tasks import Task
from support import queue_rows

Connection = psycopg.Connection[Any]


def context(queue: str) -> JobContext:
    return JobContext(queue, 1, 1, 5, datetime.now(UTC), "test")


def email_task(queue: str, calls: list[dict[str, Any]] | None = None) -> Task[Any, Any]:
    app = pgmq_jobs.Registry()

    @app.task(queue)
    def send_email(to: str, subject: str, body: str = "", cc: list[str] | None = None) -> str:
        if calls is not None:
            calls.append({"to": to, "subject": subject, "body": body, "cc": cc})
        return to

    return send_email


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"subject": "hi"}, "'to'"),  # missing
        ({"to": "a@x", "subject": "hi", "sender": "me"}, "'sender'"),  # unknown
        ({"to": "a@x", "subject": "hi", "cc": {1, 2}}, "'cc'"),  # not JSON
        ({"to": "a@x", "subject": "hi", "body": datetime.now(UTC)}, "'body'"),  # not JSON
    ],
)
def test_defer_with_a_wrong_argument_raises_before_anything_is_enqueued(
    conn: Connection, queue_name: str, kwargs: dict[str, Any], named: str
) -> None:
    client.create_queue(conn, queue_name)
    send_email = email_task(queue_name)
    with pytest.raises(TypeError, match=named) as raised:
        send_email.defer(conn, **kwargs)
    assert "send_email" in str(raised.value)
    with pytest.raises(TypeError, match=named):
        send_email.configure(priority=3).defer(conn, **kwargs)
    with pytest.raises(TypeError, match=named):
        asyncio.run(_defer_async(conn.info.dsn, send_email, **kwargs))
    assert queue_rows(conn, queue_name) == []


def test_a_bad_defer_inside_a_transaction_leaves_it_usable(connect: Any, queue_name: str) -> None:
    """Nothing was sent, so the caller's transaction is not aborted by a bad call."""
    setup = connect(autocommit=True)
    client.create_queue(setup, queue_name)
    send_email = email_task(queue_name)
    tx = connect()
    with pytest.raises(TypeError):
        send_email.defer(tx, subject="no recipient")
    job_id = send_email.defer(tx, to="a@x", subject="hi")
    tx.commit()
    assert [r["msg_id"] for r in queue_rows(setup, queue_name)] == [job_id]


def test_defer_enqueues_the_arguments_as_a_plain_json_object(
    conn: Connection, queue_name: str
) -> None:
    client.create_queue(conn, queue_name)
    send_email = email_task(queue_name)
    job_id = send_email.defer(conn, to="a@x", subject="hi", cc=["b@x"])
    info = client.job(conn, queue_name, job_id)
    assert info is not None
    # Only what was given: defaults stay the function's, applied when it runs.
    assert info.payload == {"to": "a@x", "subject": "hi", "cc": ["b@x"]}
    assert (info.state, info.priority, info.group_key, info.dedupe_key) == (
        "waiting", 0, None, None
    )  # fmt: skip


async def _defer_async(dsn: str, task: Task[Any, Any], **kwargs: Any) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
        return await task.defer_async(aconn, **kwargs)


def test_defer_async_enqueues_in_the_callers_transaction(conn: Connection, queue_name: str) -> None:
    client.create_queue(conn, queue_name)
    send_email = email_task(queue_name).configure(priority=7)

    async def main() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(conn.info.dsn) as aconn:
            rolled_back = await send_email.defer_async(aconn, to="gone@x", subject="no")
            await aconn.rollback()
            kept = await send_email.defer_async(aconn, to="a@x", subject="async")
            await aconn.commit()
            return rolled_back, kept

    rolled_back, kept = asyncio.run(main())
    assert client.job(conn, queue_name, rolled_back) is None
    info = client.job(conn, queue_name, kept)
    assert info is not None
    assert (info.payload, info.priority) == ({"to": "a@x", "subject": "async"}, 7)


def test_configure_enqueues_with_its_options_and_leaves_the_task_alone(
    conn: Connection, queue_name: str
) -> None:
    client.create_queue(conn, queue_name)
    send_email = email_task(queue_name)
    urgent = send_email.configure(
        priority=5, dedupe_key="welcome-42", group_key="user-42", max_attempts=2
    )
    later = send_email.configure(delay="1h30m")
    at = datetime.now(UTC) + timedelta(days=2)
    scheduled = send_email.configure(run_at=at, priority=-1)

    first = urgent.defer(conn, to="a@x", subject="1")
    again = urgent.defer(conn, to="a@x", subject="2")  # same dedupe key, still unfinished
    assert again == first
    info = client.job(conn, queue_name, first)
    assert info is not None
    assert (info.priority, info.dedupe_key, info.group_key, info.max_attempts) == (
        5, "welcome-42", "user-42", 2
    )  # fmt: skip

    delayed = client.job(conn, queue_name, later.defer(conn, to="b@x", subject="3"))
    assert delayed is not None and delayed.state == "delayed"
    assert timedelta(minutes=89) < delayed.visible_at - datetime.now(UTC) <= timedelta(minutes=90)

    at_job = client.job(conn, queue_name, scheduled.defer(conn, to="c@x", subject="4"))
    assert at_job is not None and at_job.state == "delayed" and at_job.priority == -1
    assert abs(at_job.visible_at - at) < timedelta(seconds=1)

    # configure returned copies: the task itself still enqueues plainly.
    plain = client.job(conn, queue_name, send_email.defer(conn, to="d@x", subject="5"))
    assert plain is not None
    assert (plain.state, plain.priority, plain.dedupe_key, plain.group_key) == (
        "waiting", 0, None, None
    )  # fmt: skip
    # Options stack: a configured task configured again keeps the first options.
    stacked = urgent.configure(priority=9).options
    assert (stacked.priority, stacked.dedupe_key) == (9, "welcome-42")


def test_configure_refuses_an_unknown_option(queue_name: str) -> None:
    with pytest.raises(TypeError, match="prio"):
        email_task(queue_name).configure(prio=3)  # type: ignore[call-arg]


def test_the_handler_calls_the_function_with_the_payloads_keys(queue_name: str) -> None:
    calls: list[dict[str, Any]] = []
    app = pgmq_jobs.Registry()

    @app.task(queue_name)
    def send_email(to: str, subject: str, body: str = "") -> str:
        calls.append({"to": to, "subject": subject, "body": body})
        return to

    handler = app.handlers[queue_name]
    assert handler.func({"to": "a@x", "subject": "hi"}, context(queue_name)) == "a@x"
    assert calls == [{"to": "a@x", "subject": "hi", "body": ""}]
    assert send_email(to="direct", subject="call") == "direct"  # calling the task calls it
    assert app.tasks[queue_name] is send_email and app.queues == [queue_name]


def test_a_payload_that_does_not_fit_the_signature_fails_permanently(queue_name: str) -> None:
    calls: list[dict[str, Any]] = []
    handler = email_task(queue_name, calls).handler()
    with pytest.raises(Permanent, match=r"payload does not fit task .*send_email.*'to'"):
        handler({"subject": "hi"}, context(queue_name))
    with pytest.raises(Permanent, match="unexpected keyword argument 'extra'"):
        handler({"to": "a", "subject": "b", "extra": 1}, context(queue_name))
    assert calls == []


def test_an_async_task_runs_as_an_async_handler(queue_name: str) -> None:
    app = pgmq_jobs.Registry()
    seen: list[tuple[int, int]] = []

    @app.task(queue_name, context=True)
    async def resize(ctx: JobContext, image_id: int) -> None:
        await asyncio.sleep(0)
        seen.append((ctx.job_id, image_id))

    handler = app.handlers[queue_name]
    assert handler.is_async
    asyncio.run(handler.func({"image_id": 9}, context(queue_name)))
    assert seen == [(1, 9)]
    assert resize.payload(image_id=3) == {"image_id": 3}  # the context is not an argument


def test_a_task_function_of_positional_only_arguments_is_refused(queue_name: str) -> None:
    app = pgmq_jobs.Registry()

    def positional(user_id: int, /) -> None: ...

    with pytest.raises(TypeError, match="positional-only parameter 'user_id'"):
        app.task(queue_name)(positional)
    assert app.handlers == {}


def test_kwargs_tasks_enqueue_every_keyword(conn: Connection, queue_name: str) -> None:
    client.create_queue(conn, queue_name)
    app = pgmq_jobs.Registry()

    @app.task(queue_name)
    def log_event(kind: str, **fields: Any) -> None: ...

    job_id = log_event.defer(conn, kind="signup", user=1, plan="pro")
    info = client.job(conn, queue_name, job_id)
    assert info is not None and info.payload == {"kind": "signup", "user": 1, "plan": "pro"}


def test_a_worker_with_app_alone_works_every_queue_of_the_registry(
    db_dsn: str, conn: Connection
) -> None:
    queues = ["t_task_a", "t_task_b"]
    conn.execute(TASK_RUNS_DDL)
    conn.execute("truncate task_runs")
    for queue in queues:
        client.create_queue(conn, queue, max_attempts=1)
    env = worker_env(db_dsn, [], TASK_DSN=db_dsn, TASK_QUEUES=",".join(queues))
    # What the app's tasks' defer would send, and the same from SQL, as another language would.
    conn.execute("select pgmq_jobs.enqueue('t_task_a', '{\"n\": 1}')")
    conn.execute('select pgmq_jobs.enqueue(\'t_task_b\', \'{"n": 2, "word": "yo"}\')')
    bad = client.enqueue(conn, "t_task_b", {"n": 3, "colour": "red"})

    proc = subprocess.run(
        [CLI, "worker", "--dsn", db_dsn, "--app", "apps.task_app:app", "--drain", "--no-listen"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["completed"], summary["dead"]) == (2, 1), summary
    runs = conn.execute("select queue, n, word from task_runs order by n").fetchall()
    assert runs == [("t_task_a", 1, "hi"), ("t_task_b", 2, "yo")]
    [dead] = client.dead_letters(conn, "t_task_b")
    assert dead.original_job_id == bad and dead.reason == "permanent"
    assert "unexpected keyword argument 'colour'" in dead.last_error

    # --queue narrows it: only t_task_a's job runs.
    conn.execute("select pgmq_jobs.enqueue('t_task_a', '{\"n\": 4}')")
    conn.execute("select pgmq_jobs.enqueue('t_task_b', '{\"n\": 5}')")
    proc = subprocess.run(
        [CLI, "worker", "--dsn", db_dsn, "--app", "apps.task_app:app", "--queue", "t_task_a",
         "--drain", "--no-listen"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert conn.execute("select n from task_runs where n > 3").fetchall() == [(4,)]


def test_a_worker_with_an_empty_registry_says_so_in_one_line(db_dsn: str) -> None:
    env = worker_env(db_dsn, [], TASK_DSN=db_dsn, TASK_QUEUES="")
    proc = subprocess.run(
        [CLI, "worker", "--dsn", db_dsn, "--app", "apps.task_app:app"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "pgmq-jobs: error: apps.task_app:app registers no handler or task: nothing to work"
    )
