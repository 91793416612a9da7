"""Server-side rendered pages. Every value from the database reaches the HTML through
:func:`~pgmq_jobs.dashboard.markup.h` / :func:`~pgmq_jobs.dashboard.markup.esc`, escaped.

Sections marked ``data-live`` (with an ``id``) are swapped in place by the auto-refresh
script; forms with selections (the dead-letter list) are not, so a refresh never clears
what an operator ticked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from pgmq_jobs.client import DeadLetter
from pgmq_jobs.dashboard.data import RANGES, History, Range
from pgmq_jobs.dashboard.markup import Markup, esc, h, join
from pgmq_jobs.dashboard.svg import Axis, Series, bar_chart, line_chart, p95, sparkline

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


@dataclass(frozen=True, slots=True)
class Context:
    """What every page needs to know about the server."""

    actions: bool
    refresh: float
    database: str
    version: str


# ---------------------------------------------------------------- formatting


def local(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone()


def clock(dt: datetime | None, now: datetime | None = None) -> str:
    """Local time: ``HH:MM:SS`` today, ``Mon 3 14:05`` otherwise."""
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


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def interval_text(value: timedelta | None) -> str:
    return "—" if value is None else duration(value.total_seconds())


def ago(dt: datetime | None, now: datetime) -> Markup:
    """``<time>`` with the local time as a tooltip and a relative text."""
    if dt is None:
        return Markup("—")
    delta = (now - dt).total_seconds()
    text = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return h('<time datetime="{}" title="{}">{}</time>', dt.isoformat(), clock(dt, now), text)


def count(value: Any, estimated: bool = False) -> Markup:
    if value is None:
        return Markup("—")
    text = f"{int(value):,}"
    if estimated:
        return h('<span class="est" title="estimate from table statistics">~{}</span>', text)
    return esc(text)


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
    """Failed attempts (retried or dead-lettered) &divide; finished attempts over the window."""
    done = int(row[f"completed_{window}"] or 0)
    failed = int(row[f"retried_{window}"] or 0) + int(row[f"dead_lettered_{window}"] or 0)
    return None if done + failed == 0 else failed / (done + failed)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def queue_link(queue: str, **params: str) -> Markup:
    query = f"?{urlencode(params)}" if params else ""
    return h('<a href="/queues/{}{}">{}</a>', queue, query, queue)


def badge(text: str, kind: str) -> Markup:
    return h('<span class="badge badge-{}">{}</span>', kind, text)


STATUS_KIND = {"alive": "ok", "stale": "warn", "gone": "muted"}


# ---------------------------------------------------------------- layout


NAV = [("/", "Overview"), ("/workers", "Workers"), ("/schedules", "Schedules"), ("/audit", "Audit")]


def layout(ctx: Context, title: str, active: str, body: Markup, *, refresh: bool = True) -> str:
    nav = join(
        h(
            '<a href="{}"{}>{}</a>',
            href,
            Markup(' class="active" aria-current="page"') if href == active else Markup(""),
            label,
        )
        for href, label in NAV
    )
    every = ctx.refresh if refresh else 0
    noscript = (
        h('<noscript><meta http-equiv="refresh" content="{}"></noscript>', f"{every:g}")
        if every
        else Markup("")
    )
    mode = (
        badge("actions enabled", "warn")
        if ctx.actions
        else h('<span class="badge badge-muted" title="{}">read-only</span>', READ_ONLY_HINT)
    )
    now = datetime.now(UTC)
    page = h(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · pgmq-jobs</title>
<link rel="stylesheet" href="/static/dashboard.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<script src="/static/dashboard.js" defer></script>
{noscript}
</head>
<body data-refresh="{every}">
<header class="top">
  <a class="brand" href="/"><span class="logo" aria-hidden="true"></span>pgmq-jobs</a>
  <nav>{nav}</nav>
  <div class="status">
    {mode}
    <span id="live" class="live{off}" title="auto-refresh">
      <span class="dot"></span><span id="live-text">{livetext}</span>
      <time id="updated" datetime="{now}">{clock}</time>
    </span>
    {toggle}
  </div>
</header>
<main>
{body}
</main>
<footer>pgmq-jobs {version} · {database} · times in {tz}</footer>
</body>
</html>
""",
        title=title,
        noscript=noscript,
        every=f"{every:g}",
        nav=nav,
        mode=mode,
        off="" if every else " off",
        livetext="live" if every else "updated",
        now=now.isoformat(),
        clock=clock(now),
        toggle=(
            Markup('<button type="button" id="refresh-toggle" class="ghost">Pause</button>')
            if every
            else Markup("")
        ),
        body=body,
        version=ctx.version,
        database=ctx.database,
        tz=_zone(),
    )
    return str(page)


