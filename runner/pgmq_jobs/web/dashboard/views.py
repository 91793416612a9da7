"""The dashboard's pages: Jinja2 templates (``templates/``) with autoescaping on, and what
they need besides the data: number and time formats, the server-side SVG charts.

Every value reaches the HTML through a template expression, escaped by Jinja2; only the
charts (:mod:`~pgmq_jobs.web.dashboard.svg`, escaped by :mod:`markupsafe` as they are drawn)
arrive as ``Markup``. Sections marked ``data-live`` (with an ``id``) are swapped in place by
the auto-refresh script; forms with selections are not, so a refresh never clears what an
operator ticked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pgmq_jobs.web.dashboard.data import DEAD_ORDERS, GROUPED, JOB_STATES, RANGES, History, Range
from pgmq_jobs.web.dashboard.errors import message, trim
from pgmq_jobs.web.dashboard.svg import (
    BUCKETS,
    Axis,
    Series,
    bar_chart,
    line_chart,
    p95,
    sparkline,
)

GREEN = "#2f9e44"
AMBER = "#e8890c"
RED = "#e03131"
BLUE = "#1c7ed6"
VIOLET = "#7048e8"
GREY = "#868e96"
TEAL = "#0c8599"

PURGE_AGES = [("", "all dead letters"), ("1 hour", "older than 1 hour")]
PURGE_AGES += [("1 day", "older than 1 day"), ("7 days", "older than 7 days")]
PURGE_AGES += [("30 days", "older than 30 days")]

READ_ONLY_HINT = "start with --allow-actions to replay or purge dead letters, cancel or run jobs"
STATUS_KIND = {"alive": "ok", "stale": "warn", "gone": "muted"}
STATE_LABELS = {
    "waiting": "waiting",
    "delayed": "delayed",
    "in_flight": "in flight",
    "retrying": "retrying",
    "parked": "parked",
    "completed": "completed",
    "dead": "dead",
    "cancelled": "cancelled",
}
STATE_KIND = {
    "waiting": "ok",
    "delayed": "muted",
    "in_flight": "warn",
    "retrying": "warn",
    "parked": "muted",
    "completed": "ok",
    "dead": "bad",
    "cancelled": "muted",
}
# Which states each action takes (cancel: every unfinished one; run now: reschedule's).
CANCELLABLE = {"waiting", "delayed", "in_flight", "retrying", "parked"}
RUNNABLE = {"waiting", "delayed", "retrying", "parked"}


@dataclass(frozen=True, slots=True)
class Context:
    """What every page needs to know about the server."""

    actions: bool
    refresh: float
    database: str
    version: str


# ---------------------------------------------------------------- formatting


def clock(dt: datetime | None, now: datetime | None = None) -> str:
    """Local time: ``HH:MM:SS`` today, ``YYYY-MM-DD HH:MM`` otherwise."""
    if dt is None:
        return "—"
    t = dt.astimezone()
    n = (now or datetime.now(UTC)).astimezone()
    if t.date() == n.date():
        return t.strftime("%H:%M:%S")
    return t.strftime("%Y-%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = abs(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.0f} s" if s >= 10 or float(s).is_integer() else f"{s:.1f} s"
    if s < 3600:
        return _two(int(s // 60), "min", int(s % 60), "s")
    if s < 86400:
        return _two(int(s // 3600), "h", int(s % 3600 // 60), "min")
    return _two(int(s // 86400), "d", int(s % 86400 // 3600), "h")


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit}" + (f" {small} {small_unit}" if small else "")


def relative(dt: datetime, now: datetime) -> str:
    """``3 s ago`` or ``in 5 min``."""
    delta = (now - dt).total_seconds()
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def interval_text(value: timedelta | None) -> str:
    return "—" if value is None else duration(value.total_seconds())


def number(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def rate(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} ms" if value < 1000 else duration(value / 1000)


def failure_rate(row: dict[str, Any], window: str = "5m") -> float | None:
    """Failed attempts (retried or dead-lettered) ÷ finished attempts over the window."""
    done = int(row[f"completed_{window}"] or 0)
    failed = int(row[f"retried_{window}"] or 0) + int(row[f"dead_lettered_{window}"] or 0)
    return None if done + failed == 0 else failed / (done + failed)


def rate_kind(value: float | None) -> str:
    return "bad" if value and value >= 0.5 else "warn" if value and value >= 0.1 else ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def query(**params: Any) -> str:
    """A URL query string (``?a=1&b=2``) of the parameters that are not None."""
    given = {k: v for k, v in params.items() if v is not None}
    return f"?{urlencode(given)}" if given else ""


def zone() -> str:
    now = datetime.now().astimezone()
    name = now.strftime("%Z")
    return name if name == "UTC" else f"{name} (UTC{now.strftime('%z')})"


# ---------------------------------------------------------------- charts


def sparks(data: dict[str, Any]) -> dict[str, Markup]:
    """The overview's per-queue sparkline of completions per minute, last hour."""
    axis = Axis(data["spark_start"], timedelta(minutes=1), 60)
    per_queue: dict[str, dict[int, float]] = {}
    for row in data["spark"]:
        i = axis.index(row["minute"])
        if i is not None:
            per_queue.setdefault(row["queue"], {})[i] = float(row["completed"] or 0)
    return {
        r["queue"]: sparkline(
            axis,
            per_queue.get(r["queue"], {}),
            color=GREEN,
            title=f"{r['queue']}: completed per minute, last hour",
        )
        for r in data["stats"]
    }


