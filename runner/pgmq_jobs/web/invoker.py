"""An Edge-Function-style invoker: ``POST /invoke`` drains a batch of one queue over HTTP.

An ASGI app on Starlette, served by uvicorn (:class:`InvokerServer`).

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
import socket
import sys
from dataclasses import dataclass
from typing import Any

import h11
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from pgmq_jobs.api import sync as api
from pgmq_jobs.registry import Registry
from pgmq_jobs.web.serving import Served, bind, listen_error, wait_for_signal
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
            api.current_minute(conn)  # any statement: the database answers
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
    if _connection_lost(worker):
        raise DatabaseUnavailable("database unavailable: the connection was lost", summary)
    return summary


def _connection_lost(worker: Worker) -> bool:
    """Whether the worker ended without the database: it counts failed connection attempts
    since its last good one (``worker.connection.failures``; ``_failures`` in releases whose
    Worker was one class)."""
    connection = getattr(worker, "connection", None)
    failures = getattr(connection, "failures", None)
    if failures is None:
        failures = getattr(worker, "_failures", 0)
    return bool(failures)


def answer(status: int, body: dict[str, Any]) -> Response:
    """A JSON answer, as ``json.dumps`` writes it, with a newline."""
    return Response((json.dumps(body) + "\n").encode(), status, media_type="application/json")


class Invoker:
    """Routes: POST /invoke, GET /healthz; anything else 404."""

    def __init__(self, config: InvokerConfig) -> None:
        self.config = config

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/invoke", self.invoke, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/{path:path}", self.no_route, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    async def healthz(self, request: Request) -> Response:
        return answer(200, {"status": "ok"})

    async def no_route(self, request: Request) -> Response:
        return answer(404, {"error": f"no route {request.url.path}; use POST /invoke"})

    async def invoke(self, request: Request) -> Response:
        config = self.config
        if not authorised(request.headers.get("authorization"), config.secret):
            return answer(401, {"error": "missing or wrong Authorization: Bearer <secret>"})
        try:
            invocation = parse_invocation(await self._body(request), config)
            summary = await run_in_threadpool(invoke, config, invocation)
        except BadRequest as exc:
            return answer(400, {"error": str(exc)})
        except DatabaseUnavailable as exc:
            partial = json.loads(exc.summary.to_json()) if exc.summary is not None else {}
            return answer(503, {"error": str(exc), **partial})
        except psycopg.OperationalError as exc:
            return answer(503, {"error": f"database unavailable: {_first_line(exc)}"})
        except psycopg.Error as exc:
            return answer(400, {"error": (exc.diag.message_primary or str(exc)).strip()})
        return answer(200, {"queue": invocation.queue, **json.loads(summary.to_json())})

    async def _body(self, request: Request) -> bytes:
        text = (request.headers.get("content-length") or "0").strip()
        if not (text.isascii() and text.isdigit()):
            raise BadRequest(f"Content-Length must be a number of bytes, got {text[:40]!r}")
        if int(text) > MAX_BODY_BYTES:
            raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes")
        return bytes(body)


BAD_HTTP = (
    "the HTTP request could not be read: a malformed request line or header"
    " (Content-Length must be a number of bytes)"
)


class JsonErrorsH11(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse (a Content-Length that is
    not a number, say) with the invoker's JSON error instead of plain text."""

    def send_400_response(self, msg: str) -> None:
        data = (json.dumps({"error": BAD_HTTP}) + "\n").encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers)))
        self.transport.write(self.conn.send(h11.Data(data=data)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


class InvokerServer:
    """The invoker on ``address`` (bound here: ``OSError`` for a busy port); :meth:`start`
    serves in a background thread, :meth:`stop` ends it."""

    def __init__(self, address: tuple[str, int], config: InvokerConfig) -> None:
        self.config = config
        self.app = Invoker(config).app()
        self._served = Served(
            self.app, bind(*address), name="pgmq-jobs-invoker", http=JsonErrorsH11
        )
        self.server_address = (address[0], self._served.port)

    @property
    def port(self) -> int:
        return self._served.port

    def start(self) -> None:
        self._served.start()

    def stop(self) -> None:
        self._served.stop()


def serve(config: InvokerConfig, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; a port that cannot be had ends the process with one line."""
    try:
        server = InvokerServer((host, port), config)
    except OSError as exc:
        raise SystemExit(listen_error("pgmq-jobs serve", host, port, exc)) from None
    server.start()
    print(f"pgmq-jobs invoker listening on http://{host}:{server.port}", file=sys.stderr)
    sys.stderr.flush()
    try:
        wait_for_signal()
    finally:
        server.stop()
