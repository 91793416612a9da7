"""Charts as inline SVG, drawn on the server (no JavaScript chart library).

A chart's x axis is a run of equal time buckets (:class:`Axis`); a series has a value for
some of them. Bars and points are drawn only where a bucket has data, so a chart of seeded
``queue_history`` rows has exactly one bar (``rect.bar``) or point (``circle.point``) per
bucket that holds rows, each with ``data-t`` (the bucket's start, ISO 8601) and
``data-value`` for tests and a ``<title>`` tooltip for people.
Colours are presentation attributes, not ``style=``, so a strict CSP allows them. Every
value goes into the SVG through :meth:`markupsafe.Markup.format`, which escapes it (the same
escaping as the Jinja2 templates that embed the charts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup

WIDTH = 600
HEIGHT = 170
LEFT = 44
RIGHT = 8
TOP = 22
BOTTOM = 20


def _svg(template: str, *args: object, **kwargs: object) -> Markup:
    """A trusted SVG template filled with escaped values."""
    return Markup(template).format(*args, **kwargs)


def _join(parts: Sequence[Markup]) -> Markup:
    return Markup("").join(parts)


@dataclass(frozen=True, slots=True)
class Axis:
    """``buckets`` time buckets of ``step`` from ``start``."""

    start: datetime
    step: timedelta
    buckets: int

    def at(self, index: int) -> datetime:
        return self.start + self.step * index

    def index(self, t: datetime) -> int | None:
        i = math.floor((t - self.start) / self.step)
        return i if 0 <= i < self.buckets else None


@dataclass(frozen=True, slots=True)
class Series:
    """A named, coloured series: ``values`` maps bucket index to value (missing: no data)."""

    name: str
    color: str
    values: dict[int, float]


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value``."""
    if not value or value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= value * (1 - 1e-12):
            return float(m * exp)
    return float(10 * exp)


def compact(value: float, unit: str = "") -> str:
    """A short label: 950, 1.2k, 3.4M; milliseconds as ms or s."""
    if unit == "ms":
        if value >= 1000:
            s = value / 1000
            return f"{s:.3g} s" if s < 60 else f"{s / 60:.3g} min"
        return f"{value:.3g} ms" if value else "0"
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.3g}M"
    if a >= 1e3:
        return f"{value / 1e3:.3g}k"
    if a == 0 or a >= 10 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2g}"


def _frame(
    axis: Axis,
    top: float,
    unit: str,
    label: Callable[[datetime], str],
    chart_id: str,
    title: str,
    series: Sequence[Series],
    body: Markup,
    kind: str,
) -> Markup:
    pw = WIDTH - LEFT - RIGHT
    ph = HEIGHT - TOP - BOTTOM
    parts: list[Markup] = []
    for k in range(3):
        v = top * k / 2
        y = TOP + ph - ph * k / 2
        parts.append(
            _svg(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#e5e7eb"/>'
                '<text class="ytick" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 5,
                f"{y + 3.5:.1f}",
                compact(v, unit),
            )
        )
    ticks = 4
    for k in range(ticks + 1):
        i = round(k * axis.buckets / ticks)
        x = LEFT + pw * i / axis.buckets
        anchor = "start" if k == 0 else "end" if k == ticks else "middle"
        parts.append(
            _svg(
                '<text class="xtick" x="{}" y="{}" text-anchor="{}">{}</text>',
                f"{x:.1f}",
                HEIGHT - 5,
                anchor,
                label(axis.at(i)),
            )
        )
    legend: list[Markup] = []
    x = WIDTH - RIGHT
    for s in reversed(series):
        w = 14 + 6.2 * len(s.name)
        x -= w
        legend.append(
            _svg(
                '<rect x="{}" y="6" width="9" height="9" rx="2" fill="{}"/>'
                '<text class="legend" x="{}" y="14">{}</text>',
                f"{x:.1f}",
                s.color,
                f"{x + 12:.1f}",
                s.name,
            )
        )
        x -= 8
    empty = all(not s.values for s in series)
    if empty:
        parts.append(
            _svg(
                '<text class="empty" x="{}" y="{}" text-anchor="middle">no data in this range'
                "</text>",
                LEFT + pw / 2,
                TOP + ph / 2,
            )
        )
    return _svg(
        '<svg class="chart chart-{kind}" id="chart-{id}" viewBox="0 0 {w} {hgt}" role="img"'
        ' aria-label="{title}" data-buckets="{n}" preserveAspectRatio="xMidYMid meet">'
        '<text class="ctitle" x="{left}" y="14">{title}</text>{legend}{grid}{body}'
        '<line class="axis" x1="{left}" x2="{right}" y1="{base}" y2="{base}" stroke="#9ca3af"/>'
        "</svg>",
        kind=kind,
        id=chart_id,
        w=WIDTH,
        hgt=HEIGHT,
        title=title,
        n=axis.buckets,
        left=LEFT,
        right=WIDTH - RIGHT,
        base=TOP + ph,
        legend=_join(legend),
        grid=_join(parts),
        body=body,
    )


