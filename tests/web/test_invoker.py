"""The HTTP invoker (``pgmq-jobs serve``) as a real process, and its pg_cron wiring."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

import pgmq_jobs.client as jobs
from apps.harness import CLI, create_ledger, done_ids, stop_process, worker_env
from pgmq_jobs.ops.cluster import free_port
from support import wait_for

Connection = psycopg.Connection[Any]
SECRET = "s3cret-" + uuid.uuid4().hex


@dataclass
class Invoker:
    url: str
    queues: list[str]


def post(
    url: str, body: bytes | dict[str, Any], token: str | None = SECRET
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}/invoke", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def invoker(db_dsn: str) -> Iterator[Invoker]:
    create_ledger(db_dsn)
    queues = [f"t_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        for queue in queues:
            jobs.create_queue(conn, queue, max_attempts=1)
    port = free_port()
    env = worker_env(db_dsn, queues, INVOKER_SECRET=SECRET)
    argv = [CLI, "serve", "--dsn", db_dsn, "--app", "apps.ledger_app:app", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--secret-env", "INVOKER_SECRET"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or proc.poll() is not None, timeout=15, what="serve")
        assert proc.poll() is None, proc.communicate()[1]
        yield Invoker(url, queues)
    finally:
        stop_process(proc)


def test_invoke_drains_the_queue_and_returns_the_summary(
    invoker: Invoker, conn: Connection
) -> None:
    queue = invoker.queues[0]
    ids = jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(4)])
    jobs.enqueue(conn, queue, {"action": "fail"})
    status, summary = post(invoker.url, {"queue": queue, "max_seconds": 20})
    assert status == 200, summary
    assert {k: summary[k] for k in ("queue", "claimed", "completed", "failed", "dead")} == {
        "queue": queue,
        "claimed": 5,
        "completed": 4,
        "failed": 1,
        "dead": 1,
    }
    assert 0 <= summary["seconds"] < 20 and summary["stale"] == 0
    assert done_ids(conn, queue) == set(ids)


def test_max_jobs_bounds_the_batch(invoker: Invoker, conn: Connection) -> None:
    queue = invoker.queues[1]
    jobs.enqueue_batch(conn, queue, [{"i": i} for i in range(5)])
    status, summary = post(invoker.url, {"queue": queue, "max_seconds": 20, "max_jobs": 2})
    assert status == 200 and (summary["claimed"], summary["completed"]) == (2, 2), summary
    status, summary = post(invoker.url, {"queue": queue, "max_seconds": 20})
    assert status == 200 and (summary["claimed"], summary["completed"]) == (3, 3), summary


@pytest.mark.parametrize("token", [None, "wrong", SECRET + "x", ""])
def test_a_missing_or_wrong_secret_is_401(invoker: Invoker, token: str | None) -> None:
    status, body = post(invoker.url, {"queue": invoker.queues[0]}, token=token)
    assert status == 401 and "Authorization" in body["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        ({"queue": "no_such_queue"}, "unknown queue 'no_such_queue'"),
        ({}, "queue must be a non-empty string"),
        ({"queue": "QUEUE", "max_seconds": 5}, "unknown queue"),
        ({"queue": "{q}", "max_seconds": -1}, "max_seconds must be"),
        ({"queue": "{q}", "max_jobs": 0}, "max_jobs must be"),
        ({"queue": "{q}", "colour": "blue"}, "unknown field(s): colour"),
    ],
)
def test_bad_requests_are_400_with_a_clear_message(
    invoker: Invoker, body: bytes | dict[str, Any], message: str
) -> None:
    if isinstance(body, dict) and body.get("queue") == "{q}":
        body = {**body, "queue": invoker.queues[0]}
    status, answer = post(invoker.url, body)
    assert status == 400 and message in answer["error"], answer


def test_schedule_invoker_says_clearly_that_pg_net_is_missing(
    conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    has_net = conn.execute("select count(*) from pg_extension where extname = 'pg_net'")
    assert has_net.fetchone() == (0,), "this test expects a server without pg_net"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as info:
        conn.execute(
            "select pgmq_jobs.schedule_invoker('drain-emails', '10 seconds',"
            " 'http://127.0.0.1:8787', %s, %s)",
            (queue_name, SECRET),
        )
    assert "needs the pg_net extension" in str(info.value)
    assert "pgmq-jobs worker --drain" in (info.value.diag.message_hint or "")