def charts(history: History, rng: Range) -> list[Markup]:
    """The queue page's four charts of ``queue_history``."""
    axis = Axis(history.start, rng.step, rng.buckets)
    per = rng.step.total_seconds() / 60
    done: dict[int, float] = {}
    retried: dict[int, float] = {}
    dead: dict[int, float] = {}
    gauges: dict[str, dict[int, float]] = {k: {} for k in ("ready", "in_flight", "delayed")}
    dls: dict[int, float] = {}
    hist: dict[int, list[int]] = {}
    for row in history.rows:
        i = axis.index(row["minute"])
        if i is None:
            continue
        done[i] = done.get(i, 0.0) + float(row["completed"] or 0)
        retried[i] = retried.get(i, 0.0) + float(row["retried"] or 0)
        dead[i] = dead.get(i, 0.0) + float((row["dead"] or 0) + (row["expired"] or 0))
        for k, values in gauges.items():
            if row[k] is not None:
                values[i] = float(row[k])  # the last minute of the bucket wins
        if row["dead_letters"] is not None:
            dls[i] = float(row["dead_letters"])
        if row["duration_buckets"]:
            # Element by element, as the sweep adds them: 0.1.0's 25 buckets are the first
            # 25 of 0.2.0's 35 (a sum that has both is read as 0.2.0's, as queue_stats does).
            acc = hist.setdefault(i, [])
            values = row["duration_buckets"][:BUCKETS]
            acc.extend([0] * (len(values) - len(acc)))
            for j, n in enumerate(values):
                acc[j] += int(n or 0)
    if per != 1:
        for values in (done, retried, dead):
            for i in values:
                values[i] /= per
    p95s = {i: v for i, b in hist.items() if (v := p95(b)) is not None}

    def label(t: datetime) -> str:
        return t.astimezone().strftime("%H:%M")

    return [
        bar_chart(
            axis,
            [Series("completed", GREEN, done)],
            chart_id="throughput",
            title=f"Throughput · jobs per minute, {rng.label}",
            unit="/min",
            label=label,
        ),
        bar_chart(
            axis,
            [Series("retried", AMBER, retried), Series("dead-lettered", RED, dead)],
            chart_id="failures",
            title=f"Failures · per minute, {rng.label}",
            unit="/min",
            label=label,
        ),
        line_chart(
            axis,
            [
                Series("ready", BLUE, gauges["ready"]),
                Series("in flight", VIOLET, gauges["in_flight"]),
                Series("delayed", GREY, gauges["delayed"]),
                Series("dead", RED, dls),
            ],
            chart_id="depth",
            title=f"Depth · jobs, {rng.label}",
            label=label,
        ),
        line_chart(
            axis,
            [Series("p95", TEAL, p95s)],
            chart_id="p95",
            title=f"p95 processing time, {rng.label}",
            unit="ms",
            label=label,
        ),
    ]


# ---------------------------------------------------------------- templates


def environment() -> Environment:
    """The templates of ``pgmq_jobs.web.dashboard``, autoescaped (HTML and SVG)."""
    env = Environment(
        loader=PackageLoader("pgmq_jobs.web.dashboard", "templates"),
        autoescape=select_autoescape(["html", "svg"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        clock=clock,
        duration=duration,
        interval=interval_text,
        number=number,
        rate=rate,
        percent=percent,
        ms=ms,
        pretty_json=pretty_json,
        compact_json=compact_json,
        trim_traceback=trim,
        error_message=message,
    )
    env.globals.update(
        relative=relative,
        query=query,
        failure_rate=failure_rate,
        rate_kind=rate_kind,
        parse_time=parse_time,
        RANGES=RANGES,
        JOB_STATES=JOB_STATES,
        DEAD_ORDERS=DEAD_ORDERS,
        GROUPED=GROUPED,
        STATE_LABELS=STATE_LABELS,
        STATE_KIND=STATE_KIND,
        STATUS_KIND=STATUS_KIND,
        CANCELLABLE=CANCELLABLE,
        RUNNABLE=RUNNABLE,
        PURGE_AGES=PURGE_AGES,
        READ_ONLY_HINT=READ_ONLY_HINT,
    )
    return env


class Pages:
    """Renders the dashboard's templates for one server."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.env = environment()

    def render(self, template: str, *, refresh: bool = True, **values: Any) -> str:
        now = datetime.now(UTC)
        every = self.context.refresh if refresh else 0
        return self.env.get_template(template).render(
            ctx=self.context,
            every=f"{every:g}",
            live=bool(every),
            rendered_at=now,
            tz=zone(),
            **values,
        )

    def error(self, status: int, title: str, detail: str) -> str:
        return self.render(
            "error.html", refresh=False, status=status, title=title, detail=detail, active=""
        )