def _fmt(v: float, unit: str) -> str:
    if unit == "ms":
        return compact(v, "ms")
    return (f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}") + (f" {unit}" if unit else "")


def bar_chart(
    axis: Axis,
    series: Sequence[Series],
    *,
    chart_id: str,
    title: str,
    unit: str = "",
    label: Callable[[datetime], str],
) -> Markup:
    """Stacked bars, one group (``g.bucket``) per bucket with data, a ``rect.bar`` per series."""
    indexes = sorted({i for s in series for i in s.values})
    totals = {i: sum(s.values.get(i, 0.0) for s in series) for i in indexes}
    top = nice_max(max(totals.values(), default=0.0))
    pw = WIDTH - LEFT - RIGHT
    ph = HEIGHT - TOP - BOTTOM
    bw = pw / axis.buckets
    width = max(1.0, bw * 0.78)
    groups: list[Markup] = []
    for i in indexes:
        x = LEFT + bw * i + (bw - width) / 2
        y = TOP + ph
        rects: list[Markup] = []
        tip = [label(axis.at(i))]
        for s in series:
            if i not in s.values:
                continue
            v = s.values[i]
            bh = ph * v / top
            y -= bh
            tip.append(f"{s.name} {_fmt(v, unit)}")
            rects.append(
                _svg(
                    '<rect class="bar" data-series="{}" data-value="{}" x="{}" y="{}" width="{}"'
                    ' height="{}" fill="{}"/>',
                    s.name,
                    f"{v:g}",
                    f"{x:.2f}",
                    f"{y:.2f}",
                    f"{width:.2f}",
                    f"{bh:.2f}",
                    s.color,
                )
            )
        groups.append(
            _svg(
                '<g class="bucket" data-t="{}"><title>{}</title>{}</g>',
                axis.at(i).isoformat(),
                " · ".join(tip),
                _join(rects),
            )
        )
    return _frame(axis, top, unit, label, chart_id, title, series, _join(groups), "bars")


def line_chart(
    axis: Axis,
    series: Sequence[Series],
    *,
    chart_id: str,
    title: str,
    unit: str = "",
    label: Callable[[datetime], str],
) -> Markup:
    """Lines through each series' points (broken at buckets without data) and a
    ``circle.point`` per value."""
    top = nice_max(max((v for s in series for v in s.values.values()), default=0.0))
    pw = WIDTH - LEFT - RIGHT
    ph = HEIGHT - TOP - BOTTOM
    bw = pw / axis.buckets
    r = 2.2 if axis.buckets <= 100 else 1.4
    body: list[Markup] = []
    for s in series:
        runs: list[list[tuple[float, float]]] = []
        prev: int | None = None
        dots: list[Markup] = []
        for i in sorted(s.values):
            v = s.values[i]
            x = LEFT + bw * (i + 0.5)
            y = TOP + ph - ph * v / top
            if prev is None or i != prev + 1:
                runs.append([])
            runs[-1].append((x, y))
            prev = i
            dots.append(
                _svg(
                    '<circle class="point" data-series="{}" data-t="{}" data-value="{}" cx="{}"'
                    ' cy="{}" r="{}" fill="{}"><title>{} · {} {}</title></circle>',
                    s.name,
                    axis.at(i).isoformat(),
                    f"{v:g}",
                    f"{x:.2f}",
                    f"{y:.2f}",
                    r,
                    s.color,
                    label(axis.at(i)),
                    s.name,
                    _fmt(v, unit),
                )
            )
        for run in runs:
            if len(run) > 1:
                body.append(
                    _svg(
                        '<polyline class="line" fill="none" stroke="{}" stroke-width="1.8"'
                        ' stroke-linejoin="round" points="{}"/>',
                        s.color,
                        " ".join(f"{x:.2f},{y:.2f}" for x, y in run),
                    )
                )
        body.extend(dots)
    return _frame(axis, top, unit, label, chart_id, title, series, _join(body), "lines")


