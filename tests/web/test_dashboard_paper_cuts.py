"""The dashboard's paper cuts (issue 20, item 8) and its p95 of both histogram layouts.

Dead letters newest first (or oldest first), errors grouped by message with counts,
tracebacks without the worker's own frames, audit times on one line, cards whose contents
never wrap: in real Chromium, as tests/test_dashboard.py drives it. The p95 of the charts reads
0.1.0's 25-bucket histograms and 0.2.0's 35-bucket ones as ``queue_stats`` does.
"""

from __future__ import annotations

import linecache
import traceback
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from test_dashboard import (  # noqa: F401 (fixtures)
    browser,
    dashboard,
    history_row,
    insert_history,
    make_dead,
    page,
    this_minute,
)

from pgmq_jobs import Permanent, Registry, client, testing
from pgmq_jobs.web.dashboard.errors import group, is_worker_frame, message, trim
from pgmq_jobs.web.dashboard.svg import p95

Connection = psycopg.Connection[Any]


# ---------------------------------------------------------------- p95 (unit and SQL)


def histogram(conn: Connection, durations_ms: list[float]) -> list[int]:
    """The 35-bucket histogram that ``complete`` records for these durations."""
    row = conn.execute(
        "select buckets from pgmq_jobs._duration_histogram(%s::double precision[])",
        (durations_ms,),
    ).fetchone()
    assert row is not None
    return list(row[0])


def test_p95_reads_the_35_bucket_layout() -> None:
    # 100 handlers of 0.055 ms: bucket 32 is [2^-5, 2^-4) ms = [0.03125, 0.0625).
    buckets = [0] * 35
    buckets[31] = 100
    assert p95(buckets) == pytest.approx(0.03125 * 1.95)
    # Bucket 1 is [0.5, 1) ms now; 26 is [0, 2^-10) ms.
    buckets = [0] * 35
    buckets[0] = 100
    assert p95(buckets) == pytest.approx(0.5 + 0.5 * 0.95)
    buckets = [0] * 35
    buckets[25] = 100
    assert p95(buckets) == pytest.approx(0.95 * 2**-10)
    # Order of durations: 26..35 below 1..25. 95 jobs under 1 µs and 5 of 8..16 ms: the 95th
    # percentile is the top of bucket 26, not something in bucket 5.
    buckets = [0] * 35
    buckets[25] = 95
    buckets[4] = 5
    assert p95(buckets) == pytest.approx(2**-10)
    buckets[4] = 6
    assert 8 <= (p95(buckets) or 0) < 16
    # Beyond 2^23 ms the lower bound is reported, as before.
    assert p95([0] * 24 + [3] + [0] * 10) == 2**23


def test_p95_still_reads_0_1_0_rows() -> None:
    assert p95(None) is None
    assert p95([0] * 25) is None
    assert p95([0] * 35) is None
    assert p95([100] + [0] * 24) == pytest.approx(0.95)  # bucket 1 was [0, 1) ms
    assert p95([0, 0, 0, 0, 100] + [0] * 20) == pytest.approx(8 * 1.95)
    assert p95([0] * 24 + [3]) == 2**23


def test_p95_of_known_durations_matches_queue_stats(conn: Connection, queue_name: str) -> None:
    """Histograms made by the database from known durations: the dashboard's p95 reads what
    queue_stats reads, for 0.2.0's layout, 0.1.0's, and a mix of both."""
    client.create_queue(conn, queue_name)
    fast = histogram(conn, [0.055] * 100)
    assert len(fast) == 35
    value = p95(fast)
    assert value is not None and value < 0.1  # a 0.055 ms handler, well under 1 ms
    assert value == pytest.approx(0.0609375)
    slow = histogram(conn, [3.0] * 40 + [12.0] * 60)  # [2, 4) and [8, 16) ms
    assert 8 <= (p95(slow) or 0) < 16
    minute = this_minute(conn)
    cases = [
        [fast],
        [slow],
        [[100] + [0] * 24],  # 0.1.0's: everything in [0, 1) ms
        [fast, [0, 0, 0, 0, 7] + [0] * 20],  # a 0.1.0 row beside a 0.2.0 one
    ]
    for rows in cases:
        conn.execute("delete from pgmq_jobs.queue_history where queue = %s", (queue_name,))
        insert_history(
            conn,
            [
                history_row(queue_name, minute - timedelta(minutes=k + 1), completed=1, buckets=b)
                for k, b in enumerate(rows)
            ],
        )
        summed = [0] * max(len(b) for b in rows)
        for b in rows:
            for j, n in enumerate(b):
                summed[j] += n
        stat = client.queue_stat(conn, queue_name)
        assert stat is not None
        assert p95(summed) == pytest.approx(stat["p95_processing_ms_5m"]), rows


