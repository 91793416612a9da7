"""An Edge-Function-style invoker: ``POST /invoke`` drains a batch of one queue over HTTP.

``pgmq-jobs serve --dsn … --app module:registry --port 8787 --secret-env INVOKER_SECRET``

Request: ``POST /invoke`` with ``Authorization: Bearer <secret>`` and a JSON body
``{"queue": "emails", "max_seconds": 20, "max_jobs": 100}`` (``max_seconds`` defaults to 50,
``max_jobs`` to no limit). The server runs a drain-mode worker for that queue (no LISTEN,
one database connection per request) until nothing is ready, the time budget is spent or
``max_jobs`` were claimed, and answers with the run's JSON summary (claimed, completed,
failed, dead, stale, seconds). Jobs still running when the budget ends get the usual grace
period. 401 without the right secret (compared in constant time), 400 for bad JSON, a bad
``Content-Length`` or an unknown queue, 503 when the database is unreachable (before the drain,
or lost during it and not back by its end: then with the partial summary). ``GET /healthz``
answers ``ok``.

pg_cron + pg_net can call it every few seconds (``pgmq_jobs.schedule_invoker`` in
``sql/150_invoker_cron.sql``); without pg_net, a system cron line running
``pgmq-jobs worker --drain --max-seconds 50`` does the same job.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import psycopg

from pgmq_jobs.registry import Registry
from pgmq_jobs.worker import Summary, Worker, WorkerOptions

log = logging.getLogger("pgmq_jobs.invoker")

MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_SECONDS = 50.0


@dataclass(frozen=True)
class InvokerConfig:
    dsn: str
    registry: Registry
    secret: str
    concurrency: int = 10
    max_seconds_cap: float = 300.0
    grace: float = 30.0


@dataclass(frozen=True)
class Invocation:
    queue: str
    max_seconds: float
    max_jobs: int | None


class BadRequest(ValueError):
    """The request cannot be served; the message says why (HTTP 400)."""


class DatabaseUnavailable(Exception):
    """The database could not be reached (HTTP 503); ``summary``: what was done before."""

    def __init__(self, message: str, summary: Summary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


def authorised(header: str | None, secret: str) -> bool:
    """``Authorization: Bearer <secret>``, compared in constant time."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), secret.encode())


def parse_invocation(body: bytes, config: InvokerConfig) -> Invocation:
    """Validate the JSON body of ``POST /invoke``."""
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply to parse") from None
    if not isinstance(data, dict):
        raise BadRequest('body must be a JSON object like {"queue": "emails", "max_seconds": 20}')
    unknown = sorted(set(data) - {"queue", "max_seconds", "max_jobs"})
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    return Invocation(
        queue=_queue(data.get("queue"), config.registry),
        max_seconds=_max_seconds(data.get("max_seconds"), config.max_seconds_cap),
        max_jobs=_max_jobs(data.get("max_jobs")),
    )


def _queue(value: Any, registry: Registry) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("queue must be a non-empty string")
    if value not in registry.handlers:
        known = ", ".join(sorted(registry.handlers)) or "none"
        raise BadRequest(f"unknown queue {value!r}: this server has handlers for {known}")
    return value


def _max_seconds(value: Any, cap: float) -> float:
    if value is None:
        return min(DEFAULT_MAX_SECONDS, cap)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= cap:
        raise BadRequest(f"max_seconds must be a number in (0, {cap:g}], got {value!r}")
    return float(value)


def _max_jobs(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"max_jobs must be a positive integer, got {value!r}")
    return value


def check_database(dsn: str, timeout: int = 5) -> None:
    """Raise :class:`DatabaseUnavailable` unless the database answers now."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=timeout) as conn:
            conn.execute("select 1")
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def invoke(config: InvokerConfig, invocation: Invocation) -> Summary:
    """Drain one batch of ``invocation.queue`` with a short-lived worker.

    Raises :class:`DatabaseUnavailable` when the database cannot be reached first, or when the
    worker lost it and had not got it back when the run ended (a drain-mode worker otherwise
    waits out its budget reconnecting and reports zero counts).
    """
    check_database(config.dsn)
    options = WorkerOptions(
        queues=[invocation.queue],
        concurrency=config.concurrency,
        listen=False,
        drain=True,
        max_seconds=invocation.max_seconds,
        max_jobs=invocation.max_jobs,
        grace=config.grace,
        worker_id=f"invoker:{socket.gethostname()}:{os.getpid()}:{invocation.queue}",
    )
    worker = Worker(config.dsn, config.registry, options)
    summary = worker.run()
    # The worker counts failed connection attempts since its last good one.
    if getattr(worker, "_failures", 0):
        raise DatabaseUnavailable("database unavailable: the connection was lost", summary)
    return summary


class InvokeHandler(BaseHTTPRequestHandler):
    """Routes: POST /invoke, GET /healthz."""

    server: InvokerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": f"no route {self.path}; use POST /invoke"})

    def do_POST(self) -> None:
        if self.path != "/invoke":
            self._send(404, {"error": f"no route {self.path}; use POST /invoke"})
            return
        config = self.server.config
        if not authorised(self.headers.get("Authorization"), config.secret):
            self.close_connection = True  # the body is not read
            self._send(401, {"error": "missing or wrong Authorization: Bearer <secret>"})
            return
        try:
            invocation = parse_invocation(self._body(), config)
            summary = invoke(config, invocation)
        except BadRequest as exc:
            self._send(400, {"error": str(exc)})
        except DatabaseUnavailable as exc:
            partial = json.loads(exc.summary.to_json()) if exc.summary is not None else {}
            self._send(503, {"error": str(exc), **partial})
        except psycopg.OperationalError as exc:
            self._send(503, {"error": f"database unavailable: {_first_line(exc)}"})
        except psycopg.Error as exc:
            self._send(400, {"error": (exc.diag.message_primary or str(exc)).strip()})
        else:
            self._send(200, {"queue": invocation.queue, **json.loads(summary.to_json())})

    def _body(self) -> bytes:
        text = (self.headers.get("Content-Length") or "0").strip()
        if not (text.isascii() and text.isdigit()):
            self.close_connection = True  # where the body ends is unknown
            raise BadRequest(f"Content-Length must be a number of bytes, got {text[:40]!r}")
        length = int(text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class InvokerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: InvokerConfig) -> None:
        super().__init__(address, InvokeHandler)
        self.config = config


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(config: InvokerConfig, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    server = InvokerServer((host, port), config)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"pgmq-jobs invoker listening on http://{host}:{server.server_port}", file=sys.stderr)
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