def sparkline(axis: Axis, values: dict[int, float], *, color: str, title: str) -> Markup:
    """A tiny bar chart without axes (the overview's throughput per queue)."""
    w, hgt = 120, 26
    top = max(values.values(), default=0.0) or 1.0
    bw = w / axis.buckets
    bars = [
        _svg(
            '<rect class="spark" x="{}" y="{}" width="{}" height="{}" fill="{}"/>',
            f"{bw * i:.2f}",
            f"{hgt - max(1.0, hgt * v / top):.2f}" if v else hgt - 1,
            f"{max(1.0, bw * 0.8):.2f}",
            f"{max(1.0, hgt * v / top):.2f}" if v else 1,
            color if v else "#d1d5db",
        )
        for i, v in sorted(values.items())
    ]
    return _svg(
        '<svg class="sparkline" viewBox="0 0 {} {}" width="{}" height="{}" role="img"'
        ' aria-label="{}"><title>{}</title>'
        '<line x1="0" x2="{}" y1="{}" y2="{}" stroke="#e5e7eb"/>{}</svg>',
        w,
        hgt,
        w,
        hgt,
        title,
        title,
        w,
        hgt - 0.5,
        hgt - 0.5,
        _join(bars),
    )


OLD_BUCKETS = 25
"""0.1.0's duration histograms: bucket 1 is [0, 1) ms, bucket i (2..24) [2^(i-2), 2^(i-1)) ms,
bucket 25 2^23 ms and up."""
BUCKETS = 35
"""Since 0.2.0 (``sql/020_private_lifecycle.sql``'s ``_duration_histogram``): buckets 1..25 as
in 0.1.0 but bucket 1 is [0.5, 1) ms; bucket 26 is [0, 2^-10) ms and bucket i (27..35)
[2^(i-37), 2^(i-36)) ms."""


def bucket_bounds(i: int, layout: int) -> tuple[float, float]:
    """The [low, high) ms of bucket ``i`` (1-based) of a histogram of ``layout`` buckets (25 or
    35); bucket 25 has no upper bound (high is its lower bound, 2^23 ms)."""
    if i == 25:
        return float(2**23), float(2**23)
    if i == 26:
        return 0.0, 2.0**-10
    if i > 26:
        return 2.0 ** (i - 37), 2.0 ** (i - 36)
    if i == 1:
        return (0.0 if layout <= OLD_BUCKETS else 0.5), 1.0
    return float(2 ** (i - 2)), float(2 ** (i - 1))


def duration_order(layout: int) -> list[int]:
    """The buckets (1-based) of a histogram of ``layout`` buckets, shortest durations first:
    26..35 then 1..25 for 35 buckets, 1..25 for 0.1.0's 25."""
    if layout <= OLD_BUCKETS:
        return list(range(1, layout + 1))
    return list(range(26, layout + 1)) + list(range(1, 26))


def p95(buckets: Sequence[int | None] | None) -> float | None:
    """The 95th percentile (ms) of a ``queue_history.duration_buckets`` histogram, interpolated
    inside its bucket as ``queue_stats`` does. Reads both layouts (see :data:`BUCKETS` and
    :data:`OLD_BUCKETS`): an array of 25 or fewer is 0.1.0's, a longer one 0.2.0's (histograms
    of both releases summed element by element are 0.2.0's). Bucket 25 (2^23 ms and up)
    reports its lower bound."""
    if not buckets:
        return None
    counts = [int(n or 0) for n in buckets[:BUCKETS]]
    total = sum(counts)
    if total <= 0:
        return None
    layout = len(counts)
    goal = 0.95 * total
    cum = 0
    for i in duration_order(layout):
        n = counts[i - 1]
        cum += n
        if n > 0 and cum >= goal and cum - n < goal:
            lo, hi = bucket_bounds(i, layout)
            return lo + (hi - lo) * (goal - (cum - n)) / n
    return None
