"""Trust boundaries of the web servers (issue 18, finding 8).

The dashboard serves only requests whose ``Host`` names it: loopback names, the address it is
bound to, and the names given with ``--allowed-host``. Bound to ``0.0.0.0`` or ``::`` it used to
serve any Host, so a DNS-rebinding page (``attacker.example`` resolving to this machine) could
read it. The invoker answers 503 when the database is down (it answered 200 with zero counts)
and 400 for a non-numeric ``Content-Length`` (it dropped the connection with a traceback).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pgmq_jobs.web.invoker as invoker_module
from pgmq_jobs.cli import build_parser
from pgmq_jobs.ops.cluster import free_port
from pgmq_jobs.registry import Registry
from pgmq_jobs.web.dashboard import DashboardServer
from pgmq_jobs.web.dashboard.app import host_name
from pgmq_jobs.web.invoker import InvokerConfig, InvokerServer

SECRET = "web-trust-secret-0123456789"


def request(
    port: int,
    host_header: str | None,
    method: str = "GET",
    path: str = "/",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:``port`` carrying exactly this ``Host`` (none when None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if (body or method == "POST") and "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- dashboard: Host


@pytest.fixture
def dashboard(db_dsn: str) -> Iterator[Callable[..., DashboardServer]]:
    started: list[DashboardServer] = []

    def _start(host: str, **options: Any) -> DashboardServer:
        server = DashboardServer(db_dsn, host, 0, refresh=0, **options)
        server.start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


REBINDING = ["attacker.example", "attacker.example:8469", "localhost.attacker.example", ""]


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_wildcard_dashboard_refuses_a_rebinding_host(
    dashboard: Callable[..., DashboardServer], bind: str
) -> None:
    if bind == "::" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = dashboard(bind)
    except OSError as exc:
        pytest.skip(f"cannot bind {bind}: {exc}")
    port = server.port
    for host in REBINDING:
        status, body = request(port, host)
        assert status == 421, (host, status)
        assert b"does not serve that host name" in body
        status, _ = request(port, host, "POST", "/queues/q/replay", b"token=x&scope=all")
        assert status == 421, (host, status)
    # No Host at all: HTTP/1.1 requires one, so uvicorn's parser refuses the request (400)
    # before any route sees it.
    status, body = request(port, None)
    assert status == 400 and b"Queues" not in body, (status, body)
    assert request(port, None, "POST", "/queues/q/replay", b"token=x&scope=all")[0] == 400
    for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}", "LOCALHOST"):
        assert request(port, host)[0] == 200, host
    for host in ("[::1]", f"[::1]:{port}", "::1"):
        assert request(port, host)[0] == 200, host


def test_allowed_hosts_are_served_and_nothing_else(
    dashboard: Callable[..., DashboardServer],
) -> None:
    server = dashboard("0.0.0.0", allowed_hosts=["dash.example.com", "Jobs.Internal:8443"])
    port = server.port
    for host in ("dash.example.com", "dash.example.com:443", "jobs.internal", "jobs.internal:1"):
        assert request(port, host)[0] == 200, host
    for host in ("evil.dash.example.com", "dash.example.com.evil", "dash.example.co"):
        assert request(port, host)[0] == 421, host


def test_dashboard_bound_to_an_address_serves_that_name_too(
    dashboard: Callable[..., DashboardServer],
) -> None:
    server = dashboard("127.0.0.1")
    port = server.port
    assert request(port, f"127.0.0.1:{port}")[0] == 200
    assert request(port, "localhost")[0] == 200
    assert request(port, "attacker.example")[0] == 421
    assert server.allowed_hosts() >= {"127.0.0.1", "localhost", "::1", "[::1]"}


def test_a_bad_allowed_host_is_refused(db_dsn: str) -> None:
    for bad in ("a/b", "x y", "", "host:port"):
        with pytest.raises(ValueError, match="not a host name"):
            DashboardServer(db_dsn, "127.0.0.1", 0, allowed_hosts=[bad])


def test_host_name_strips_the_port_and_rejects_junk() -> None:
    assert host_name("Example.COM:8469") == "example.com"
    assert host_name("[::1]:80") == "[::1]"
    assert host_name("::1") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    for junk in ("", "a b", "a/b", "a@b", "[::1", "[::1]x", "host:", "host:8o"):
        assert host_name(junk) is None, junk


def test_cli_takes_repeatable_allowed_hosts() -> None:
    args = build_parser().parse_args(
        ["dashboard", "--allowed-host", "a.example", "--allowed-host", "b.example"]
    )
    assert args.allowed_host == ["a.example", "b.example"]
    assert build_parser().parse_args(["dashboard"]).allowed_host == []


# ---------------------------------------------------------------- invoker


def _noop(payload: dict[str, Any], ctx: Any) -> None:
    return None


@pytest.fixture
def dead_invoker() -> Iterator[int]:
    """An invoker whose database is down (nothing listens on its port): its HTTP port."""
    registry = Registry()
    registry.add("q", _noop)
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    config = InvokerConfig(dsn=dsn, registry=registry, secret=SECRET, grace=1.0)
    server = InvokerServer(("127.0.0.1", 0), config)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def invoke(port: int, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    status, raw = request(
        port,
        "127.0.0.1",
        "POST",
        "/invoke",
        body,
        {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json", **headers},
    )
    return status, json.loads(raw)


@pytest.mark.timeout(60)
def test_invoker_answers_503_when_the_database_is_down(dead_invoker: int) -> None:
    status, answer = invoke(dead_invoker, b'{"queue": "q", "max_seconds": 2}')
    assert status == 503, answer
    assert answer["error"].startswith("database unavailable")


@pytest.mark.timeout(60)
def test_invoker_answers_503_when_the_database_goes_away_during_the_drain(
    dead_invoker: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the first check, a worker that never gets the database back ends in 503 too,
    with what it did (nothing here)."""
    monkeypatch.setattr(invoker_module, "check_database", lambda dsn: None)
    status, answer = invoke(dead_invoker, b'{"queue": "q", "max_seconds": 1}')
    assert status == 503, answer
    assert answer["error"].startswith("database unavailable")
    assert answer["claimed"] == 0 and answer["completed"] == 0


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "\u00b2", "12 34"])
def test_invoker_answers_400_to_a_bad_content_length(dead_invoker: int, length: str) -> None:
    status, answer = invoke(dead_invoker, b'{"queue": "q"}', **{"Content-Length": length})
    assert status == 400, answer
    assert "Content-Length" in answer["error"]