# ---------------------------------------------------------------- tracebacks (unit)


def traceback_through(filenames: list[str], exc: BaseException) -> str:
    """A real ``traceback.format_exception`` text whose frames (source lines included) run
    through functions compiled under ``filenames`` (outermost first), the last one raising
    ``exc``."""
    namespace: dict[str, Any] = {"exc": exc}
    for k, filename in reversed(list(enumerate(filenames))):
        body = "raise exc" if k == len(filenames) - 1 else f"f{k + 1}()"
        source = f"def f{k}():\n    {body}\n"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)
    try:
        namespace["f0"]()
    except BaseException as caught:
        # From f0 on (not this helper's frame).
        tb = caught.__traceback__.tb_next if caught.__traceback__ else None
        return "".join(traceback.format_exception(type(caught), caught, tb)).rstrip()
    raise AssertionError("did not raise")


SITE = "/srv/app/.venv/lib/python3.11/site-packages"


def test_trim_drops_the_worker_frames_and_keeps_the_handlers() -> None:
    text = traceback_through(
        [
            f"{SITE}/pgmq_jobs/worker/executor.py",
            f"{SITE}/pgmq_jobs/tasks.py",
            "/srv/app/myapp/emails.py",
            f"{SITE}/smtplib.py",
        ],
        ConnectionRefusedError("[Errno 111] Connection refused"),
    )
    assert text.count('  File "') == 4
    trimmed = trim(text)
    assert trimmed.hidden == 2
    assert "pgmq_jobs/worker" not in trimmed.text and "pgmq_jobs/tasks.py" not in trimmed.text
    assert '  File "/srv/app/myapp/emails.py", line 2, in f2\n    f3()' in trimmed.text
    assert f'  File "{SITE}/smtplib.py", line 2, in f3\n    raise exc' in trimmed.text
    assert trimmed.text.startswith("Traceback (most recent call last):\n")
    assert trimmed.text.endswith("ConnectionRefusedError: [Errno 111] Connection refused")
    assert message(text) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_trim_knows_the_worker_modules_of_both_releases_and_only_those() -> None:
    for path in (
        f"{SITE}/pgmq_jobs/worker/executor.py",
        f"{SITE}/pgmq_jobs/worker.py",  # 0.1.0's single-file worker
        "/work/runner/pgmq_jobs/async_runner.py",
        "/work/runner/pgmq_jobs/tasks.py",
        "/work/runner/pgmq_jobs/registry.py",
        "/work/runner/pgmq_jobs/testing.py",
        "C:\\app\\pgmq_jobs\\worker\\executor.py",
    ):
        assert is_worker_frame(path), path
    for path in (
        f"{SITE}/pgmq_jobs/api/sync.py",  # a handler that enqueues: its call stays
        "/srv/app/myapp/worker.py",
        "/srv/app/myapp/tasks.py",
        f"{SITE}/psycopg/cursor.py",
        "<string>",
    ):
        assert not is_worker_frame(path), path