def _zone() -> str:
    now = datetime.now().astimezone()
    name = now.strftime("%Z")
    return name if name == "UTC" else f"{name} (UTC{now.strftime('%z')})"


READ_ONLY_HINT = "start with --allow-actions to replay or purge dead letters"


def table(headers: Sequence[str | Markup], rows: Iterable[Markup], *, cls: str = "") -> Markup:
    head = join(
        h("<th{}>{}</th>", Markup(' class="num"') if _numeric(c) else Markup(""), c)
        for c in headers
    )
    body = join(rows)
    return h(
        '<div class="table-wrap"><table class="{}"><thead><tr>{}</tr></thead>'
        "<tbody>{}</tbody></table></div>",
        cls,
        head,
        body,
    )


_NUMERIC = {
    "ready",
    "in flight",
    "delayed",
    "dead",
    "done/s",
    "failure rate",
    "p95",
    "oldest ready",
    "workers",
    "jobs done",
    "failed",
    "attempts",
}


def _numeric(col: str | Markup) -> bool:
    return str(col) in _NUMERIC


def empty(text: str) -> Markup:
    return h('<p class="empty">{}</p>', text)


def error_page(ctx: Context, status: int, title: str, detail: str) -> str:
    body = h(
        '<section class="panel error-panel"><h1>{} {}</h1><p>{}</p>'
        '<p><a href="/">Back to the overview</a></p></section>',
        status,
        title,
        detail,
    )
    return layout(ctx, title, "", body, refresh=False)


# ---------------------------------------------------------------- overview


def overview(ctx: Context, data: dict[str, Any]) -> str:
    stats: list[dict[str, Any]] = data["stats"]
    alerts: list[dict[str, Any]] = data["alerts"]
    workers: dict[str, int] = data["workers"]
    now = stats[0]["measured_at"] if stats else datetime.now(UTC)
    alerting = {a["queue"] for a in alerts}

    cards = join(
        [
            card("queues", f"{len(stats)}"),
            card("ready", f"{sum(int(r['ready'] or 0) for r in stats):,}"),
            card("in flight", f"{sum(int(r['in_flight'] or 0) for r in stats):,}"),
            card("delayed", f"{sum(int(r['delayed'] or 0) for r in stats):,}"),
            card(
                "dead letters",
                f"{sum(int(r['dead'] or 0) for r in stats):,}",
                "bad" if any(r["dead"] for r in stats) else "",
            ),
            card("done/s 1m", rate(sum(float(r["completed_rate_1m"] or 0) for r in stats))),
            card(
                "workers",
                f"{workers.get('alive', 0)} alive",
                "warn" if workers.get("stale") else "",
                f"{workers.get('stale', 0)} stale" if workers.get("stale") else "",
                href="/workers",
            ),
            card(
                "alerts",
                f"{len(alerts)} firing" if alerts else "none",
                "bad" if alerts else "ok",
            ),
        ]
    )

    spark_axis = Axis(data["spark_start"], timedelta(minutes=1), 60)
    sparks: dict[str, dict[int, float]] = {}
    for row in data["spark"]:
        i = spark_axis.index(row["minute"])
        if i is not None:
            sparks.setdefault(row["queue"], {})[i] = float(row["completed"] or 0)

    rows = []
    for r in stats:
        q = r["queue"]
        fr = failure_rate(r)
        flags = Markup("")
        if q in alerting:
            names = sorted(a["alert"] for a in alerts if a["queue"] == q)
            flags = join(badge(n.replace("_", " "), "bad") for n in names)
        oldest = r["oldest_ready_age"]
        rows.append(
            h(
                '<tr class="{cls}" data-queue="{q}">'
                '<td class="name">{link} {flags}</td>'
                '<td class="num" data-col="ready">{ready}</td>'
                '<td class="num" data-col="in_flight">{in_flight}</td>'
                '<td class="num" data-col="delayed">{delayed}</td>'
                '<td class="num{deadcls}" data-col="dead">{dead}</td>'
                '<td class="num" data-col="done">{done}</td>'
                '<td class="spark-cell">{spark}</td>'
                '<td class="num{frcls}" data-col="failure_rate">{fr}</td>'
                '<td class="num" data-col="p95">{p95}</td>'
                '<td class="num{agecls}" data-col="oldest">{oldest}</td>'
                '<td class="num" data-col="workers">{workers}</td></tr>',
                cls="alerting" if q in alerting else "",
                q=q,
                link=queue_link(q),
                flags=flags,
                ready=count(r["ready"], bool(r["ready_estimated"])),
                in_flight=count(r["in_flight"]),
                delayed=count(r["delayed"], bool(r["ready_estimated"])),
                dead=count(r["dead"], bool(r["dead_estimated"])),
                deadcls=" bad" if r["dead"] else "",
                done=rate(r["completed_rate_1m"]),
                spark=sparkline(
                    spark_axis,
                    sparks.get(q, {}),
                    color=GREEN,
                    title=f"{q}: completed per minute, last hour",
                ),
                fr=percent(fr),
                frcls=" bad" if fr and fr >= 0.5 else " warn" if fr and fr >= 0.1 else "",
                p95=ms(r["p95_processing_ms_5m"]),
                oldest=interval_text(oldest) if r["ready"] else "—",
                agecls=" warn" if oldest and oldest.total_seconds() > 60 else "",
                workers=r["live_workers"],
            )
        )
    queues = (
        table(
            [
                "queue",
                "ready",
                "in flight",
                "delayed",
                "dead",
                "done/s",
                Markup("completed <small>last hour</small>"),
                "failure rate",
                "p95",
                "oldest ready",
                "workers",
            ],
            rows,
            cls="queues",
        )
        if rows
        else empty("No queues yet: create one with pgmq_jobs.create_queue('name').")
    )
    body = h(
        '<h1>Queues</h1><section id="cards" class="cards" data-live>{cards}</section>'
        '<section id="alerts" data-live>{alerts}</section>'
        '<section id="queues" class="panel" data-live>{queues}'
        '<p class="note">done/s: completions per second over the last 1&ndash;2 minutes. '
        "Failure rate: retried or dead-lettered attempts &divide; finished attempts, "
        "last 5&ndash;6 minutes. "
        "p95: processing time, last 5&ndash;6 minutes. ~ marks estimates on deep queues.</p>"
        "</section>",
        cards=cards,
        alerts=alerts_panel(alerts, now),
        queues=queues,
    )
    return layout(ctx, "Queues", "/", body)


