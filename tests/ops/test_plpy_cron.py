"""plpy/ cron and poke: cron_check and cron_next_runs on plain Python and in the database,
fire times checked against a brute-force matcher written here, next_run_at in the schedules
view, and pg_cron -> PL/Python poke -> ``pgmq-jobs serve`` -> jobs completed, end to end."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import psycopg
import pytest
from test_plpy import IMPLS, Impl, ImplError, create_plpy_database, implementation

import pgmq_jobs.client as jobs
from apps.harness import CLI, archived_ids, create_ledger, done_ids, stop_process, worker_env
from pgmq_jobs.ops.cluster import free_port
from pgmq_jobs.ops.install import install
from pgmq_jobs.ops.plpython import load_plain, uninstall_plpython
from support import db_now, wait_for

Connection = psycopg.Connection[Any]
SECRET = "plpy-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def plpy_dsn(cluster_dsn: str, template_db: str, _session_databases: list[str]) -> str:
    """A database with the PL/Python functions installed (no pg_cron there)."""
    return create_plpy_database(cluster_dsn, template_db, _session_databases)


@pytest.fixture(scope="module", params=IMPLS)
def impl(request: pytest.FixtureRequest, plpy_dsn: str) -> Iterator[Impl]:
    """The same cases on the plain-Python functions and on the installed PL/Python ones."""
    yield from implementation(request.param, plpy_dsn)


# ---------------------------------------------------------------- cron_check

VALID = [
    "* * * * *",
    "*/15 9-17 * * mon-fri",
    "0 0 1,15 * 5",
    "0 12 * JAN-Mar,dec SUN",
    "0 0 * * 7",
    "0-59/7 0-23/3 1-31/2 1-12/5 0-7/2",
    "  30\t4  *  *  *  ",
    "0 0 30 2,4 *",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "10 seconds",
]

# (expression, words the message must contain): which field, which value.
INVALID = [
    ("", ["must not be empty"]),
    ("0 0 * *", ["expected 5 fields", "got 4"]),
    ("0 0 * * * *", ["expected 5 fields", "got 6"]),
    ("60 * * * *", ["minute value 60", "out of range 0-59"]),
    ("0 24 * * *", ["hour value 24", "out of range 0-23"]),
    ("0 0 0 * *", ["day of month value 0", "out of range 1-31"]),
    ("0 0 32 * *", ["day of month value 32"]),
    ("0 0 * 13 *", ["month value 13", "out of range 1-12"]),
    ("0 0 * * 8", ["day of week value 8", "out of range 0-7"]),
    ("0 0 * foo *", ["bad month field 'foo'", "'foo' is not a number or month name"]),
    ("0 0 * * mon-fry", ["bad day of week field 'mon-fry'", "'fry' is not a number or day name"]),
    ("0 0 * * jan", ["bad day of week field 'jan'", "'jan'"]),
    ("5/15 * * * *", ["bad minute field '5/15'", "needs a range or '*'"]),
    ("*/0 * * * *", ["step 0 out of range in minute field"]),
    ("0 */24 * * *", ["step 24 out of range in hour field"]),
    ("5-3 * * * *", ["minute field range '5-3' runs backwards"]),
    ("1,,2 * * * *", ["bad minute field '1,,2'", "empty list item"]),
    ("*-5 * * * *", ["bad minute field '*-5'", "'*' cannot start a range"]),
    ("0 0 1 * 1-2-3", ["bad day of week field '1-2-3'"]),
    ("0 0 31 2 *", ["never fires", "day of month '31'", "(feb)"]),
    ("0 0 30,31 feb *", ["never fires"]),
    ("@fortnightly", ["unknown macro '@fortnightly'"]),
    ("70 seconds", ["seconds must be between 1 and 59"]),
    ("x" * 201, ["too long"]),
]


@pytest.mark.parametrize("expr", VALID)
def test_cron_check_accepts(impl: Impl, expr: str) -> None:
    assert impl.cron_check(expr) is None


@pytest.mark.parametrize(("expr", "words"), INVALID, ids=[e[:20] for e, _ in INVALID])
def test_cron_check_names_the_field_and_the_value(impl: Impl, expr: str, words: list[str]) -> None:
    message = impl.cron_check(expr)
    assert message is not None
    for word in words:
        assert word in message, (message, word)


def test_cron_check_of_null_is_a_message(impl: Impl) -> None:
    assert impl.cron_check(None) == "cron expression must not be empty"


# ---------------------------------------------------------------- next runs, worked by hand

AFTER = datetime(2027, 11, 3, 10, 17, 23, tzinfo=UTC)  # a Wednesday; 2028 is a leap year


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


HAND_CASES = [
    ("* * * * *", 2, [utc(2027, 11, 3, 10, 18), utc(2027, 11, 3, 10, 19)]),
    (
        "*/20 10 * * *",
        3,
        [utc(2027, 11, 3, 10, 20), utc(2027, 11, 3, 10, 40), utc(2027, 11, 4, 10)],
    ),
    # Both day fields restricted: the 5th OR any Friday (Nov 5 2027 is a Friday).
    (
        "0 9 5,20 * fri",
        4,
        [utc(2027, 11, 5, 9), utc(2027, 11, 12, 9), utc(2027, 11, 19, 9), utc(2027, 11, 20, 9)],
    ),
    # Day of week '*...' (here */2: 0,2,4,6) means AND with the day of month.
    ("0 0 1-10 * */2", 2, [utc(2027, 11, 4), utc(2027, 11, 6)]),
    ("0 0 29 2 *", 2, [utc(2028, 2, 29), utc(2032, 2, 29)]),
    ("0 0 * * 7", 1, [utc(2027, 11, 7)]),
    ("@yearly", 1, [utc(2028, 1, 1)]),
    ("@weekly", 1, [utc(2027, 11, 7)]),
    ("30 12 * * wed", 1, [utc(2027, 11, 3, 12, 30)]),
    ("17 10 * * *", 1, [utc(2027, 11, 4, 10, 17)]),
    ("10 seconds", 3, []),
    ("0 0 * * *", 0, []),
]


@pytest.mark.parametrize(("expr", "n", "expected"), HAND_CASES, ids=[c[0] for c in HAND_CASES])
def test_next_runs_worked_by_hand(impl: Impl, expr: str, n: int, expected: list[datetime]) -> None:
    assert impl.next_runs(expr, n, AFTER) == expected


def test_next_runs_is_strictly_after_a_whole_minute(impl: Impl) -> None:
    at = utc(2027, 11, 3, 10, 20)
    assert impl.next_runs("*/20 * * * *", 1, at) == [utc(2027, 11, 3, 10, 40)]


def test_next_runs_refuses_a_bad_expression_or_count(impl: Impl) -> None:
    with pytest.raises(ImplError) as info:
        impl.next_runs("61 * * * *", 1, AFTER)
    assert "minute value 61" in info.value.message and info.value.sqlstate == "22023"
    with pytest.raises(ImplError) as info:
        impl.next_runs("* * * * *", -1, AFTER)
    assert "n must be an integer between 0 and" in info.value.message


# ---------------------------------------------------------------- brute force, written here

DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def brute_matcher(expr: str) -> Any:
    """A predicate on (minute, hour, day, month, weekday 0=Sunday), from crontab(5) rules."""
    text = SHORTHANDS.get(expr, expr).lower()
    spans = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]

    def number(token: str) -> int:
        if token in DAY_NAMES:
            return DAY_NAMES[token]
        return MONTHS[token] if token in MONTHS else int(token)

    def allowed(field: str, low: int, high: int) -> set[int]:
        out: set[int] = set()
        for part in field.split(","):
            every = 1
            if "/" in part:
                part, step = part.split("/")
                every = int(step)
            if part == "*":
                first, last = low, high
            elif "-" in part:
                first, last = (number(x) for x in part.split("-"))
            else:
                first = last = number(part)
            value = first
            while value <= last:
                out.add(value)
                value += every
        return out

    fields = text.split()
    sets = [allowed(f, lo, hi) for f, (lo, hi) in zip(fields, spans, strict=True)]
    minutes, hours, days, months, weekdays = sets
    if 7 in weekdays:
        weekdays.add(0)
    either = not fields[2].startswith("*") and not fields[4].startswith("*")

    def fires(minute: int, hour: int, day: int, month: int, weekday: int) -> bool:
        if minute not in minutes or hour not in hours or month not in months:
            return False
        if either:
            return day in days or weekday in weekdays
        return day in days and weekday in weekdays

    return fires


def brute_force(expr: str, start: datetime, days: int, limit: int | None = None) -> list[datetime]:
    """Every minute in (start, start + days] that ``expr`` fires, checked one by one."""
    fires = brute_matcher(expr)
    out: list[datetime] = []
    first_day = start.date()
    for offset in range(days + 1):
        day: date = first_day + timedelta(days=offset)
        weekday = (day.weekday() + 1) % 7
        for hour in range(24):
            for minute in range(60):
                if not fires(minute, hour, day.day, day.month, weekday):
                    continue
                at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                if start < at <= start + timedelta(days=days):
                    out.append(at)
                    if limit is not None and len(out) == limit:
                        return out
    return out


BRUTE_EXPRESSIONS = [
    "0 0 * * *",
    "*/30 9-17 * * mon-fri",
    "15,45 */6 * * *",
    "0 12 1,15 * *",
    "0 8 13 * fri",
    "30 2 1-7 * mon",
    "0 0 */2 * 0",
    "0 0 29 2 *",
    "5 4 * jan,jul sun",
    "0 9-17/4 * * 1-5",
    "@weekly",
    "@monthly",
    "@hourly",
    "0 0 31 * *",
    "0 22 * * 7",
    "0 0 1 jan-mar/2 *",
    "59 23 28-31 2 sat,sun",
    "7-9,40-50/5 3 10-12 * 5-7",
]
WINDOW_DAYS = 400


@cache
def brute(expr: str) -> tuple[datetime, ...]:
    return tuple(brute_force(expr, AFTER, WINDOW_DAYS))


@pytest.mark.parametrize("expr", BRUTE_EXPRESSIONS)
def test_next_runs_match_a_brute_force_matcher_over_400_days(impl: Impl, expr: str) -> None:
    expected = list(brute(expr))
    assert expected, f"{expr} should fire within {WINDOW_DAYS} days"
    runs = impl.next_runs(expr, len(expected) + 1, AFTER)
    assert runs[: len(expected)] == expected
    assert len(runs) == len(expected) + 1
    assert runs[-1] > AFTER + timedelta(days=WINDOW_DAYS)


def test_the_brute_force_matcher_knows_the_day_rule() -> None:
    # The 13th OR a Friday (both restricted), but an odd day AND a Sunday ('*/2' is a '*').
    either, both = brute_matcher("0 8 13 * fri"), brute_matcher("0 0 */2 * 0")
    assert either(0, 8, 13, 1, 3) and either(0, 8, 14, 1, 5) and not either(0, 8, 14, 1, 4)
    assert both(0, 0, 3, 1, 0) and not both(0, 0, 4, 1, 0) and not both(0, 0, 3, 1, 1)


# ---------------------------------------------------------------- the shared db (pg_cron)


@pytest.fixture(scope="module")
def shared_plpy(db_dsn: str) -> Iterator[str]:
    """PL/Python support in the shared test database (where pg_cron runs), removed after."""
    report = install(db_dsn, with_plpython=True)
    assert report.plpython is True and report.pg_cron, report.summary()
    try:
        yield db_dsn
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            uninstall_plpython(conn)


def test_schedules_view_shows_next_run_at_from_plpython(
    shared_plpy: str, conn: Connection, queue_name: str
) -> None:
    jobs.create_queue(conn, queue_name)
    expressions = [e for e in BRUTE_EXPRESSIONS if e != "0 0 29 2 *"]
    names = {f"{queue_name}_{i}": expr for i, expr in enumerate(expressions)}
    try:
        for name, expr in names.items():
            conn.execute("select pgmq_jobs.schedule(%s, %s, %s)", (name, expr, queue_name))
        before = db_now(conn)
        rows = dict(
            conn.execute(
                "select name, next_run_at from pgmq_jobs.schedules where name = any(%s)",
                (list(names),),
            ).fetchall()
        )
        after = db_now(conn)
        assert set(rows) == set(names)
        for name, expr in names.items():
            candidates = {brute_force(expr, t, WINDOW_DAYS, limit=1)[0] for t in (before, after)}
            assert rows[name] in candidates, (expr, rows[name], candidates)
    finally:
        for name in names:
            conn.execute("select pgmq_jobs.unschedule(%s)", (name,))
        jobs.drop_queue(conn, queue_name)


# ---------------------------------------------------------------- the poke


class Invoker:
    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue


def healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def invoker(shared_plpy: str) -> Iterator[Invoker]:
    """``pgmq-jobs serve`` with the ledger app for one fresh queue, on a loopback port."""
    create_ledger(shared_plpy)
    queue = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(shared_plpy, autocommit=True) as conn:
        jobs.create_queue(conn, queue, max_attempts=1)
    port = free_port()
    argv = [CLI, "serve", "--dsn", shared_plpy, "--app", "apps.ledger_app:app"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--secret-env", "INVOKER_SECRET"],
        env=worker_env(shared_plpy, [queue], INVOKER_SECRET=SECRET),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or proc.poll() is not None, timeout=15, what="serve")
        assert proc.poll() is None, proc.communicate()[1]
        yield Invoker(url, queue)
    finally:
        stop_process(proc)


def test_invoke_from_sql_drains_the_queue(invoker: Invoker, conn: Connection) -> None:
    ids = jobs.enqueue_batch(conn, invoker.queue, [{"i": i} for i in range(3)])
    [(summary,)] = conn.execute(
        "select pgmq_jobs_plpy.invoke(%s, %s, %s, 20, 100)", (invoker.url, invoker.queue, SECRET)
    ).fetchall()
    assert summary["http_status"] == 200 and summary["queue"] == invoker.queue
    assert (summary["claimed"], summary["completed"]) == (3, 3)
    assert set(ids) <= done_ids(conn, invoker.queue)


def test_invoke_errors_are_clear_and_never_show_the_secret(
    invoker: Invoker, conn: Connection
) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    with pytest.raises(psycopg.errors.ConnectionException) as info:
        conn.execute(
            "select pgmq_jobs_plpy.invoke(%s, %s, %s)", (invoker.url, invoker.queue, wrong)
        )
    assert f"POST {invoker.url}/invoke answered 401" in str(info.value)
    assert wrong not in str(info.value)
    with pytest.raises(psycopg.errors.ConnectionException, match="answered 400: unknown queue"):
        conn.execute("select pgmq_jobs_plpy.invoke(%s, 'nope', %s)", (invoker.url, SECRET))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="http"):
        conn.execute("select pgmq_jobs_plpy.invoke('file:///etc/passwd', 'q', %s)", (SECRET,))
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(psycopg.errors.ConnectionException, match="failed"):
        conn.execute("select pgmq_jobs_plpy.invoke(%s, 'q', %s, 5, 1, 5)", (dead, SECRET))


class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("Location", "http://127.0.0.1:9/steal")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_poke_does_not_follow_redirects() -> None:
    poke = load_plain("poke")
    server = HTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(poke.PokeError, match="answered 307"):
            poke.invoke(url, "q", SECRET, timeout_seconds=5)
    finally:
        server.shutdown()
        server.server_close()


def test_poke_request_shape() -> None:
    poke = load_plain("poke")
    request = poke.build_request("http://h:1", "emails", SECRET, 20, None)
    assert request.full_url == "http://h:1/invoke" and request.get_method() == "POST"
    assert request.get_header("Authorization") == f"Bearer {SECRET}"
    assert json.loads(request.data) == {"queue": "emails", "max_seconds": 20}
    assert poke.invoke_url("https://x.example/functions/v1/run") == (
        "https://x.example/functions/v1/run"
    )
    for bad in ("ftp://h/x", "http://", "", "/invoke"):
        with pytest.raises(ValueError, match="http"):
            poke.invoke_url(bad)


def test_schedule_invoke_refuses_bad_input(invoker: Invoker, conn: Connection) -> None:
    conn.execute(
        "select pgmq_jobs_plpy.set_invoker_secret('plpy_refuse', %s, %s)", (invoker.url, SECRET)
    )
    cases = [
        (("j", "61 * * * *", invoker.url, invoker.queue, "plpy_refuse"), "minute value 61"),
        (("j", "* * * * *", invoker.url, invoker.queue, "nope"), "no invoker secret named 'nope'"),
        (("j", "* * * * *", "http://127.0.0.1:1", invoker.queue, "plpy_refuse"), "is bound to"),
        (("j", "* * * * *", invoker.url, "no_such_queue", "plpy_refuse"), "no_such_queue"),
    ]
    for args, words in cases:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("select pgmq_jobs_plpy.schedule_invoke(%s, %s, %s, %s, %s)", args)
        assert words in str(info.value), (args, str(info.value))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may only be sent to"):
        conn.execute(
            "select pgmq_jobs_plpy.invoke_named('http://evil.example', %s, 'plpy_refuse')",
            (invoker.queue,),
        )


@pytest.mark.timeout(240)
def test_pg_cron_pokes_the_invoker_through_plpython_and_the_jobs_complete(
    invoker: Invoker, conn: Connection
) -> None:
    ids = jobs.enqueue_batch(conn, invoker.queue, [{"cron": i} for i in range(6)])
    conn.execute(
        "select pgmq_jobs_plpy.set_invoker_secret('plpy_e2e', %s, %s)", (invoker.url, SECRET)
    )
    job_name = f"test_poke_{uuid.uuid4().hex[:8]}"
    cron_name = f"pgmq_jobs_invoke_{job_name}"  # the invoke schedules' own prefix
    conn.execute(
        "select pgmq_jobs_plpy.schedule_invoke(%s, '* * * * *', %s, %s, 'plpy_e2e', 20, 100)",
        (job_name, invoker.url, invoker.queue),
    )
    try:
        [(command,)] = conn.execute(
            "select command from cron.job where jobname = %s", (cron_name,)
        ).fetchall()
        assert "pgmq_jobs_plpy.invoke_named(" in command and SECRET not in command
        # pg_cron 1.4 ticks on the minute: at most ~60 s to the next one, then the drain.
        wait_for(
            lambda: set(ids) <= done_ids(conn, invoker.queue),
            timeout=80,
            interval=0.5,
            what="jobs completed through pg_cron -> invoke_named -> serve",
        )
        assert set(ids) <= archived_ids(conn, invoker.queue)
        status, message = wait_for(
            lambda: conn.execute(
                "select d.status, d.return_message from cron.job_run_details d"
                " join cron.job j using (jobid) where j.jobname = %s"
                " and d.status in ('succeeded', 'failed') order by d.runid limit 1",
                (cron_name,),
            ).fetchone(),
            timeout=30,
            interval=0.2,
            what="the cron run's outcome",
        )
        assert status == "succeeded", message
    finally:
        removed = conn.execute(
            "select pgmq_jobs_plpy.unschedule_invoke(%s)", (job_name,)
        ).fetchone()
    assert removed == (True,)
    assert conn.execute(
        "select count(*) from cron.job where jobname = %s", (cron_name,)
    ).fetchone() == (0,)


def test_cron_next_runs_ignores_the_session_timezone_and_datestyle(plpy_dsn: str) -> None:
    after = utc(2027, 11, 3, 23, 59, 30)
    # Epochs back, since psycopg cannot read timestamptz text in DateStyle 'SQL, DMY'.
    query = (
        "select extract(epoch from t)::float8"
        " from pgmq_jobs_plpy.cron_next_runs('0 0 * * *', 2, %s) as t"
    )
    with psycopg.connect(plpy_dsn, autocommit=True) as conn:
        conn.execute("set timezone = 'Pacific/Kiritimati'")
        conn.execute("set datestyle = 'SQL, DMY'")
        epochs = [r[0] for r in conn.execute(query, (after,))]
    assert epochs == [utc(2027, 11, 4).timestamp(), utc(2027, 11, 5).timestamp()]
