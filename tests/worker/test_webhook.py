"""The built-in ``http`` handler against a real local HTTP server, one case per class."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

import pgmq_jobs
import pgmq_jobs.client as jobs
from pgmq_jobs.ops.cluster import free_port
from pgmq_jobs.registry import JobContext
from pgmq_jobs.webhook import deliver, retry_after_seconds
from support import db_now, queue_rows

Connection = psycopg.Connection[Any]

RECEIVED: list[dict[str, Any]] = []


class Receiver(BaseHTTPRequestHandler):
    """Answers by path: /status/<code>[?retry_after=...], /slow sleeps past the timeout."""

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        RECEIVED.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path == "/slow":
            time.sleep(1.0)
        path, _, query = self.path.partition("?")
        code = int(path.rsplit("/", 1)[-1]) if path.startswith("/status/") else 200
        self.send_response(code)
        if query.startswith("retry_after="):
            self.send_header("Retry-After", query.split("=", 1)[1].replace("%20", " "))
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def ctx() -> JobContext:
    return JobContext("hooks", 1, 1, 5, datetime.now(UTC), "test")


def test_2xx_completes_and_sends_method_headers_and_json_body(server: str) -> None:
    RECEIVED.clear()
    payload = {
        "url": f"{server}/status/201",
        "method": "PUT",
        "headers": {"X-Signature": "abc"},
        "body": {"event": "paid", "amount": 3},
    }
    assert deliver(payload, ctx()) == {"status": 201}
    [request] = RECEIVED
    assert request["method"] == "PUT" and request["headers"]["X-Signature"] == "abc"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {"event": "paid", "amount": 3}


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503])
def test_408_429_and_5xx_retry_with_the_queue_backoff(server: str, code: int) -> None:
    with pytest.raises(pgmq_jobs.Retry, match=f"HTTP {code}") as info:
        deliver({"url": f"{server}/status/{code}"}, ctx())
    assert info.value.after is None


def test_retry_after_seconds_is_honoured(server: str) -> None:
    with pytest.raises(pgmq_jobs.Retry) as info:
        deliver({"url": f"{server}/status/503?retry_after=7"}, ctx())
    assert info.value.after == timedelta(seconds=7)


def test_retry_after_http_date_is_honoured(server: str) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with pytest.raises(pgmq_jobs.Retry) as info:
        deliver({"url": f"{server}/status/429?retry_after={when.replace(' ', '%20')}"}, ctx())
    assert info.value.after is not None
    assert 100 <= info.value.after.total_seconds() <= 121


@pytest.mark.parametrize("code", [400, 401, 404, 410, 422, 302])
def test_other_4xx_and_redirects_are_permanent(server: str, code: int) -> None:
    with pytest.raises(pgmq_jobs.Permanent, match=f"HTTP {code}"):
        deliver({"url": f"{server}/status/{code}", "method": "GET"}, ctx())


def test_a_timeout_retries(server: str) -> None:
    with pytest.raises(pgmq_jobs.Retry, match="timed out"):
        deliver({"url": f"{server}/slow", "timeout": 0.2}, ctx())


def test_a_refused_connection_retries() -> None:
    with pytest.raises(pgmq_jobs.Retry, match="connection failed"):
        deliver({"url": f"http://127.0.0.1:{free_port()}/"}, ctx())


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"url": "ftp://x"},
        {"url": "http://x", "method": "BREW"},
        {"url": "http://x", "timeout": 0},
    ],
)
def test_a_malformed_payload_is_permanent(payload: dict[str, Any]) -> None:
    with pytest.raises(pgmq_jobs.Permanent, match="payload"):
        deliver(payload, ctx())


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("15", now) == 15
    assert retry_after_seconds("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60
    assert retry_after_seconds("Wed, 31 Dec 2025 00:00:00 GMT", now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_a_worker_delivers_retries_and_dead_letters_webhooks(
    db_dsn: str, conn: Connection, queue_name: str, server: str
) -> None:
    jobs.create_queue(conn, queue_name, max_attempts=3)
    ok = jobs.enqueue(conn, queue_name, {"url": f"{server}/status/200"})
    busy = jobs.enqueue(conn, queue_name, {"url": f"{server}/status/503?retry_after=60"})
    gone = jobs.enqueue(conn, queue_name, {"url": f"{server}/status/404"})
    app = pgmq_jobs.Registry()
    app.http(queue_name)
    options = pgmq_jobs.WorkerOptions([queue_name], drain=True, max_seconds=20, listen=False)
    summary = pgmq_jobs.Worker(db_dsn, app, options).run()
    assert (summary.claimed, summary.completed, summary.failed, summary.dead) == (3, 1, 2, 1)
    [dead] = jobs.dead_letters(conn, queue_name)
    assert (dead.job_id, dead.reason) == (gone, "permanent")
    assert "HTTP 404" in (dead.last_error or "")
    [waiting] = queue_rows(conn, queue_name)  # ok was completed; busy waits for Retry-After
    assert waiting["msg_id"] == busy and ok != busy
    assert timedelta(seconds=55) < waiting["vt"] - db_now(conn) <= timedelta(seconds=60)