def test_trim_leaves_other_texts_and_chained_causes_alone() -> None:
    for text in (None, "", "TimeoutError: handler exceeded its 2 s timeout", "boom"):
        assert trim(text).text == (text or "") and trim(text).hidden == 0
    text = traceback_through(
        [f"{SITE}/pgmq_jobs/worker/executor.py", "/srv/app/h.py"], ValueError("bad\nrow 7")
    )
    trimmed = trim(text)
    assert trimmed.hidden == 1 and "/srv/app/h.py" in trimmed.text
    assert message(text) == "ValueError: bad\nrow 7"
    chained = (
        traceback_through(["/srv/app/a.py"], KeyError("k"))
        + "\n\nThe above exception was the direct cause of the following exception:\n\n"
        + (traceback_through([f"{SITE}/pgmq_jobs/tasks.py", "/srv/app/b.py"], ValueError("v")))
    )
    trimmed = trim(chained)
    assert trimmed.hidden == 1
    assert "/srv/app/a.py" in trimmed.text and "/srv/app/b.py" in trimmed.text
    assert "direct cause" in trimmed.text
    assert message(chained) == "ValueError: v"


def test_group_counts_last_errors_by_message_most_frequent_first() -> None:
    class Dead:
        def __init__(self, job_id: int, error: str, at: str) -> None:
            self.job_id = self.original_job_id = job_id
            self.last_error = error
            self.errors = [{"error": error, "at": at}]
            self.died_at = None

    a = traceback_through(["/srv/app/h.py"], ValueError("no such user"))
    b = traceback_through(["/srv/app/other.py"], ValueError("no such user"))  # same message
    dead = [
        Dead(1, a, "2026-12-01T10:00:00+00:00"),
        Dead(2, "KeyError: 'x'", "2026-12-01T12:00:00+00:00"),
        Dead(3, b, "2026-12-01T11:00:00+00:00"),
    ]
    failing = [{"job_id": 9, "last_error": a, "errors": [{"at": "2026-12-01T09:00:00+00:00"}]}]
    groups = group(dead, failing)
    assert [(g.message, g.dead, g.failing, g.count) for g in groups] == [
        ("ValueError: no such user", 2, 1, 3),
        ("KeyError: 'x'", 1, 0, 1),
    ]
    assert groups[0].example == b  # the newest of the group
    assert groups[0].job_ids == [1, 3, 9]
    assert group([], []) == []


# ---------------------------------------------------------------- in Chromium


def test_dead_letters_newest_first_with_a_toggle_to_oldest_first(
    fresh_db: Any,
    dashboard: Any,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "mail")
        ids = [make_dead(conn, "mail", {"n": i}, [f"boom {i % 2}"]) for i in range(4)]
        # The SQL API: oldest first as in 0.1.0 (positional calls too), newest on request.
        assert [d.dead_id for d in client.dead_letters(conn, "mail", 3)] == ids[:3]
        newest = client.dead_letters(conn, "mail", 3, newest_first=True)
        assert [d.dead_id for d in newest] == ids[::-1][:3]
        rows = conn.execute("select dead_id from pgmq_jobs.dead_letters('mail', 2)").fetchall()
        assert [r[0] for r in rows] == ids[:2]
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="newest_first"):
            conn.execute("select * from pgmq_jobs.dead_letters('mail', newest_first => null)")
    dash = dashboard(dsn)
    page.goto(f"{dash.url}/queues/mail")
    rows = page.locator("table.dlq tr.dl")
    expect(rows).to_have_count(4)

    def shown() -> list[int]:
        return [int(x) for x in rows.evaluate_all("r => r.map(e => e.dataset.deadId)")]

    assert shown() == ids[::-1]
    expect(page.locator("#dlq-summary")).to_contain_text("newest first")
    expect(page.locator('#dlq-order a[data-order="newest"]')).to_have_class("active")
    page.click('#dlq-order a[data-order="oldest"]')
    expect(page.locator("#dlq-summary")).to_contain_text("oldest first")
    assert shown() == ids
    # The order survives a filter, and the limit takes the oldest ones in this order.
    page.fill("#error-filter", "boom 1")
    page.press("#error-filter", "Enter")
    expect(page.locator("#dlq-summary")).to_contain_text("2 matching")
    expect(page.locator("#dlq-summary")).to_contain_text("oldest first")
    assert shown() == [ids[1], ids[3]]
    page.click('#dlq-order a[data-order="newest"]')
    expect(page.locator("#dlq-summary")).to_contain_text("newest first")
    assert shown() == [ids[3], ids[1]]
    # A limit takes the first ones of the chosen order.
    page.goto(f"{dash.url}/queues/mail?order=oldest&limit=25")
    assert shown() == ids
    # The recent failures panel lists the newest first too.
    recent = page.locator("#recent-failures tbody tr a")
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs = [d.original_job_id or d.job_id for d in client.dead_letters(conn, "mail", 100)]
    assert recent.all_inner_texts() == [f"job {j}" for j in reversed(jobs)]


