"""Classify every acknowledged enqueue of a fault scenario from the database's own records.

After a scenario (and a drain), each job whose enqueue was acknowledged (committed and its
id returned to the producer) is exactly one of:

- ``completed``: in the queue's archive (``pgmq.a_<queue>``);
- ``dead``: in the dead-letter queue (``pgmq.q_<queue>_dlq``, by ``job_id``);
- ``pending``: still in the queue (a drain that did not finish);
- ``lost``: none of these.

Independently, the ledger (``fault_ledger``, written by ``apps.fault_app``) says how often
each job's handler ran. An execution is *redundant* when it is neither the first nor the
retry that follows a planned failure (the handler recorded ``fail`` or ``kill``); a job with
a redundant execution is ``duplicated``. Duplicates are allowed only for jobs in flight at a
fault (claimed and not yet acknowledged), which the scenario measures and passes in.

Violations: a lost or pending job; a job both archived and dead-lettered, or dead-lettered
more than once; a duplicated job that was not in flight at a fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[Any]

COLUMNS = ("jobs", "completed", "dead", "lost", "duplicated", "in-flight-at-fault")


@dataclass
class LedgerReport:
    """The checker's verdict on one scenario."""

    scenario: str
    jobs: int = 0
    completed: set[int] = field(default_factory=set)
    dead: set[int] = field(default_factory=set)
    pending: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    duplicated: set[int] = field(default_factory=set)
    in_flight_at_fault: set[int] = field(default_factory=set)
    both: set[int] = field(default_factory=set)
    dead_more_than_once: set[int] = field(default_factory=set)
    executions: Counter[int] = field(default_factory=Counter)
    unacknowledged_extras: int = 0

    def row(self) -> dict[str, int]:
        return {
            "jobs": self.jobs,
            "completed": len(self.completed),
            "dead": len(self.dead),
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "in-flight-at-fault": len(self.in_flight_at_fault),
        }

    def table(self) -> str:
        """A one-scenario table, as printed after each scenario."""
        return format_table([self])

    def violations(self) -> list[str]:
        """Broken invariants, each a sentence naming the jobs (empty when all hold)."""
        out: list[str] = []
        if self.lost:
            out.append(f"lost jobs: {_ids(self.lost)}")
        if self.pending:
            out.append(f"jobs still queued after the drain: {_ids(self.pending)}")
        if self.both:
            out.append(f"jobs both completed and dead-lettered: {_ids(self.both)}")
        if self.dead_more_than_once:
            out.append(f"jobs dead-lettered more than once: {_ids(self.dead_more_than_once)}")
        unexplained = self.duplicated - self.in_flight_at_fault
        if unexplained:
            out.append(f"duplicated jobs that were not in flight at a fault: {_ids(unexplained)}")
        if len(self.duplicated) > len(self.in_flight_at_fault):
            out.append(
                f"{len(self.duplicated)} duplicated > {len(self.in_flight_at_fault)} in flight"
            )
        return out

    def assert_ok(self) -> None:
        problems = self.violations()
        assert not problems, f"{self.scenario}: " + "; ".join(problems) + "\n" + self.table()


def _ids(ids: Iterable[int], limit: int = 20) -> str:
    ordered = sorted(ids)
    more = f" … (+{len(ordered) - limit})" if len(ordered) > limit else ""
    return ", ".join(map(str, ordered[:limit])) + more


def format_table(reports: Iterable[LedgerReport]) -> str:
    """Reports as a fixed-width table with one row per scenario."""
    rows = [(r.scenario, *(str(v) for v in r.row().values())) for r in reports]
    header = ("scenario", *COLUMNS)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    line = render(header)
    return "\n".join([line, "-" * len(line), *(render(r) for r in rows)])


def _table_ids(conn: Connection, table: str, column: sql.Composable) -> Counter[int]:
    rows = conn.execute(
        sql.SQL("select {} from pgmq.{}").format(column, sql.Identifier(table))
    ).fetchall()
    return Counter(int(r[0]) for r in rows if r[0] is not None)


def check(
    conn: Connection,
    queue: str,
    acknowledged: Iterable[int],
    *,
    scenario: str,
    in_flight_at_fault: Iterable[int] = (),
) -> LedgerReport:
    """Classify the acknowledged enqueues of ``queue`` (see the module docstring)."""
    acked = set(acknowledged)
    with conn.transaction():
        archived = _table_ids(conn, f"a_{queue}", sql.Identifier("msg_id"))
        dead = _table_ids(conn, f"q_{queue}_dlq", sql.SQL("(message ->> 'job_id')::bigint"))
        queued = _table_ids(conn, f"q_{queue}", sql.Identifier("msg_id"))
        ledger = conn.execute(
            "select job_id, event, count(*) from fault_ledger where queue = %s"
            " group by job_id, event",
            (queue,),
        ).fetchall()
    starts: Counter[int] = Counter()
    planned: Counter[int] = Counter()
    for job_id, event, n in ledger:
        if event == "start":
            starts[job_id] += n
        elif event in ("fail", "kill"):
            planned[job_id] += n
    report = LedgerReport(scenario, jobs=len(acked), executions=starts)
    report.in_flight_at_fault = set(in_flight_at_fault) & acked
    for job_id in acked:
        if archived[job_id] and dead[job_id]:
            report.both.add(job_id)
        if dead[job_id] > 1:
            report.dead_more_than_once.add(job_id)
        if archived[job_id]:
            report.completed.add(job_id)
        elif dead[job_id]:
            report.dead.add(job_id)
        elif queued[job_id]:
            report.pending.add(job_id)
        else:
            report.lost.add(job_id)
        if starts[job_id] - planned[job_id] > 1:
            report.duplicated.add(job_id)
    known = set(archived) | set(dead) | set(queued)
    report.unacknowledged_extras = len(known - acked)
    return report
