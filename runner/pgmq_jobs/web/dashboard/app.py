"""The dashboard: an ASGI app on Starlette, served by uvicorn (:class:`DashboardServer`).

Read-only unless started with ``allow_actions``. An action (replay, purge, cancel, run now)
must:

* be a ``POST`` to ``/queues/<queue>/<action>`` (``GET`` there is 405);
* carry the token shown at start-up, in the form field ``token`` or the header
  ``X-Dashboard-Token`` (compared in constant time);
* come from the dashboard's own pages: a browser's ``Origin`` must be this server's origin
  and ``Sec-Fetch-Site``, when sent, ``same-origin``; requests from other sites are refused
  even with the right token.

Every request's ``Host`` must name this server, which keeps DNS-rebinding pages from reading
or driving it: a loopback name (``localhost``, ``127.0.0.1``, ``::1``, ``[::1]``), the address it
is bound to (unless that is ``0.0.0.0`` or ``::``), or a name given with ``allowed_hosts``
(``--allowed-host``), each with or without a port; anything else is answered 421. Responses
carry a strict Content-Security-Policy (scripts and styles only from ``/static/``), so even an
unescaped payload could not run a script; the templates escape every value all the same.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import psycopg
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pgmq_jobs import __version__
from pgmq_jobs.errors import describe
from pgmq_jobs.web.dashboard.data import DEAD_ORDERS, JOB_STATES, QUEUE_NAME, RANGES, Database
from pgmq_jobs.web.dashboard.views import Context, Pages, charts, interval_text, sparks
from pgmq_jobs.web.serving import Served, bind

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
ACTIONS = ("replay", "purge", "cancel", "run-now")
MAX_JOB_ID = 2**63 - 1


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


def _first(params: dict[str, list[str]], name: str, default: str = "") -> str:
    return (params.get(name) or [default])[0]


class Dashboard:
    """The dashboard's routes and checks over one database."""

    def __init__(
        self,
        db: Database,
        context: Context,
        *,
        token: str | None,
        allowed_hosts: Callable[[], set[str]],
    ) -> None:
        self.db = db
        self.context = context
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.pages = Pages(context)

    def app(self) -> ASGIApp:
        routes = [
            Route("/", self.overview, methods=["GET"]),
            Route("/workers", self.workers, methods=["GET"]),
            Route("/schedules", self.schedules, methods=["GET"]),
            Route("/audit", self.audit, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/queues/{queue}", self.queue, methods=["GET"]),
            Route("/queues/{queue}/jobs/{job_id}", self.job, methods=["GET"]),
            Route("/queues/{queue}/{action}", self.action, methods=["GET", "POST"]),
            Route("/{path:path}", self.not_found, methods=["GET", "POST", "PUT", "DELETE"]),
        ]
        return HostGuard(Starlette(routes=routes), self)

    # ------------------------------------------------------------ responses

    def html(self, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return secured(Response(text, status, headers, "text/html; charset=utf-8"))

    def error(
        self, status: HTTPStatus, detail: str, headers: dict[str, str] | None = None
    ) -> Response:
        page = self.pages.error(status.value, status.phrase, detail)
        return self.html(status.value, page, headers)

    async def page(self, request: Request, build: Callable[[], Response]) -> Response:
        """Run ``build`` (blocking database reads) in a worker thread; database trouble
        becomes a 503 or 500 page."""
        try:
            return await run_in_threadpool(build)
        except PoolTimeout:
            return self.error(
                HTTPStatus.SERVICE_UNAVAILABLE, "The database did not answer in time."
            )
        except psycopg.Error as exc:
            log.warning("page %s failed: %s", request.url.path, describe(exc))
            return self.error(HTTPStatus.INTERNAL_SERVER_ERROR, f"Database error: {describe(exc)}")

    # ------------------------------------------------------------ pages

    async def overview(self, request: Request) -> Response:
        def build() -> Response:
            data = self.db.overview()
            stats: list[dict[str, Any]] = data["stats"]
            totals = {
                k: sum(int(r[k] or 0) for r in stats) for k in ("ready", "in_flight", "delayed")
            }
            totals["dead"] = sum(int(r["dead"] or 0) for r in stats)
            totals["rate"] = sum(float(r["completed_rate_1m"] or 0) for r in stats)
            return self.html(
                200,
                self.pages.render(
                    "overview.html",
                    title="Queues",
                    active="/",
                    now=stats[0]["measured_at"] if stats else datetime.now(UTC),
                    stats=stats,
                    alerts=data["alerts"],
                    workers=data["workers"],
                    totals=totals,
                    sparks=sparks(data),
                ),
            )

        return await self.page(request, build)

    async def workers(self, request: Request) -> Response:
        include_gone = request.query_params.get("all", "") in ("1", "true", "yes")

        def build() -> Response:
            workers = self.db.workers(include_gone)
            counts: dict[str, int] = {}
            for w in workers:
                counts[w["status"]] = counts.get(w["status"], 0) + 1
            totals = {
                "done": sum(int(w["jobs_done"] or 0) for w in workers),
                "in_flight": sum(int(w["in_flight"] or 0) for w in workers),
            }
            return self.html(
                200,
                self.pages.render(
                    "workers.html",
                    title="Workers",
                    active="/workers",
                    now=datetime.now(UTC),
                    workers=workers,
                    include_gone=include_gone,
                    counts=counts,
                    totals=totals,
                ),
            )

        return await self.page(request, build)

    async def schedules(self, request: Request) -> Response:
        def build() -> Response:
            page = self.pages.render(
                "schedules.html",
                title="Schedules",
                active="/schedules",
                now=datetime.now(UTC),
                schedules=self.db.schedules(),
            )
            return self.html(200, page)

        return await self.page(request, build)

    async def audit(self, request: Request) -> Response:
        def build() -> Response:
            page = self.pages.render(
                "audit.html",
                title="Audit",
                active="/audit",
                now=datetime.now(UTC),
                rows=self.db.audit(),
            )
            return self.html(200, page)

        return await self.page(request, build)

    async def healthz(self, request: Request) -> Response:
        return secured(Response("ok\n", 200, media_type="text/plain; charset=utf-8"))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not STATIC_NAME.fullmatch(name):
            return self.error(HTTPStatus.NOT_FOUND, "There is no such file.")
        res = resources.files("pgmq_jobs.web.dashboard").joinpath("static", name)
        if not res.is_file():
            return self.error(HTTPStatus.NOT_FOUND, "There is no such file.")
        suffix = name[name.rindex(".") :]
        return secured(Response(res.read_bytes(), 200, media_type=STATIC_TYPES[suffix]))

    async def not_found(self, request: Request) -> Response:
        if request.method != "GET":
            return self.error(
                HTTPStatus.METHOD_NOT_ALLOWED, "Only actions accept POST.", {"Allow": "GET"}
            )
        return self.error(HTTPStatus.NOT_FOUND, "There is no such page.")

    async def queue(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        if not QUEUE_NAME.fullmatch(queue):
            return self.error(HTTPStatus.NOT_FOUND, "There is no such queue.")
        params = request.query_params
        rng = RANGES.get(params.get("range", "1h"), RANGES["1h"])
        error_text = params.get("error", "").strip()[:200]
        state = params.get("state", "waiting")
        if state not in JOB_STATES:
            state = "waiting"
        order = params.get("order", DEAD_ORDERS[0])
        if order not in DEAD_ORDERS:
            order = DEAD_ORDERS[0]
        try:
            limit = min(1000, max(1, int(params.get("limit", "100"))))
        except ValueError:
            limit = 100
        flash = flash_message(params.get("done", ""), params.get("n", ""))

        def build() -> Response:
            data = self.db.queue(
                queue, rng, error_text=error_text, limit=limit, state=state, order=order
            )
            if data is None:
                return self.error(HTTPStatus.NOT_FOUND, f"There is no queue named {queue}.")
            s = data["stats"]
            settings = data["settings"]
            page = self.pages.render(
                "queue.html",
                title=queue,
                active="/",
                now=s["measured_at"],
                queue=queue,
                stats=s,
                facts=queue_facts(settings),
                flash=flash,
                alerts=data["alerts"],
                charts=charts(data["history"], rng),
                rng=rng,
                state=state,
                jobs=data["jobs"],
                recent=data["recent"],
                letters=data["letters"],
                order=order,
                groups=data["groups"],
                total_dead=int(s["dead"] or 0),
                error_text=error_text,
                limit=limit,
            )
            return self.html(200, page)

        return await self.page(request, build)

    async def job(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        text = request.path_params["job_id"]
        if not QUEUE_NAME.fullmatch(queue) or not (text.isascii() and text.isdigit()):
            return self.error(HTTPStatus.NOT_FOUND, "There is no such job.")
        job_id = int(text)
        if not 0 < job_id <= MAX_JOB_ID:
            return self.error(HTTPStatus.NOT_FOUND, "There is no such job.")
        params = request.query_params
        flash = flash_message(params.get("done", ""), params.get("n", ""))

        def build() -> Response:
            info, exists = self.db.job(queue, job_id)
            if not exists:
                return self.error(HTTPStatus.NOT_FOUND, f"There is no queue named {queue}.")
            if info is None:
                return self.error(
                    HTTPStatus.NOT_FOUND,
                    f"Queue {queue} has no job {job_id} (or no longer keeps it).",
                )
            page = self.pages.render(
                "job.html",
                title=f"job {job_id} · {queue}",
                active="/",
                now=datetime.now(UTC),
                queue=queue,
                job=info,
                flash=flash,
            )
            return self.html(200, page)

        return await self.page(request, build)

    # ------------------------------------------------------------ actions

    async def action(self, request: Request) -> Response:
        queue = request.path_params["queue"]
        action = request.path_params["action"]
        if action not in ACTIONS:
            return await self.not_found(request)
        if request.method != "POST":
            return self.error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "Actions are POST requests from the queue page.",
                {"Allow": "POST"},
            )
        close = {"Connection": "close"}
        try:
            form = await self.authorise(request)
            if not QUEUE_NAME.fullmatch(queue):
                raise Refused(HTTPStatus.NOT_FOUND, "There is no such queue.")
            n, location = await run_in_threadpool(self.act, queue, action, form)
        except Refused as exc:
            log.warning("refused %s %s: %s", action, queue, exc.reason)
            return self.error(exc.status, exc.reason, close)
        except PoolTimeout:
            return self.error(
                HTTPStatus.SERVICE_UNAVAILABLE, "The database did not answer in time."
            )
        except psycopg.Error as exc:
            return self.error(HTTPStatus.BAD_REQUEST, f"The database refused: {describe(exc)}")
        log.info("%s %s: %d", action, queue, n)
        return secured(Response(b"", HTTPStatus.SEE_OTHER, {"Location": location}))

    async def authorise(self, request: Request) -> dict[str, list[str]]:
        """The request's form, once it has passed every check an action needs."""
        if not self.context.actions or self.token is None:
            raise Refused(
                HTTPStatus.FORBIDDEN,
                "This dashboard is read-only: start it with --allow-actions to replay or purge.",
            )
        headers = request.headers
        site = headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            raise Refused(HTTPStatus.FORBIDDEN, f"Cross-site request refused ({site}).")
        origin = headers.get("origin")
        if origin is not None:
            expected = f"http://{(headers.get('host') or '').lower()}"
            if origin.lower() != expected:
                raise Refused(HTTPStatus.FORBIDDEN, "Cross-origin request refused.")
        length_text = headers.get("content-length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise Refused(HTTPStatus.BAD_REQUEST, "Bad Content-Length.") from None
        if length > MAX_BODY:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The form is too large.")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The form is too large.")
        ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if body and ctype != "application/x-www-form-urlencoded":
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Send the form url-encoded.")
        try:
            form = parse_qs(
                bytes(body).decode("utf-8"), keep_blank_values=True, max_num_fields=10000
            )
        except (UnicodeDecodeError, ValueError):
            raise Refused(HTTPStatus.BAD_REQUEST, "The form could not be read.") from None
        given = headers.get("x-dashboard-token") or _first(form, "token")
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Refused(
                HTTPStatus.FORBIDDEN,
                "Missing or wrong action token (it was printed when the dashboard started).",
            )
        return form

    def act(self, queue: str, action: str, form: dict[str, list[str]]) -> tuple[int, str]:
        """Do the action; (how many, where to go next)."""
        if action in ("cancel", "run-now"):
            return self.act_on_jobs(queue, action, form)
        scope = _first(form, "scope", "selected")
        ids: list[int] | None = None
        if scope == "selected":
            ids = _ids(form, "dead_id", "dead letter")
        elif scope not in ("all", "age") or (scope == "age" and action != "purge"):
            raise Refused(HTTPStatus.BAD_REQUEST, f"Unknown scope {scope!r}.")
        if action == "replay":
            n = self.db.replay(queue, ids)
        elif scope == "age":
            age = _first(form, "older_than")
            if age not in PURGE_AGES:
                raise Refused(HTTPStatus.BAD_REQUEST, "Unknown age.")
            n = self.db.purge(queue, older_than=PURGE_AGES[age], dead_ids=None)
        elif scope == "all":
            n = self.db.purge(queue, older_than=None, dead_ids=None)
        else:
            n = self.db.purge(queue, older_than=None, dead_ids=ids)
        query = urlencode({"done": action, "n": str(n)})
        return n, f"/queues/{queue}?{query}#dead-letters"

    def act_on_jobs(self, queue: str, action: str, form: dict[str, list[str]]) -> tuple[int, str]:
        ids = _ids(form, "job_id", "job")
        n = self.db.cancel(queue, ids) if action == "cancel" else self.db.run_now(queue, ids)
        done = {"done": action, "n": str(n)}
        if _first(form, "back") == "job" and len(ids) == 1:
            return n, f"/queues/{queue}/jobs/{ids[0]}?{urlencode(done)}"
        state = _first(form, "state", "waiting")
        back = {"state": state if state in JOB_STATES else "waiting", **done}
        return n, f"/queues/{queue}?{urlencode(back)}#jobs"


def _ids(form: dict[str, list[str]], field: str, what: str) -> list[int]:
    try:
        ids = sorted({int(v) for v in form.get(field, [])})
    except ValueError:
        raise Refused(HTTPStatus.BAD_REQUEST, f"{field} must be numbers.") from None
    if not ids:
        raise Refused(HTTPStatus.BAD_REQUEST, f"Select at least one {what}.")
    if any(not 0 < i <= MAX_JOB_ID for i in ids):
        raise Refused(HTTPStatus.BAD_REQUEST, f"{field} out of range.")
    return ids


def secured(response: Response) -> Response:
    """The headers every dashboard response carries."""
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    # Not no-referrer: with it, browsers send "Origin: null" on our own form posts.
    h["Referrer-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    content_type = h.get("content-type", "")
    h["Cache-Control"] = "no-store" if "html" in content_type else "max-age=300"
    return response


class HostGuard:
    """ASGI middleware: a request whose ``Host`` does not name this server gets 421 and
    reaches no route (DNS rebinding)."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                    break
            name_ = host_name(host or "")
            if name_ is None or name_ not in self.dashboard.allowed_hosts():
                response = self.dashboard.error(
                    HTTPStatus.MISDIRECTED_REQUEST, WRONG_HOST, {"Connection": "close"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def queue_facts(settings: dict[str, Any]) -> list[str]:
    facts = [
        f"max attempts {settings.get('max_attempts', '—')}",
        f"visibility timeout {interval_text(settings.get('visibility_timeout'))}",
        (
            f"retry after {interval_text(settings.get('retry_base'))},"
            f" factor {settings.get('retry_factor')},"
            f" up to {interval_text(settings.get('retry_max'))}, {settings.get('jitter')} jitter"
        ),
        f"on complete: {settings.get('on_complete', '—')}",
    ]
    if settings.get("concurrency") is not None:
        facts.append(f"concurrency {settings['concurrency']}")
    if settings.get("partitioned"):
        facts.append("partitioned")
    if settings.get("unlogged"):
        facts.append("unlogged")
    if settings.get("handler"):
        facts.append(f"SQL handler {settings['handler']}")
    return facts


def flash_message(done: str, n_text: str) -> str | None:
    """The result of an action, from the redirect's query (numbers only, nothing echoed)."""
    try:
        n = int(n_text or "0")
    except ValueError:
        return None
    s = "" if n == 1 else "s"
    messages = {
        "replay": f"Replayed {n} dead letter{s} into the queue.",
        "purge": f"Purged {n} dead letter{s}.",
        "cancel": f"Cancelled {n} job{s}.",
        "run-now": f"Moved {n} job{s} to run now.",
    }
    return messages.get(done)


class DashboardServer:
    """Serves the dashboard of one database; ``token`` is set when actions are allowed.

    The socket is bound here (``OSError`` for a busy port); :meth:`start` serves in a
    background thread, :meth:`stop` ends it."""

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
        self.host = host
        self.extra_hosts = {name for _, name in names if name is not None}
        self.allow_actions = allow_actions
        self.token: str | None = (token or secrets.token_urlsafe(24)) if allow_actions else None
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        where = f"{info.get('dbname') or 'postgres'} on {info.get('host') or 'localhost'}"
        if info.get("port"):
            where += f":{info['port']}"
        self.context = Context(
            actions=allow_actions, refresh=refresh, database=where, version=__version__
        )
        self.db = Database(dsn, statement_timeout=statement_timeout)
        self.dashboard = Dashboard(
            self.db, self.context, token=self.token, allowed_hosts=self.allowed_hosts
        )
        self.app = self.dashboard.app()
        self._served = Served(self.app, bind(host, port), name="pgmq-jobs-dashboard")
        self.port = self._served.port

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
        """Open the pool and serve in a background thread (tests, embedding, the CLI)."""
        self.db.open()
        self._served.start()

    def stop(self) -> None:
        self._served.stop()
        self.db.close()


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
