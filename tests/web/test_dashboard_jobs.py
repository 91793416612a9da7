"""The dashboard's jobs (issue 21): the queue page lists jobs by state with cancel and run-now
actions behind the action token, and a job page shows one job's history. In real Chromium,
as tests/test_dashboard.py drives it; plus the one-line error of a busy port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_dashboard import browser, dashboard, fetch, page  # noqa: F401 (fixtures)

from pgmq_jobs import client
from support import TESTS_DIR

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_queue_page_lists_jobs_by_state_and_cancels_and_runs_them_now(
    fresh_db: Any,
    dashboard: Any,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "tasks")
        waiting = client.enqueue_batch(conn, "tasks", [{"w": i} for i in range(3)])
        delayed = client.enqueue_batch(conn, "tasks", [{"d": i} for i in range(2)], delay=3600)
    dash = dashboard(dsn, allow_actions=True)
    page.goto(f"{dash.url}/queues/tasks#token={dash.server.token}")
    rows = page.locator("table.jobs tr.job")
    expect(rows).to_have_count(3)
    assert sorted(int(x) for x in rows.evaluate_all("r => r.map(e => e.dataset.jobId)")) == waiting
    # The delayed tab lists the delayed ones.
    page.click('#job-states a[data-state="delayed"]')
    expect(rows).to_have_count(2)
    expect(page.locator(f'tr.job[data-job-id="{delayed[0]}"]')).to_have_attribute(
        "data-state", "delayed"
    )
    # Run now: the first delayed job becomes waiting, for real.
    page.check(f'input[name="job_id"][value="{delayed[0]}"]')
    page.click("#run-now-selected")
    expect(page.locator("#flash")).to_contain_text("Moved 1 job to run now")
    expect(rows).to_have_count(1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        info = client.job(conn, "tasks", delayed[0])
        assert info is not None and info.state == "waiting"
    page.click('#job-states a[data-state="waiting"]')
    expect(rows).to_have_count(4)
    # Cancel two waiting jobs: they leave the queue, recorded as cancelled and audited.
    page.check(f'input[name="job_id"][value="{waiting[0]}"]')
    page.check(f'input[name="job_id"][value="{waiting[1]}"]')
    page.click("#cancel-selected")
    expect(page.locator("#flash")).to_contain_text("Cancelled 2 jobs")
    expect(rows).to_have_count(2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for job_id in waiting[:2]:
            info = client.job(conn, "tasks", job_id)
            assert info is not None and info.state == "cancelled"
        claimed = sorted(j.job_id for j in client.claim(conn, "tasks", 10))
        assert claimed == sorted([waiting[2], delayed[0]])
        actions = [a["action"] for a in client.audit(conn, "tasks")]
        assert {"cancel", "reschedule"} <= set(actions)


def test_job_page_shows_the_whole_history_and_cancels(
    fresh_db: Any,
    dashboard: Any,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    dsn = fresh_db()
    xss = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "mail", max_attempts=5)
        job_id = client.enqueue(
            conn, "mail", {"to": "a@example.com", "html": xss}, group_key="g1", dedupe_key="k1"
        )
        for error in ("smtp timeout", f"550 {xss}"):
            conn.execute(f"update pgmq.q_mail set vt = clock_timestamp() where msg_id = {job_id}")
            [job] = client.claim(conn, "mail", 1)
            client.fail(conn, "mail", job_id, job.attempt, error, retry_after=3600)
    dash = dashboard(dsn, allow_actions=True)
    page.goto(f"{dash.url}/queues/mail#token={dash.server.token}")
    page.click('#job-states a[data-state="retrying"]')
    page.click(f'tr.job[data-job-id="{job_id}"] a.job-link')
    expect(page.locator("h1.job-title")).to_contain_text(f"Job {job_id}")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "retrying")
    expect(page.locator('dd[data-field="attempt"]')).to_have_text("2 of 5")
    expect(page.locator('dd[data-field="group_key"]')).to_have_text("g1")
    expect(page.locator('dd[data-field="dedupe_key"]')).to_have_text("k1")
    expect(page.locator("pre.payload")).to_contain_text("<script>window.__xss = 1</script>")
    errors = page.locator("ol.errors li")
    expect(errors).to_have_count(2)
    expect(errors.nth(0)).to_contain_text("attempt 1")
    expect(errors.nth(0)).to_contain_text("smtp timeout")
    expect(errors.nth(1)).to_contain_text("<script>")
    assert page.evaluate("typeof window.__xss") == "undefined"
    # Cancel from the job page: it stays on the page, now cancelled.
    page.click("#cancel-job")
    expect(page.locator("#flash")).to_contain_text("Cancelled 1 job")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#cancel-job")).to_have_count(0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert client.claim(conn, "mail", 10) == []
    # An unknown job or queue is a 404 page.
    assert fetch(f"{dash.url}/queues/mail/jobs/999999")[0] == 404
    assert fetch(f"{dash.url}/queues/nope/jobs/1")[0] == 404
    assert fetch(f"{dash.url}/queues/mail/jobs/x1")[0] == 404


def test_job_actions_need_the_token_and_a_read_only_dashboard_has_none(
    fresh_db: Any,
    dashboard: Any,  # noqa: F811
) -> None:
    dsn = fresh_db()
    with psycopg.connect(dsn, autocommit=True) as conn:
        client.create_queue(conn, "guard")
        job_id = client.enqueue(conn, "guard", {}, delay=3600)
    ro = dashboard(dsn)
    status, body, _ = fetch(f"{ro.url}/queues/guard?state=delayed")
    assert status == 200 and 'name="job_id"' not in body and "--allow-actions" in body
    assert (
        fetch(f"{ro.url}/queues/guard/cancel", data=f"job_id={job_id}".encode(), headers=FORM)[0]
        == 403
    )
    rw = dashboard(dsn, allow_actions=True)
    url = f"{rw.url}/queues/guard/cancel"
    good = f"job_id={job_id}&token={rw.server.token}".encode()
    assert fetch(url, data=f"job_id={job_id}&token=wrong".encode(), headers=FORM)[0] == 403
    assert fetch(url, data=good, headers={**FORM, "Origin": "http://evil.example"})[0] == 403
    assert fetch(url + f"?job_id={job_id}&token={rw.server.token}")[0] == 405
    assert fetch(url, data=good, headers={**FORM, "Host": "attacker.example"})[0] == 421
    with psycopg.connect(dsn, autocommit=True) as conn:
        info = client.job(conn, "guard", job_id)
        assert info is not None and info.state == "delayed"
    status, _, headers = fetch(url, data=good, headers=FORM)
    assert status == 303 and headers["Location"].startswith("/queues/guard?state=waiting")
    with psycopg.connect(dsn, autocommit=True) as conn:
        info = client.job(conn, "guard", job_id)
        assert info is not None and info.state == "cancelled"


def test_a_busy_port_is_one_error_line(db_dsn: str) -> None:
    exe = Path(sys.executable).with_name("pgmq-jobs")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "PGMQ_JOBS_INVOKER_SECRET"}
        runs = {
            "dashboard": [str(exe), "dashboard", "--dsn", db_dsn, "--port", str(port)],
            "serve": [
                str(exe),
                "serve",
                "--dsn",
                db_dsn,
                "--app",
                "apps.ledger_app:app",
                "--port",
                str(port),
            ],
        }
        for verb, argv in runs.items():
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=60,
                env={
                    **env,
                    "PGMQ_JOBS_INVOKER_SECRET": "x" * 20,
                    "PYTHONPATH": str(TESTS_DIR),
                },
                check=False,
            )
            assert done.returncode == 1, (verb, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1, (verb, done.stderr)
            assert f"cannot listen on 127.0.0.1:{port}" in lines[0], lines
            assert "Address already in use" in lines[0], lines


pytestmark = pytest.mark.timeout(180)
