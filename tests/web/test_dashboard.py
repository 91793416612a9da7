"""``pgmq-jobs dashboard``: pages, SVG charts, actions and their protections.

The browser tests drive Debian's ``chromium`` through Playwright (``executable_path``; never
``playwright install``). They skip only when that browser or the playwright package is
missing; ``scripts/bootstrap.sh`` installs both.

Set ``PGMQ_JOBS_DASHBOARD_SCREENSHOTS=1`` to write the README's screenshots to ``docs/``
(otherwise the screenshot test writes them under its tmp_path).
"""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmq_jobs import client
from pgmq_jobs.cli import build_parser
from pgmq_jobs.ops.plpython import load_plain
from pgmq_jobs.web.dashboard import DashboardServer
from pgmq_jobs.web.dashboard.svg import p95
from pgmq_jobs.web.dashboard.views import environment
from support import ROOT, make_visible, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'

Connection = psycopg.Connection[Any]


# ---------------------------------------------------------------- helpers


@dataclass
class Dash:
    server: DashboardServer
    dsn: str

    @property
    def url(self) -> str:
        return self.server.url.rstrip("/")


@pytest.fixture
def dashboard() -> Iterator[Any]:
    """Factory: ``dashboard(dsn, **options)`` starts a server on a free loopback port."""
    started: list[DashboardServer] = []

    def _start(dsn: str, **options: Any) -> Dash:
        options.setdefault("refresh", 0)
        server = DashboardServer(dsn, "127.0.0.1", 0, **options)
        server.start()
        started.append(server)
        return Dash(server, dsn)

    yield _start
    for server in started:
        server.stop()


def fetch(
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=15) as resp:
            return resp.status, resp.read().decode(), _headers(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), _headers(exc.headers)


def _headers(message: Any) -> dict[str, str]:
    """Header names as ``Content-Type`` whatever case the server sent (HTTP ignores it)."""
    return {k.title(): v for k, v in message.items()}


def make_dead(conn: Connection, queue: str, payload: dict[str, Any], errors: list[str]) -> int:
    """A dead letter with ``errors`` as its history (retries, then a permanent failure).

    The queue must hold no other ready job (the claim takes the oldest)."""
    job_id = client.enqueue(conn, queue, payload)
    for k, error in enumerate(errors, start=1):
        make_visible(conn, queue, job_id)
        jobs = client.claim(conn, queue, 1)
        assert [j.job_id for j in jobs] == [job_id], "another job was ready"
        last = k == len(errors)
        client.fail(conn, queue, job_id, jobs[0].attempt, error, permanent=last, retry_after=0)
    dead = client.dead_letters(conn, queue, 1000)
    return next(d.dead_id for d in dead if d.job_id == job_id)


def history_row(
    queue: str,
    minute: datetime,
    *,
    completed: int,
    retried: int = 0,
    dead: int = 0,
    ready: int = 0,
    in_flight: int = 0,
    delayed: int = 0,
    dead_letters: int = 0,
    buckets: list[int] | None = None,
) -> dict[str, Any]:
    return {
        "queue": queue,
        "minute": minute,
        "completed": completed,
        "retried": retried,
        "dead": dead,
        "duration_count": sum(buckets or []),
        "duration_ms_sum": float(sum(buckets or [])) * 20,
        "duration_buckets": buckets,
        "ready": ready,
        "in_flight": in_flight,
        "delayed": delayed,
        "dead_letters": dead_letters,
    }


