"""The dashboard's HTTP server (stdlib ``ThreadingHTTPServer``).

Read-only unless started with ``allow_actions``. An action (replay, purge) must:

* be a ``POST`` to ``/queues/<queue>/replay`` or ``/purge`` (``GET`` there is 405);
* carry the token shown at start-up, in the form field ``token`` or the header
  ``X-Dashboard-Token`` (compared in constant time);
* come from the dashboard's own pages: a browser's ``Origin`` must be this server's origin
  and ``Sec-Fetch-Site``, when sent, ``same-origin``; requests from other sites are refused
  even with the right token.

Every request's ``Host`` must name this server, which keeps DNS-rebinding pages from reading
or driving it: a loopback name (``localhost``, ``127.0.0.1``, ``::1``, ``[::1]``), the address it
is bound to (unless that is ``0.0.0.0`` or ``::``), or a name given with ``allowed_hosts``
(``--allowed-host``), each with or without a port; anything else is answered 421. Responses
carry a strict
Content-Security-Policy (scripts and styles only from ``/static/``), so even an unescaped
payload could not run a script; payloads and errors are escaped all the same.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import socket
import threading
from collections.abc import Iterable
from datetime import timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
from psycopg_pool import PoolTimeout

from pgmq_jobs import __version__
from pgmq_jobs.dashboard import pages
from pgmq_jobs.dashboard.data import QUEUE_NAME, RANGES, Database
from pgmq_jobs.errors import describe

log = logging.getLogger("pgmq_jobs.dashboard")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8469
MAX_BODY = 256 * 1024
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")
WRONG_HOST = (
    "This server does not serve that host name (start it with --allowed-host NAME to serve one)."
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
STATIC_NAME = re.compile(r"[a-z0-9_-]+\.(css|js|svg)")
PURGE_AGES = {"": None, "1 hour": timedelta(hours=1), "1 day": timedelta(days=1)}
PURGE_AGES |= {"7 days": timedelta(days=7), "30 days": timedelta(days=30)}


class Refused(Exception):
    """An action refused before it reached the database (status, reason)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def host_name(header: str) -> str | None:
    """The host part of a ``Host`` header, lowercased, without its port; None when malformed.

    ``example.com:8469`` -> ``example.com``, ``[::1]:8469`` -> ``[::1]``, and a bare IPv6
    address (not valid in a Host header, but sent by some clients) stays as it is.
    """
    text = header.strip().lower()
    if not text or any(c.isspace() or c in "/\\@?#" for c in text):
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[: end + 1], text[end + 1 :]
    elif text.count(":") == 1:
        name, rest = text.split(":")[0], text[text.index(":") :]
    else:
        name, rest = text, ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return name or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DashboardServer(ThreadingHTTPServer):
    """Serves the dashboard of one database; ``token`` is set when actions are allowed."""

    daemon_threads = True

    def __init__(
        self,
        dsn: str,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        allow_actions: bool = False,
        token: str | None = None,
        refresh: float = 5.0,
        statement_timeout: float = 10.0,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        names = [(n, host_name(n)) for n in allowed_hosts]
        bad = [n for n, name in names if name is None]
        if bad:
            raise ValueError(f"not a host name: {bad[0]!r} (give a name like dash.example.com)")
        if ":" in host:  # an IPv6 address, "::" included
            self.address_family = socket.AF_INET6
        super().__init__((host, port), DashboardHandler)
        self.host = host
        self.extra_hosts = {name for _, name in names if name is not None}
        self.db = Database(dsn, statement_timeout=statement_timeout)
        self.allow_actions = allow_actions
        self.token: str | None = (token or secrets.token_urlsafe(24)) if allow_actions else None
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        where = f"{info.get('dbname') or 'postgres'} on {info.get('host') or 'localhost'}"
        if info.get("port"):
            where += f":{info['port']}"
        self.context = pages.Context(
            actions=allow_actions, refresh=refresh, database=where, version=__version__
        )
        self.port = int(self.server_address[1])
        self._thread: threading.Thread | None = None

    def allowed_hosts(self) -> set[str]:
        """The host names (no port) a request's ``Host`` may carry: loopback names, the bound
        address unless it is a wildcard, and the ``allowed_hosts`` given; never a name that a
        DNS-rebinding page could bring."""
        names = set(LOOPBACK_NAMES) | self.extra_hosts
        if not self.any_host():
            bound = self.host.lower()
            names.add(bound)
            if ":" in bound and not bound.startswith("["):
                names.add(f"[{bound}]")
        return names

    def host_allowed(self, header: str | None) -> bool:
        name = host_name(header or "")
        return name is not None and name in self.allowed_hosts()

    def any_host(self) -> bool:
        return self.host in WILDCARD_HOSTS

    @property
    def url(self) -> str:
        host = self.host if not self.any_host() else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Open the pool and serve in a background thread (tests, embedding)."""
        self.db.open()
        self._thread = threading.Thread(
            target=self.serve_forever, name="pgmq-jobs-dashboard", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.db.close()


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "pgmq-jobs-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------ plumbing

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        # Not no-referrer: with it, browsers send "Origin: null" on our own form posts.
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store" if "html" in content_type else "max-age=300")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), headers=headers)

    def _error(
        self, status: HTTPStatus, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        page = pages.error_page(self.server.context, status.value, status.phrase, detail)
        self._html(status.value, page, headers)

    def _host_ok(self) -> bool:
        return self.server.host_allowed(self.headers.get("Host"))

    # ------------------------------------------------------------ GET

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, WRONG_HOST, {"Connection": "close"})
            return
        url = urlsplit(self.path)
        path = url.path
        params = parse_qs(url.query)
        try:
            self._route_get(path, params)
        except PoolTimeout:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "The database did not answer in time.")
        except psycopg.Error as exc:
            log.warning("page %s failed: %s", path, describe(exc))
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"Database error: {describe(exc)}")

    def _route_get(self, path: str, params: dict[str, list[str]]) -> None:
        ctx = self.server.context
        db = self.server.db
        if path == "/":
            self._html(200, pages.overview(ctx, db.overview()))
        elif path == "/workers":
            include_gone = (params.get("all") or [""])[0] in ("1", "true", "yes")
            self._html(200, pages.workers_page(ctx, db.workers(include_gone), include_gone))
        elif path == "/schedules":
            self._html(200, pages.schedules_page(ctx, db.schedules()))
        elif path == "/audit":
            self._html(200, pages.audit_page(ctx, db.audit()))
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif m := re.fullmatch(r"/queues/([^/]+)", path):
            self._queue(m.group(1), params)
        elif re.fullmatch(r"/queues/[^/]+/(replay|purge)", path):
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "Actions are POST requests from the queue page.",
                {"Allow": "POST"},
            )
        else:
            self._error(HTTPStatus.NOT_FOUND, "There is no such page.")

    def _static(self, name: str) -> None:
        if not STATIC_NAME.fullmatch(name):
            self._error(HTTPStatus.NOT_FOUND, "There is no such file.")
            return
        res = resources.files("pgmq_jobs.dashboard").joinpath("static", name)
        if not res.is_file():
            self._error(HTTPStatus.NOT_FOUND, "There is no such file.")
            return
        suffix = name[name.rindex(".") :]
        self._send(200, res.read_bytes(), STATIC_TYPES[suffix])

    def _queue(self, queue: str, params: dict[str, list[str]]) -> None:
        if not QUEUE_NAME.fullmatch(queue):
            self._error(HTTPStatus.NOT_FOUND, "There is no such queue.")
            return
        rng = RANGES.get((params.get("range") or ["1h"])[0], RANGES["1h"])
        error_text = (params.get("error") or [""])[0].strip()[:200]
        try:
            limit = min(1000, max(1, int((params.get("limit") or ["100"])[0])))
        except ValueError:
            limit = 100
        data = self.server.db.queue(queue, rng, error_text=error_text, limit=limit)
        if data is None:
            self._error(HTTPStatus.NOT_FOUND, f"There is no queue named {queue}.")
            return
        page = pages.queue_page(
            self.server.context,
            queue,
            data,
            rng,
            error_text=error_text,
            limit=limit,
            flash=pages.flash_message(params),
        )
        self._html(200, page)

    # ------------------------------------------------------------ POST

    def do_POST(self) -> None:
        if not self._host_ok():
            self.close_connection = True
            self._error(HTTPStatus.MISDIRECTED_REQUEST, WRONG_HOST, {"Connection": "close"})
            return
        path = urlsplit(self.path).path
        m = re.fullmatch(r"/queues/([^/]+)/(replay|purge)", path)
        if m is None:
            self._drain()
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED, "Only actions accept POST.", {"Allow": "GET"}
            )
            return
        queue, action = m.group(1), m.group(2)
        try:
            form = self._authorise()
            if not QUEUE_NAME.fullmatch(queue):
                raise Refused(HTTPStatus.NOT_FOUND, "There is no such queue.")
            n = self._act(queue, action, form)
        except Refused as exc:
            log.warning("refused %s %s: %s", action, queue, exc.reason)
            self._error(exc.status, exc.reason, {"Connection": "close"})
            return
        except PoolTimeout:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "The database did not answer in time.")
            return
        except psycopg.Error as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"The database refused: {describe(exc)}")
            return
        log.info("%s %s: %d dead letters", action, queue, n)
        query = {"done": action, "n": str(n)}
        self._send(
            HTTPStatus.SEE_OTHER,
            b"",
            headers={"Location": f"/queues/{queue}?{urlencode(query)}#dead-letters"},
        )

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _authorise(self) -> dict[str, list[str]]:
        """The request's form, once it has passed every check an action needs."""
        server = self.server
        if not server.allow_actions or server.token is None:
            self._drain()
            raise Refused(
                HTTPStatus.FORBIDDEN,
                "This dashboard is read-only: start it with --allow-actions to replay or purge.",
            )
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            self._drain()
            raise Refused(HTTPStatus.FORBIDDEN, f"Cross-site request refused ({site}).")
        origin = self.headers.get("Origin")
        if origin is not None:
            expected = f"http://{(self.headers.get('Host') or '').lower()}"
            if origin.lower() != expected:
                self._drain()
                raise Refused(HTTPStatus.FORBIDDEN, "Cross-origin request refused.")
        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise Refused(HTTPStatus.BAD_REQUEST, "Bad Content-Length.") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The form is too large.")
        body = self.rfile.read(length) if length > 0 else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and ctype != "application/x-www-form-urlencoded":
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Send the form url-encoded.")
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10000)
        except (UnicodeDecodeError, ValueError):
            raise Refused(HTTPStatus.BAD_REQUEST, "The form could not be read.") from None
        given = self.headers.get("X-Dashboard-Token") or (form.get("token") or [""])[0]
        if not given or not hmac.compare_digest(given.encode(), server.token.encode()):
            raise Refused(
                HTTPStatus.FORBIDDEN,
                "Missing or wrong action token (it was printed when the dashboard started).",
            )
        return form

    def _act(self, queue: str, action: str, form: dict[str, list[str]]) -> int:
        scope = (form.get("scope") or ["selected"])[0]
        ids: list[int] | None = None
        if scope == "selected":
            try:
                ids = sorted({int(v) for v in form.get("dead_id", [])})
            except ValueError:
                raise Refused(HTTPStatus.BAD_REQUEST, "dead_id must be numbers.") from None
            if not ids:
                raise Refused(HTTPStatus.BAD_REQUEST, "Select at least one dead letter.")
        elif scope not in ("all", "age") or (scope == "age" and action != "purge"):
            raise Refused(HTTPStatus.BAD_REQUEST, f"Unknown scope {scope!r}.")
        db = self.server.db
        if action == "replay":
            return db.replay(queue, ids)
        if scope == "age":
            age = (form.get("older_than") or [""])[0]
            if age not in PURGE_AGES:
                raise Refused(HTTPStatus.BAD_REQUEST, "Unknown age.")
            return db.purge(queue, older_than=PURGE_AGES[age], dead_ids=None)
        if scope == "all":
            return db.purge(queue, older_than=None, dead_ids=None)
        return db.purge(queue, older_than=None, dead_ids=ids)


def serve(
    dsn: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    **options: Any,
) -> DashboardServer:
    """Start a dashboard in a background thread; ``stop()`` it when done."""
    server = DashboardServer(dsn, host, port, **options)
    server.start()
    return server