def card(label: str, value: str, kind: str = "", sub: str = "", href: str = "") -> Markup:
    inner = h(
        '<div class="card-label">{}</div><div class="card-value">{}</div>{}',
        label,
        value,
        h('<div class="card-sub">{}</div>', sub) if sub else Markup(""),
    )
    if href:
        return h('<a class="card {}" href="{}">{}</a>', kind, href, inner)
    return h('<div class="card {}">{}</div>', kind, inner)


def alerts_panel(alerts: list[dict[str, Any]], now: datetime) -> Markup:
    if not alerts:
        return Markup('<div class="banner ok" id="no-alerts">No alerts firing.</div>')
    items = join(
        h(
            '<li class="alert" data-alert="{alert}" data-queue="{q}">{badge}'
            '<span class="alert-queue">{where}</span><span class="alert-msg">{msg}</span>'
            '<span class="alert-since">{since}</span></li>',
            alert=a["alert"],
            q=a["queue"] or "",
            badge=badge(a["alert"].replace("_", " "), "bad"),
            where=queue_link(a["queue"]) if a["queue"] else "database",
            msg=a["message"],
            since=h("since {}", ago(a["since"], now)) if a["since"] else "",
        )
        for a in alerts
    )
    return h(
        '<div class="banner bad" role="alert"><strong>{} alert{} firing</strong>'
        '<ul class="alerts">{}</ul></div>',
        len(alerts),
        "" if len(alerts) == 1 else "s",
        items,
    )


# ---------------------------------------------------------------- queue


def _axis(history: History, rng: Range) -> Axis:
    return Axis(history.start, rng.step, rng.buckets)