def failing_app() -> Registry:
    app = Registry()

    @app.task("orders")
    def charge(order: int) -> None:
        if order % 3 == 0:
            raise LookupError(f"no card on file for customer {order % 2}")
        if order % 3 == 1:
            raise Permanent("card declined")
        raise ValueError("amount must be positive")

    return app


def test_errors_grouped_by_message_and_tracebacks_without_worker_frames(
    fresh_db: Any,
    dashboard: Any,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    """Real tracebacks, recorded by testing.drain (the inline runner): the queue page groups
    the last errors of dead letters and failing jobs by message with counts, most frequent
    first, and shows tracebacks without the runner's frames but with the handler's."""
    from playwright.sync_api import expect

    dsn = fresh_db()
    app = failing_app()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "orders", max_attempts=1)
        # 0, 3 -> LookupError "... customer 0" / "... customer 1"; 1, 4, 7, 10 -> Permanent;
        # 2, 5 -> ValueError. max_attempts 1: every failure is a dead letter.
        orders = (0, 1, 2, 3, 4, 5, 7, 10)
        client.enqueue_batch(conn, "orders", [{"order": n} for n in orders])
        summary = testing.drain(conn, app, "orders")
        assert summary.dead == 8
        # One job still retrying (failing, not dead) with the ValueError.
        client.configure_queue(
            conn, "orders", max_attempts=5, retry_base="1 hour", retry_max="2 hours"
        )
        client.enqueue(conn, "orders", {"order": 8})
        summary = testing.drain(conn, app, "orders")
        assert summary.failed == 1 and summary.dead == 0
        letters = client.dead_letters(conn, "orders", 100)
        text = letters[0].last_error or ""
        assert "pgmq_jobs/testing.py" in text and "pgmq_jobs/tasks.py" in text
        assert "in charge" in text
    dash = dashboard(dsn)
    page.goto(f"{dash.url}/queues/orders")
    groups = page.locator("#error-groups tr.error-group")
    expect(groups).to_have_count(4)
    got = [
        (
            r.locator("pre.group-message").inner_text(),
            int(r.locator('[data-col="count"]').inner_text()),
            int(r.locator('[data-col="dead"]').inner_text()),
            int(r.locator('[data-col="failing"]').inner_text()),
        )
        for r in groups.all()
    ]
    assert got[:2] == [
        ("pgmq_jobs.outcomes.Permanent: card declined", 4, 4, 0),
        ("ValueError: amount must be positive", 3, 2, 1),
    ]
    assert sorted(got[2:]) == [
        ("LookupError: no card on file for customer 0", 1, 1, 0),
        ("LookupError: no card on file for customer 1", 1, 1, 0),
    ]
    # Tracebacks: the handler's frame stays, the runner's frames are gone and counted.
    first = page.locator("table.dlq tr.dl").first
    last = first.locator(".last-error")
    expect(last).to_contain_text("in charge")
    expect(last).to_contain_text("pgmq_jobs.outcomes.Permanent: card declined")
    assert last.inner_text().startswith("Traceback (most recent call last):")
    assert "pgmq_jobs/testing.py" not in last.inner_text()
    assert "pgmq_jobs/tasks.py" not in last.inner_text()
    expect(first.locator(".hidden-frames").first).to_contain_text(
        "frames of the pgmq-jobs worker hidden"
    )
    # A group's link filters the dead letters by its message.
    groups.nth(1).locator("a.group-filter").click()
    expect(page.locator("#dlq-summary")).to_contain_text("2 matching")
    expect(page.locator("table.dlq tr.dl").first.locator(".last-error")).to_contain_text(
        "ValueError: amount must be positive"
    )
    # The job page's error history too.
    with psycopg.connect(dsn, autocommit=True) as conn:
        failing = client.failing_jobs(conn, "orders")
    page.goto(f"{dash.url}/queues/orders/jobs/{failing[0]['job_id']}")
    error = page.locator("ol.errors li pre.error-text")
    expect(error).to_contain_text("in charge")
    assert "pgmq_jobs/" not in error.inner_text()
    expect(page.locator("ol.errors li .hidden-frames")).to_be_visible()


