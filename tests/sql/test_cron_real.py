"""Real pg_cron: wait (bounded) for its next minute tick and see the sweep and a SQL
handler's drain act, with nobody calling them. Every other test calls the scheduled
commands directly; this one proves pg_cron really runs them."""

from __future__ import annotations

from typing import Any

import psycopg
from test_process import HANDLERS

import pgmq_jobs.client as jobs
from support import queue_rows, wait_for

Connection = psycopg.Connection[Any]


def test_pg_cron_runs_the_sweep_and_drains_a_sql_handled_queue(
    conn: Connection, queue_name: str
) -> None:
    conn.execute(HANDLERS)
    stalled_q, handled_q = f"{queue_name}_s", f"{queue_name}_h"
    jobs.create_queue(conn, stalled_q, max_attempts=1, visibility_timeout=0.05)
    stalled_id = jobs.enqueue(conn, stalled_q, {"worker": "dies"})
    assert [j.job_id for j in jobs.claim(conn, stalled_q)] == [stalled_id]
    jobs.create_queue(conn, handled_q, handler="app.record")
    handled_id = jobs.enqueue(conn, handled_q, {"by": "pg_cron"})

    # pg_cron fires at the next minute boundary: at most ~60 s from now.
    [letter] = wait_for(
        lambda: jobs.dead_letters(conn, stalled_q), timeout=90, interval=0.5, what="sweep by cron"
    )
    assert (letter.job_id, letter.reason) == (stalled_id, "expired")
    wait_for(
        lambda: queue_rows(conn, handled_q, "a"), timeout=90, interval=0.5, what="drain by cron"
    )
    assert [r["msg_id"] for r in queue_rows(conn, handled_q, "a")] == [handled_id]
    runs = conn.execute(
        "select j.jobname, d.status from cron.job_run_details d join cron.job j using (jobid)"
        " where j.jobname in ('pgmq_jobs_sweep', %s) and d.status = 'succeeded'",
        (f"pgmq_jobs_process_{handled_q}",),
    ).fetchall()
    assert {r[0] for r in runs} >= {"pgmq_jobs_sweep"}
    jobs.drop_queue(conn, handled_q)