def charts(history: History, rng: Range) -> Markup:
    axis = _axis(history, rng)
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
            acc = hist.setdefault(i, [0] * 25)
            for j, n in enumerate(row["duration_buckets"][:25]):
                acc[j] += int(n or 0)
    if per != 1:
        for values in (done, retried, dead):
            for i in values:
                values[i] /= per
    p95s = {i: v for i, b in hist.items() if (v := p95(b)) is not None}

    def label(t: datetime) -> str:
        return t.astimezone().strftime("%H:%M")

    unit = "/min"
    return join(
        [
            bar_chart(
                axis,
                [Series("completed", GREEN, done)],
                chart_id="throughput",
                title=f"Throughput · jobs per minute, {rng.label}",
                unit=unit,
                label=label,
            ),
            bar_chart(
                axis,
                [Series("retried", AMBER, retried), Series("dead-lettered", RED, dead)],
                chart_id="failures",
                title=f"Failures · per minute, {rng.label}",
                unit=unit,
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
    )


def queue_page(
    ctx: Context,
    queue: str,
    data: dict[str, Any],
    rng: Range,
    *,
    error_text: str,
    limit: int,
    flash: Markup | None,
) -> str:
    s = data["stats"]
    settings = data["settings"]
    now = s["measured_at"]
    letters: list[DeadLetter] = data["letters"]
    fr = failure_rate(s)
    cards = join(
        [
            card("ready", str(count(s["ready"], bool(s["ready_estimated"])))),
            card("in flight", f"{s['in_flight']:,}"),
            card("delayed", str(count(s["delayed"], bool(s["ready_estimated"])))),
            card(
                "dead letters",
                str(count(s["dead"], bool(s["dead_estimated"]))),
                "bad" if s["dead"] else "",
                href="#dead-letters",
            ),
            card("done/s 1m", rate(s["completed_rate_1m"])),
            card(
                "failures 5m",
                percent(fr),
                "bad" if fr and fr >= 0.5 else "warn" if fr and fr >= 0.1 else "",
            ),
            card("p95 5m", ms(s["p95_processing_ms_5m"])),
            card(
                "oldest ready",
                interval_text(s["oldest_ready_age"]) if s["ready"] else "—",
            ),
            card("workers", f"{s['live_workers']}", href="/workers"),
            card("enqueued", f"{s['enqueued_total'] or 0:,}"),
        ]
    )
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

    tabs = join(
        h(
            '<a href="/queues/{}?{}"{}>{}</a>',
            queue,
            urlencode({"range": r.key}),
            Markup(' class="active" aria-current="true"') if r.key == rng.key else Markup(""),
            r.label,
        )
        for r in RANGES.values()
    )
    body = h(
        '<nav class="crumbs"><a href="/">Queues</a> / </nav>'
        '<h1 class="queue-title">{queue}</h1><p class="facts">{facts}</p>{flash}'
        '<section id="queue-alerts" data-live>{alerts}</section>'
        '<section id="cards" class="cards" data-live>{cards}</section>'
        '<section class="panel"><div class="panel-head"><h2>History</h2>'
        '<div class="tabs">{tabs}</div></div>'
        '<div id="charts" class="charts" data-live>{charts}</div>'
        '<p class="note">From queue_history, which the sweep records every minute; the current '
        "minute appears after the next sweep.</p></section>"
        '<section class="panel" id="recent-failures" data-live><h2>Recent failures</h2>'
        "{recent}</section>"
        '<section class="panel" id="dead-letters"><h2>Dead letters</h2>{dlq}</section>',
        queue=queue,
        facts=" · ".join(facts),
        flash=flash or Markup(""),
        alerts=alerts_panel(data["alerts"], now) if data["alerts"] else Markup(""),
        cards=cards,
        tabs=tabs,
        charts=charts(data["history"], rng),
        recent=recent_failures(queue, data["recent"], now),
        dlq=dead_letter_section(
            ctx,
            queue,
            letters,
            total=int(s["dead"] or 0),
            error_text=error_text,
            limit=limit,
            rng=rng,
            purge_ids=bool(data["purge_ids"]),
            now=now,
        ),
    )
    return layout(ctx, queue, "/", body)


def recent_failures(queue: str, recent: list[DeadLetter], now: datetime) -> Markup:
    if not recent:
        return empty("No job of this queue was dead-lettered in the last hour.")
    rows = [
        h(
            "<tr><td>{died}</td><td>{link}</td><td>{reason}</td><td class='num'>{attempts}</td>"
            '<td class="error-text">{error}</td></tr>',
            died=ago(d.died_at, now),
            link=h(
                '<a href="/queues/{}?{}#dead-{}">job {}</a>',
                queue,
                urlencode({"dead_id": d.dead_id}),
                d.dead_id,
                d.original_job_id or d.job_id,
            ),
            reason=badge(d.reason, "bad" if d.reason != "expired" else "warn"),
            attempts=d.attempts,
            error=d.last_error or "—",
        )
        for d in recent
    ]
    return join(
        [
            table(["died", "job", "reason", "attempts", "last error"], rows, cls="compact"),
            h(
                '<p class="note">The newest {} dead letters of the last hour. Retries in progress '
                "show in the failures chart.</p>",
                len(recent),
            ),
        ]
    )


def dead_letter_section(
    ctx: Context,
    queue: str,
    letters: list[DeadLetter],
    *,
    total: int,
    error_text: str,
    limit: int,
    rng: Range,
    purge_ids: bool,
    now: datetime,
) -> Markup:
    filt = h(
        '<form class="filter" method="get" action="/queues/{q}#dead-letters" role="search">'
        '<input type="hidden" name="range" value="{rng}">'
        '<label>Error text <input type="search" name="error" value="{err}"'
        ' placeholder="e.g. timeout" id="error-filter"></label>'
        '<label>Show <select name="limit">{limits}</select></label>'
        '<button type="submit">Filter</button>{clear}</form>',
        q=queue,
        rng=rng.key,
        err=error_text,
        limits=join(
            h('<option value="{}"{}>{}</option>', n, Markup(" selected") if n == limit else "", n)
            for n in (25, 100, 500, 1000)
        ),
        clear=(
            h('<a class="ghost" href="/queues/{}?range={}#dead-letters">clear</a>', queue, rng.key)
            if error_text
            else Markup("")
        ),
    )
    shown = len(letters)
    summary = (
        h(
            "<p class='note' id='dlq-summary'>{} matching &ldquo;{}&rdquo; shown (oldest first),"
            " {} in all.</p>",
            shown,
            error_text,
            total,
        )
        if error_text
        else h(
            "<p class='note' id='dlq-summary'>{} of {} shown (oldest first).</p>",
            shown,
            total,
        )
    )
    if not letters:
        msg = "No dead letter matches this filter." if error_text else "No dead letters."
        return join([filt, summary, empty(msg)])

    actions = ctx.actions
    rows = []
    for d in letters:
        history = join(
            h(
                "<li><span class='attempt'>attempt {}</span> <time>{}</time>{}"
                "<pre class='error-text'>{}</pre></li>",
                e.get("attempt", "?"),
                clock(parse_time(e.get("at")), now),
                h(" <span class='worker'>{}</span>", e["worker"]) if e.get("worker") else "",
                e.get("error", ""),
            )
            for e in (d.errors or [])
            if isinstance(e, dict)
        )
        rows.append(
            h(
                '<tr class="dl" id="dead-{id}" data-dead-id="{id}">'
                "{check}"
                '<td class="num">{id}</td><td class="num">{job}</td>'
                '<td class="num">{attempts}</td><td>{reason}</td><td>{died}</td>'
                '<td class="detail"><div class="error-text last-error">{last}</div>'
                "<details><summary>payload and {n} error{s}{replays}</summary>"
                '<div class="dl-detail"><div><h3>Payload</h3><pre class="payload">{payload}</pre>'
                "</div><div><h3>Error history</h3><ol class='errors'>{history}</ol>"
                "<p class='note'>first enqueued {enq}</p></div></div></details></td></tr>",
                id=d.dead_id,
                check=(
                    h(
                        '<td class="check"><input type="checkbox" name="dead_id" value="{}"'
                        ' aria-label="select dead letter {}" form="dlq-actions"></td>',
                        d.dead_id,
                        d.dead_id,
                    )
                    if actions
                    else Markup("")
                ),
                job=d.original_job_id or d.job_id,
                attempts=d.attempts,
                reason=badge(d.reason, "bad" if d.reason != "expired" else "warn"),
                died=ago(d.died_at, now),
                last=d.last_error or "—",
                n=len(d.errors or []),
                s="" if len(d.errors or []) == 1 else "s",
                replays=f", replayed {d.replays} times" if d.replays else "",
                payload=pretty_json(d.payload),
                history=history,
                enq=clock(d.enqueued_at, now),
            )
        )
    headers: list[str | Markup] = ["dead id", "job", "attempts", "reason", "died", "last error"]
    if actions:
        headers.insert(
            0,
            Markup(
                '<input type="checkbox" id="select-all" aria-label="select all shown"'
                ' title="select all shown">'
            ),
        )
    listing = table(headers, rows, cls="dlq")
    if not actions:
        return join(
            [
                filt,
                summary,
                listing,
                h('<p class="note readonly">Read-only: {}.</p>', READ_ONLY_HINT),
            ]
        )
    token = Markup(
        '<label class="token">Action token <input type="password" name="token"'
        ' autocomplete="off" required placeholder="printed at start-up"></label>'
    )
    purge_selected = (
        h(
            '<button type="submit" class="danger" formaction="/queues/{}/purge" name="scope"'
            ' value="selected" data-confirm="Delete the selected dead letters for good?">'
            "Purge selected</button>",
            queue,
        )
        if purge_ids
        else Markup("")
    )
    form = h(
        '<form id="dlq-actions" class="actions" method="post" action="/queues/{q}/replay">'
        "{token}"
        '<button type="submit" class="primary" name="scope" value="selected" id="replay-selected">'
        "Replay selected</button>"
        '<button type="submit" name="scope" value="all" id="replay-all"'
        ' data-confirm="Replay all {total} dead letters of {q}?">Replay all {total}</button>'
        '{purge_selected}<span class="sep"></span>'
        '<label>Purge <select name="older_than">{ages}</select></label>'
        '<button type="submit" class="danger" id="purge" name="scope" value="age"'
        ' formaction="/queues/{q}/purge"'
        ' data-confirm="Delete these dead letters of {q} for good?">Purge</button></form>',
        q=queue,
        token=token,
        total=total,
        purge_selected=purge_selected,
        ages=join(h('<option value="{}">{}</option>', v, label) for v, label in PURGE_AGES),
    )
    return join([filt, summary, form, listing])


def flash_message(params: dict[str, list[str]]) -> Markup | None:
    """The result of an action, from the redirect's query (numbers only, nothing echoed)."""
    done = (params.get("done") or [""])[0]
    try:
        n = int((params.get("n") or ["0"])[0])
    except ValueError:
        return None
    if done == "replay":
        return h(
            '<div class="banner ok flash" role="status" id="flash">Replayed {} dead letter{} '
            "into the queue.</div>",
            n,
            "" if n == 1 else "s",
        )
    if done == "purge":
        return h(
            '<div class="banner ok flash" role="status" id="flash">Purged {} dead letter{}.</div>',
            n,
            "" if n == 1 else "s",
        )
    return None


# ---------------------------------------------------------------- workers


def workers_page(ctx: Context, workers: list[dict[str, Any]], include_gone: bool) -> str:
    now = datetime.now(UTC)
    rows = [
        h(
            '<tr data-worker="{id}" class="status-{status}"><td class="mono">{id}</td>'
            "<td>{badge}</td><td>{host}</td><td class='num'>{pid}</td><td>{queues}</td>"
            "<td>{hb}</td><td class='num'>{every}</td><td>{started}</td>"
            "<td class='num'>{done}</td><td class='num'>{failed}</td>"
            "<td class='num'>{inflight}</td></tr>",
            id=w["worker_id"],
            status=w["status"],
            badge=badge(w["status"], STATUS_KIND.get(w["status"], "muted")),
            host=w["host"],
            pid=w["pid"],
            queues=join((queue_link(q) for q in (w["queues"] or [])), ", "),
            hb=ago(w["last_seen_at"], now),
            every=interval_text(w["heartbeat_interval"]),
            started=ago(w["started_at"], now),
            done=f"{w['jobs_done'] or 0:,}",
            failed=f"{w['jobs_failed'] or 0:,}",
            inflight=w["in_flight"] if w["in_flight"] is not None else "—",
        )
        for w in workers
    ]
    toggle = (
        Markup('<a href="/workers">hide workers that are gone</a>')
        if include_gone
        else Markup('<a href="/workers?all=1">show workers that are gone</a>')
    )
    listing = (
        table(
            [
                "worker",
                "status",
                "host",
                "pid",
                "queues",
                "last heartbeat",
                "every",
                "started",
                "jobs done",
                "failed",
                "in flight",
            ],
            rows,
            cls="workers",
        )
        if rows
        else empty("No workers are running. Start one with `pgmq-jobs worker`.")
    )
    counts: dict[str, int] = {}
    for w in workers:
        counts[w["status"]] = counts.get(w["status"], 0) + 1
    body = h(
        '<h1>Workers</h1><section id="cards" class="cards" data-live>{cards}</section>'
        '<section class="panel" id="workers" data-live>{listing}'
        '<p class="note">alive: heartbeats on time · stale: missed three heartbeats · gone: '
        "stopped cleanly, or silent for 10 minutes. {toggle}</p></section>",
        cards=join(
            [
                card("alive", str(counts.get("alive", 0)), "ok" if counts.get("alive") else ""),
                card("stale", str(counts.get("stale", 0)), "warn" if counts.get("stale") else ""),
                card(
                    "jobs done",
                    f"{sum(int(w['jobs_done'] or 0) for w in workers):,}",
                ),
                card("in flight", f"{sum(int(w['in_flight'] or 0) for w in workers):,}"),
            ]
        ),
        listing=listing,
        toggle=toggle,
    )
    return layout(ctx, "Workers", "/workers", body)


# ---------------------------------------------------------------- schedules


def schedules_page(ctx: Context, schedules: list[dict[str, Any]]) -> str:
    now = datetime.now(UTC)
    rows = []
    for s in schedules:
        status = s["last_status"]
        kind = {"succeeded": "ok", "failed": "bad", "running": "warn"}.get(status or "", "muted")
        rows.append(
            h(
                '<tr data-schedule="{name}"><td class="name">{name}</td>'
                "<td><code>{cron}</code></td><td>{queue}</td>"
                "<td><code class='payload-inline'>{payload}</code></td><td>{active}</td>"
                "<td>{last}</td><td>{status}{msg}</td><td>{next}</td></tr>",
                name=s["name"],
                cron=s["cron"],
                queue=queue_link(s["queue"]),
                payload=json.dumps(s["payload"], sort_keys=True, ensure_ascii=False),
                active=badge("active", "ok") if s["active"] else badge("inactive", "warn"),
                last=ago(s["last_run_at"], now) if s["last_run_at"] else "never",
                status=badge(status, kind) if status else Markup("—"),
                msg=(
                    h(" <span class='note'>{}</span>", s["last_message"])
                    if s["last_message"] and status != "succeeded"
                    else ""
                ),
                next=(
                    h(
                        "{} <span class='note'>({})</span>",
                        ago(s["next_run_at"], now),
                        clock(s["next_run_at"], now),
                    )
                    if s["next_run_at"]
                    else Markup("—")
                ),
            )
        )
    listing = (
        table(
            ["name", "cron", "queue", "payload", "pg_cron", "last run", "last status", "next run"],
            rows,
            cls="schedules",
        )
        if rows
        else empty("No schedules. Add one with pgmq_jobs.schedule(name, cron, queue, payload).")
    )
    body = h(
        '<h1>Schedules</h1><section class="panel" id="schedules" data-live>{}'
        '<p class="note">Cron expressions run in pg_cron\'s time zone (GMT by default).{}</p>'
        "</section>",
        listing,
        Markup(
            " Next runs come from the database's PL/Python support where installed, otherwise"
            " the dashboard computes them with the same cron code."
        )
        if any(s.get("next_run_source") == "dashboard" for s in schedules)
        else "",
    )
    return layout(ctx, "Schedules", "/schedules", body)


# ---------------------------------------------------------------- audit


def audit_page(ctx: Context, rows: list[dict[str, Any]]) -> str:
    now = datetime.now(UTC)
    body_rows = [
        h(
            "<tr><td>{at}</td><td>{role}</td><td>{queue}</td><td>{action}</td>"
            "<td><code class='payload-inline'>{change}</code></td></tr>",
            at=ago(r["at"], now),
            role=r["role"],
            queue=queue_link(r["queue"]) if r["queue"] else "—",
            action=r["action"],
            change=json.dumps(r["change"], sort_keys=True, ensure_ascii=False, default=str),
        )
        for r in rows
    ]
    listing = (
        table(["when", "role", "queue", "action", "change"], body_rows, cls="audit")
        if body_rows
        else empty("No operator actions recorded yet.")
    )
    body = h(
        '<h1>Audit</h1><section class="panel" id="audit" data-live>{}'
        '<p class="note">The newest 200 operator actions (pgmq_jobs.audit).</p></section>',
        listing,
    )
    return layout(ctx, "Audit", "/audit", body)