ONE_LINE = """els => els.map(e => {
    const line = parseFloat(getComputedStyle(e).lineHeight);
    const range = document.createRange();
    range.selectNodeContents(e);
    const tops = Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => r.top);
    tops.sort((a, b) => a - b);
    let lines = tops.length ? 1 : 0;
    for (let k = 1; k < tops.length; k++) if (tops[k] - tops[k - 1] > line / 2) lines++;
    return {
        text: e.innerText,
        lines: lines,
        clipped: e.scrollWidth > e.clientWidth + 1,
    };
})"""
"""Each element's text: on how many lines it is laid out (the line boxes of its contents),
and whether it is cut off."""


def assert_one_line(pg: Any, selector: str, expected: int) -> None:
    found = pg.locator(selector).evaluate_all(ONE_LINE)
    assert len(found) >= expected, (selector, found)
    for f in found:
        assert f["lines"] == 1, (selector, f)
        assert not f["clipped"], (selector, f)


def test_audit_times_and_cards_stay_on_one_line(
    fresh_db: Any,
    dashboard: Any,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "audited")
        for k in range(3):
            client.configure_queue(conn, "audited", max_attempts=3 + k, retry_max="17 min")
        # Audit rows of a while ago, so their times read "1 h 7 min ago"; and a job waiting
        # for a day and more, so the "oldest ready" card reads "1 d 23 h".
        # (The log is append-only: its trigger is bypassed, in this session only.)
        conn.execute("set session_replication_role = replica")
        conn.execute("update pgmq_jobs.audit_log set at = at - interval '67 minutes 5 seconds'")
        conn.execute("reset session_replication_role")
        make_dead(conn, "audited", {"n": 2}, ["first", "second"])
        job_id = client.enqueue(conn, "audited", {"n": 1})
        conn.execute(
            "update pgmq.q_audited set enqueued_at = enqueued_at - interval '47 hours',"
            " vt = vt - interval '47 hours' where msg_id = %s",
            (job_id,),
        )
    dash = dashboard(dsn)
    for width in (1280, 700, 380):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{dash.url}/audit")
        expect(page.locator("#audit td.when").first).to_contain_text("ago")
        assert_one_line(page, "#audit td.when time", 4)
        assert_one_line(page, "#audit td.when", 4)
        page.goto(f"{dash.url}/queues/audited")
        expect(page.locator('#cards .card-value:text("1 d 23 h")')).to_have_count(1)
        assert_one_line(page, "#cards .card-value", 10)
        assert_one_line(page, "#cards .card-label", 10)
        cards = page.locator("#cards .card").evaluate_all(ONE_LINE)
        assert cards and not any(c["clipped"] for c in cards), cards
        assert_one_line(page, "table.dlq td.when", 1)
        page.goto(f"{dash.url}/")
        assert_one_line(page, "#cards .card-value", 8)
        assert_one_line(page, "#cards .card-label", 8)