def insert_history(conn: Connection, rows: list[dict[str, Any]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into pgmq_jobs.queue_history (queue, minute, completed, retried, dead,"
            " duration_count, duration_ms_sum, duration_buckets, ready, in_flight, delayed,"
            " dead_letters) values (%(queue)s, %(minute)s, %(completed)s, %(retried)s, %(dead)s,"
            " %(duration_count)s, %(duration_ms_sum)s, %(duration_buckets)s, %(ready)s,"
            " %(in_flight)s, %(delayed)s, %(dead_letters)s)"
            " on conflict (queue, minute) do update set completed = excluded.completed,"
            " retried = excluded.retried, dead = excluded.dead,"
            " duration_count = excluded.duration_count,"
            " duration_ms_sum = excluded.duration_ms_sum,"
            " duration_buckets = excluded.duration_buckets, ready = excluded.ready,"
            " in_flight = excluded.in_flight, delayed = excluded.delayed,"
            " dead_letters = excluded.dead_letters",
            rows,
        )


def this_minute(conn: Connection) -> datetime:
    row = conn.execute("select date_trunc('minute', statement_timestamp())").fetchone()
    assert row is not None
    return row[0]


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright; skips only when either is absent."""
    if shutil.which(CHROMIUM) is None and not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; bootstrap does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # Console errors include CSP violations and assets that failed to load; pages that
    # answer 4xx on purpose (refused actions) log one for their own status.
    pg.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "the server responded with a status of 4" not in msg.text
            else None
        ),
    )
    pg.on("dialog", lambda dialog: dialog.accept())
    yield pg
    context.close()
    assert not errors, f"JavaScript or console errors on the page: {errors}"


# ---------------------------------------------------------------- unit


def test_templates_escape_every_value() -> None:
    env = environment()
    assert env.from_string("<p title={{ v }}>{{ v }}</p>").render(v="<b>&'\"") == (
        "<p title=&lt;b&gt;&amp;&#39;&#34;>&lt;b&gt;&amp;&#39;&#34;</p>"
    )
    # Every page template is autoescaped (chosen by file name; on by default too).
    assert callable(env.autoescape)
    names = env.list_templates()
    assert {"base.html", "queue.html", "job.html"} <= set(names)
    assert all(env.autoescape(name) for name in names)


def test_p95_matches_queue_stats_interpolation() -> None:
    assert p95(None) is None
    assert p95([0] * 25) is None
    # All in bucket 5 = [8, 16) ms: the 95th percentile is 95% of the way through it.
    assert p95([0, 0, 0, 0, 100] + [0] * 20) == pytest.approx(8 * 1.95)
    assert p95([100] + [0] * 24) == pytest.approx(0.95)
    assert p95([0] * 24 + [3]) == 2**23


def test_cli_registers_dashboard() -> None:
    args = build_parser().parse_args(["dashboard", "--dsn", "postgresql:///x"])
    assert args.host == "127.0.0.1"
    assert args.allow_actions is False
    args = build_parser().parse_args(["dashboard", "--allow-actions", "--port", "9000"])
    assert args.allow_actions is True and args.port == 9000


# ---------------------------------------------------------------- HTTP level


def test_pages_render_and_escape(fresh_db: Any, dashboard: Any) -> None:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "xss")
        make_dead(conn, "xss", {"html": XSS}, [f"boom {XSS}"])
        conn.execute("select pgmq_jobs.heartbeat(%s, array['xss'], host => %s)", ("<b>w1</b>", XSS))
    dash = dashboard(dsn)
    for path in ("/", "/queues/xss", "/workers", "/schedules", "/audit", "/queues/xss?range=24h"):
        status, body, headers = fetch(dash.url + path)
        assert status == 200, (path, body[:500])
        assert "<script>window.__xss" not in body
        assert 'onerror="window' not in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, body, _ = fetch(dash.url + "/queues/xss")
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in body
    status, body, _ = fetch(dash.url + "/workers")
    assert "&lt;b&gt;w1&lt;/b&gt;" in body
    assert fetch(dash.url + "/queues/nope")[0] == 404
    assert fetch(dash.url + "/queues/Bad%20Name")[0] == 404
    assert fetch(dash.url + "/static/dashboard.css")[0] == 200
    assert fetch(dash.url + "/static/../server.py")[0] == 404


def test_read_only_dashboard_refuses_actions(fresh_db: Any, dashboard: Any) -> None:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "ro")
        dead_id = make_dead(conn, "ro", {"n": 1}, ["nope"])
    dash = dashboard(dsn)
    assert dash.server.token is None
    status, body, _ = fetch(
        dash.url + "/queues/ro/replay",
        data=f"dead_id={dead_id}&scope=selected&token=anything".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 403 and "read-only" in body
    status, body, _ = fetch(dash.url + "/queues/ro")
    assert 'name="dead_id"' not in body and "--allow-actions" in body
    with psycopg.connect(dsn) as conn:
        assert [d.dead_id for d in client.dead_letters(conn, "ro")] == [dead_id]


def test_action_checks_token_origin_method_and_host(fresh_db: Any, dashboard: Any) -> None:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "guarded")
        dead_id = make_dead(conn, "guarded", {"n": 1}, ["nope"])
    dash = dashboard(dsn, allow_actions=True)
    token = dash.server.token
    assert token
    url = dash.url + "/queues/guarded/replay"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    good = f"dead_id={dead_id}&scope=selected&token={token}".encode()

    def still_dead() -> bool:
        with psycopg.connect(dsn) as conn:
            return [d.dead_id for d in client.dead_letters(conn, "guarded")] == [dead_id]

    # No token, a wrong token.
    assert fetch(url, data=f"dead_id={dead_id}&scope=selected".encode(), headers=form)[0] == 403
    assert fetch(url, data=good.replace(token.encode(), b"x" * len(token)), headers=form)[0] == 403
    # The right token from another origin, or a cross-site fetch.
    evil = {**form, "Origin": "http://evil.example"}
    assert fetch(url, data=good, headers=evil)[0] == 403
    assert fetch(url, data=good, headers={**form, "Sec-Fetch-Site": "cross-site"})[0] == 403
    assert fetch(url, data=good, headers={**form, "Sec-Fetch-Site": "same-site"})[0] == 403
    # GET does nothing; a rebinding Host name is not served at all.
    assert fetch(url + f"?dead_id={dead_id}&token={token}")[0] == 405
    assert fetch(url, data=good, headers={**form, "Host": "attacker.example"})[0] == 421
    assert fetch(dash.url + "/", headers={"Host": "attacker.example"})[0] == 421
    assert still_dead()
    # Same origin with the token (a browser), or no Origin at all (curl) with the header.
    own = {**form, "Origin": dash.url, "Sec-Fetch-Site": "same-origin"}
    status, _, headers = fetch(url, data=good, headers=own)
    assert status == 303 and headers["Location"].startswith("/queues/guarded?done=replay&n=1")
    with psycopg.connect(dsn) as conn:
        assert client.dead_letters(conn, "guarded") == []
        assert client.audit(conn, "guarded")[0]["action"] == "replay"


def test_cli_process_binds_loopback_and_prints_the_token(fresh_db: Any) -> None:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "cli_q")
        dead_id = make_dead(conn, "cli_q", {"n": 1}, ["nope"])
    exe = Path(sys.executable).with_name("pgmq-jobs")
    proc = subprocess.Popen(
        [str(exe), "dashboard", "--dsn", dsn, "--port", "0", "--allow-actions"],
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PGMQ_JOBS_DASHBOARD_TOKEN"},
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(3)]
        url = re.search(r"serving (http://\S+)", lines[0])
        assert url and url.group(1).startswith("http://127.0.0.1:"), lines
        token = lines[2].strip()
        assert len(token) >= 24, lines
        base = url.group(1).rstrip("/")
        assert fetch(base + "/")[0] == 200
        status, _, _ = fetch(
            base + "/queues/cli_q/replay",
            data=f"dead_id={dead_id}".encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Dashboard-Token": token,
            },
        )
        assert status == 303
        with psycopg.connect(dsn) as conn:
            assert client.dead_letters(conn, "cli_q") == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


# ---------------------------------------------------------------- browser: must-show


def test_overview_lists_queues_with_counts_alerts_and_refreshes(
    fresh_db: Any, dashboard: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "alpha")
        client.create_queue(conn, "beta", max_attempts=1)
        client.enqueue_batch(conn, "alpha", [{"n": i} for i in range(3)])
        client.enqueue_batch(conn, "alpha", [{"n": i} for i in range(2)], delay=3600)
        assert len(client.claim(conn, "alpha", 1)) == 1
        make_dead(conn, "beta", {"n": 1}, ["it broke"])
        conn.execute("select pgmq_jobs.set_alert_threshold('dead_letters', 0, queue => 'beta')")
    dash = dashboard(dsn, refresh=0.5)
    page.goto(dash.url + "/")
    expected = {
        "alpha": {"ready": "2", "in_flight": "1", "delayed": "2", "dead": "0"},
        "beta": {"ready": "0", "in_flight": "0", "delayed": "0", "dead": "1"},
    }
    for queue, cols in expected.items():
        row = page.locator(f'tr[data-queue="{queue}"]')
        expect(row).to_have_count(1)
        for col, value in cols.items():
            expect(row.locator(f'td[data-col="{col}"]')).to_have_text(value)
    # The firing alert: in the banner and on beta's row, not on alpha's.
    expect(page.locator('li.alert[data-alert="dead_letters"][data-queue="beta"]')).to_have_count(1)
    expect(page.locator('tr[data-queue="beta"]')).to_have_class(re.compile(r"\balerting\b"))
    expect(page.locator('tr[data-queue="alpha"]')).not_to_have_class(re.compile(r"alerting"))
    # Auto-refresh: a new job shows up without reloading the page.
    page.evaluate("window.__same_page = true")
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.enqueue(conn, "alpha", {"n": 99})
    expect(page.locator('tr[data-queue="alpha"] td[data-col="ready"]')).to_have_text(
        "3", timeout=10000
    )
    assert page.evaluate("window.__same_page") is True


def test_queue_charts_have_a_bar_or_point_per_history_row(
    fresh_db: Any, dashboard: Any, page: Any
) -> None:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "charted")
        now = this_minute(conn)
        ago = [2, 3, 5, 8, 13, 21, 34]  # minutes, inside the last hour
        hist = [0] * 25
        hist[4] = 10  # bucket 5: [8, 16) ms
        rows = [
            history_row(
                "charted",
                now - timedelta(minutes=m),
                completed=10 * k + 1,
                retried=k,
                dead=1 if k % 2 else 0,
                ready=100 + k,
                in_flight=k,
                buckets=hist if k < 5 else None,
            )
            for k, m in enumerate(ago)
        ]
        rows.append(history_row("charted", now - timedelta(hours=3), completed=5, ready=7))
        rows.append(history_row("charted", now - timedelta(hours=30), completed=5))  # too old
        insert_history(conn, rows)
    dash = dashboard(dsn)
    page.goto(dash.url + "/queues/charted?range=1h")
    bars = page.locator("svg#chart-throughput rect.bar")
    assert bars.count() == len(ago)
    values = sorted(float(v) for v in bars.evaluate_all("els => els.map(e => e.dataset.value)"))
    assert values == sorted(float(10 * k + 1) for k in range(len(ago)))
    assert page.locator("svg#chart-failures g.bucket").count() == len(ago)
    assert page.locator('svg#chart-depth circle.point[data-series="ready"]').count() == len(ago)
    p95_points = page.locator("svg#chart-p95 circle.point")
    assert p95_points.count() == 5
    assert float(p95_points.first.get_attribute("data-value") or 0) == pytest.approx(8 * 1.95)
    box = page.locator("svg#chart-throughput").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    # The day view: 15-minute buckets, the 3-hour-old row included, the 30-hour one not.
    page.goto(dash.url + "/queues/charted?range=24h")
    minutes = [now - timedelta(minutes=m) for m in ago] + [now - timedelta(hours=3)]
    buckets = {math.floor(t.timestamp() / 900) for t in minutes}
    assert page.locator("svg#chart-throughput rect.bar").count() == len(buckets)
    assert page.locator("svg#chart-depth circle.point[data-series='ready']").count() == len(buckets)


def test_replay_from_the_page_puts_the_job_back(fresh_db: Any, dashboard: Any, page: Any) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "mail")
        keep = make_dead(conn, "mail", {"to": "a@example.com"}, ["smtp timeout", "550 rejected"])
        target = make_dead(conn, "mail", {"to": "b@example.com", "html": XSS}, [f"bad {XSS}"])
    dash = dashboard(dsn, allow_actions=True)
    page.goto(f"{dash.url}/queues/mail#token={dash.server.token}")
    # Payloads and errors are shown as text, and nothing in them ran.
    row = page.locator(f'tr[data-dead-id="{target}"]')
    row.locator("summary").click()
    expect(row.locator("pre.payload")).to_contain_text("<script>window.__xss = 1</script>")
    expect(row.locator(".last-error")).to_contain_text("<script>")
    assert page.evaluate("typeof window.__xss") == "undefined"
    # Filtering by error text.
    page.fill("#error-filter", "SMTP")
    page.click("form.filter button[type=submit]")
    expect(page.locator("tr.dl")).to_have_count(1)
    expect(page.locator(f'tr[data-dead-id="{keep}"]')).to_have_count(1)
    page.goto(f"{dash.url}/queues/mail")
    # The token came from the start-up URL's fragment and fills the form.
    assert page.input_value('#dlq-actions input[name="token"]') == dash.server.token
    page.check(f'input[name="dead_id"][value="{target}"]')
    page.click("#replay-selected")
    expect(page.locator("#flash")).to_contain_text("Replayed 1 dead letter")
    expect(page.locator(f'tr[data-dead-id="{target}"]')).to_have_count(0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert [d.dead_id for d in client.dead_letters(conn, "mail")] == [keep]
        jobs = client.claim(conn, "mail", 10)
        assert [j.payload for j in jobs] == [{"to": "b@example.com", "html": XSS}]


def test_browser_actions_without_token_or_from_another_site_are_refused(
    fresh_db: Any, dashboard: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "locked")
        dead_id = make_dead(conn, "locked", {"n": 1}, ["nope"])
    dash = dashboard(dsn, allow_actions=True)
    token = dash.server.token
    assert token

    def dead_ids() -> list[int]:
        with psycopg.connect(dsn) as conn:
            return [d.dead_id for d in client.dead_letters(conn, "locked")]

    # The form without the token (a fresh tab has none): the browser's own check stops it;
    # force it past that and the server refuses.
    page.goto(f"{dash.url}/queues/locked")
    assert page.input_value('#dlq-actions input[name="token"]') == ""
    page.check(f'input[name="dead_id"][value="{dead_id}"]')
    page.eval_on_selector('#dlq-actions input[name="token"]', "e => e.removeAttribute('required')")
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        page.click("#replay-selected")
    assert info.value.status == 403
    expect(page.locator("main")).to_contain_text("wrong action token")
    assert dead_ids() == [dead_id]

    # Another site's page that knows the token and posts the form: refused.
    attacker_html = (
        f'<form id="f" method="post" action="{dash.url}/queues/locked/replay">'
        f'<input name="token" value="{token}"><input name="dead_id" value="{dead_id}">'
        '<input name="scope" value="selected"></form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(attacker_html)))
            self.end_headers()
            self.wfile.write(attacker_html)

        def log_message(self, *args: Any) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.request.method == "POST") as info:
            page.goto(f"http://localhost:{evil.server_address[1]}/")
        assert info.value.status == 403
        expect(page.locator("main")).to_contain_text("refused")
    finally:
        evil.shutdown()
        evil.server_close()
    assert dead_ids() == [dead_id]


def test_workers_page_shows_heartbeats_jobs_and_status(
    fresh_db: Any, dashboard: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "work")
        conn.execute(
            "select pgmq_jobs.heartbeat('w-alive', array['work'], host => 'box1', pid => 11,"
            " jobs_done => 1234, jobs_failed => 5, in_flight => 2)"
        )
        conn.execute(
            "select pgmq_jobs.heartbeat('w-stale', array['work'], host => 'box2', pid => 12,"
            " jobs_done => 7, heartbeat_interval => '1 second')"
        )
        conn.execute(
            "update pgmq_jobs.worker_heartbeats set last_seen_at = now() - interval '30 seconds'"
            " where worker_id = 'w-stale'"
        )
    dash = dashboard(dsn)
    page.goto(dash.url + "/workers")
    alive = page.locator('tr[data-worker="w-alive"]')
    expect(alive).to_contain_text("alive")
    expect(alive).to_contain_text("1,234")
    expect(alive).to_contain_text("box1")
    stale = page.locator('tr[data-worker="w-stale"]')
    expect(stale).to_contain_text("stale")
    expect(stale).to_contain_text(re.compile(r"3[0-2] s ago"))


def test_schedules_page_shows_last_and_next_run(db_dsn: str, dashboard: Any, page: Any) -> None:
    from playwright.sync_api import expect

    with psycopg.connect(db_dsn, autocommit=True) as conn:
        client.create_queue(conn, "sched_q")
        client.schedule(conn, "dash_nightly", "30 3 * * *", "sched_q", {"report": "daily"})
        view = next(s for s in client.schedules(conn) if s["name"] == "dash_nightly")
    try:
        dash = dashboard(db_dsn)
        page.goto(dash.url + "/schedules")
        row = page.locator('tr[data-schedule="dash_nightly"]')
        expect(row).to_contain_text("30 3 * * *")
        expect(row).to_contain_text("sched_q")
        expect(row).to_contain_text('{"report": "daily"}')
        expect(row).to_contain_text("active")
        expect(row).to_contain_text("never")  # no run yet
        # The next run: from the database's PL/Python support, else the same cron code here.
        expected = view["next_run_at"] or load_plain("cron").next_runs("30 3 * * *", 1)[0]
        shown = datetime.fromisoformat(row.locator("time").last.get_attribute("datetime") or "")
        assert shown == expected
        assert (shown.hour, shown.minute) == (3, 30)
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            client.unschedule(conn, "dash_nightly")
            client.drop_queue(conn, "sched_q")


# ---------------------------------------------------------------- screenshots


def seed_demo(conn: Connection, rnd: random.Random) -> None:
    """A day of plausible history, jobs in every state, workers and two firing alerts."""
    queues = {"emails": 42, "webhooks": 25, "thumbnails": 12, "reports": 2}
    for q in queues:
        client.create_queue(conn, q, max_attempts=3)
    now = this_minute(conn)
    rows = []
    for q, base in queues.items():
        for k in range(1, 24 * 60):
            t = now - timedelta(minutes=k)
            wave = 1 + 0.45 * math.sin((k + 13 * len(q)) / 180 * math.pi)
            done = max(0, round(base * wave * rnd.uniform(0.8, 1.2)))
            incident = q == "webhooks" and 18 <= k <= 34
            retried = round(done * (0.35 if incident else 0.03) * rnd.uniform(0.5, 1.5))
            dead = round(retried * (0.3 if incident else 0.05))
            centre = {"emails": 8, "webhooks": 9, "thumbnails": 11, "reports": 14}[q]
            centre += 1 if incident else 0
            hist = [0] * 25
            for _ in range(min(done, 40)):
                hist[max(0, min(24, round(rnd.gauss(centre, 1.1))))] += 1
            ready = max(0, round(base * 0.4 * wave + (60 - abs(k - 26) * 3 if incident else 0)))
            rows.append(
                history_row(
                    q,
                    t,
                    completed=done,
                    retried=retried,
                    dead=dead,
                    ready=ready,
                    in_flight=min(8, max(1, base // 6)),
                    delayed=retried * 2,
                    dead_letters=0,
                    buckets=hist,
                )
            )
    insert_history(conn, rows)
    errors = [
        ("ConnectionError: https://hooks.example.com/orders: connect timeout after 10 s", 6),
        ("HTTP 502 Bad Gateway from https://api.partner.example/v2/events", 4),
        ("ValueError: payload field 'order_id' is missing", 2),
    ]
    n = 0
    for text, times in errors:
        for _ in range(times):
            n += 1
            make_dead(
                conn,
                "webhooks",
                {"url": "https://hooks.example.com/orders", "event": "order.paid", "id": 1000 + n},
                [text.replace("timeout after 10 s", f"timeout after {t} s") for t in (5, 10, 10)],
            )
    make_dead(conn, "emails", {"to": "bounce@example.com"}, ["550 5.1.1 mailbox unavailable"])
    client.enqueue_batch(conn, "emails", [{"to": f"user{i}@example.com"} for i in range(18)])
    client.enqueue_batch(conn, "thumbnails", [{"image": f"img/{i}.jpg"} for i in range(64)])
    client.enqueue_batch(conn, "reports", [{"month": "2024-06"}], delay=3600)
    client.enqueue_batch(conn, "webhooks", [{"n": i} for i in range(9)], delay=30)
    client.claim(conn, "emails", 4, worker="worker-a")
    client.claim(conn, "thumbnails", 6, worker="worker-b")
    conn.execute("select pgmq_jobs.set_alert_threshold('dead_letters', 5, queue => 'webhooks')")
    conn.execute("select pgmq_jobs.set_alert_threshold('queue_depth', 50, queue => 'thumbnails')")
    for wid, qs, done, failed, infl in [
        ("worker-a@app-1:4121", ["emails", "webhooks"], 48210, 311, 4),
        ("worker-b@app-1:4122", ["thumbnails"], 9120, 12, 6),
        ("worker-c@app-2:7710", ["emails", "webhooks", "reports"], 45932, 287, 0),
        ("worker-d@app-3:913", ["thumbnails"], 2204, 3, 0),
    ]:
        host = wid.split("@")[1].split(":")[0]
        conn.execute(
            "select pgmq_jobs.heartbeat(%s, %s, host => %s, pid => %s, jobs_done => %s,"
            " jobs_failed => %s, in_flight => %s)",
            (wid, qs, host, int(wid.rsplit(":", 1)[1]), done, failed, infl),
        )
    conn.execute(
        "update pgmq_jobs.worker_heartbeats set last_seen_at = now() - interval '47 seconds',"
        " started_at = now() - interval '3 hours' where worker_id like 'worker-d%'"
    )
    conn.execute(
        "update pgmq_jobs.worker_heartbeats set started_at = now() - interval '26 hours'"
        " where worker_id not like 'worker-d%'"
    )


def test_screenshots(fresh_db: Any, db_dsn: str, dashboard: Any, page: Any, tmp_path: Path) -> None:
    """Every page on a realistic data set; written to docs/ with
    PGMQ_JOBS_DASHBOARD_SCREENSHOTS=1 (the README's images)."""
    out = ROOT / "docs" if os.environ.get("PGMQ_JOBS_DASHBOARD_SCREENSHOTS") else tmp_path
    out.mkdir(exist_ok=True)
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        seed_demo(conn, random.Random(9))
    dash = dashboard(dsn, allow_actions=True, refresh=5)
    shots = {
        "overview": "/",
        "queue": "/queues/webhooks?range=1h",
        "workers": "/workers",
    }
    for name, path in shots.items():
        page.goto(f"{dash.url}{path}")
        if name == "queue":
            page.locator("tr.dl details").first.click()
        target = out / f"dashboard-{name}.png"
        page.screenshot(path=str(target), full_page=True)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Schedules need pg_cron, which runs in the shared test database.
    names = ["nightly_report", "hourly_cleanup", "weekly_digest"]
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        created = [q for q in ("reports", "emails") if client.create_queue(conn, q)]
        client.schedule(conn, names[0], "30 2 * * *", "reports", {"kind": "daily"})
        client.schedule(conn, names[1], "0 * * * *", "reports", {"kind": "cleanup"})
        client.schedule(conn, names[2], "0 8 * * 1", "emails", {"template": "digest"})
    try:
        sched = dashboard(db_dsn)
        page.goto(f"{sched.url}/schedules")
        wait_for(lambda: page.locator("tr[data-schedule]").count() >= 3, what="schedules")
        target = out / "dashboard-schedules.png"
        page.screenshot(path=str(target), full_page=True)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            for name in names:
                client.unschedule(conn, name)
            for q in created:
                client.drop_queue(conn, q)
