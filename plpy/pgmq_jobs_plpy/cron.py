"""Cron expressions as pg_cron reads them: validation with precise messages, next fire times.

Five fields (minute hour day-of-month month day-of-week) with ``*``, lists, ranges, steps
(``*/15``, ``1-30/5``) and month/day names (``jan``-``dec``, ``sun``-``sat``, case-insensitive);
the macros ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` and
``@annually``; and pg_cron 1.5's ``'N seconds'`` (accepted, but it has no fixed fire times).

Semantics are pg_cron's (Vixie cron's parser, ``src/entry.c``):

- day of week 0 and 7 are both Sunday;
- day of month and day of week: when either field starts with ``*`` (so ``*/2`` too) a day
  must match both; when both are restricted, a day matching EITHER one fires;
- a step needs a range or ``*`` (``5/15`` is an error in pg_cron);
- every time is UTC (pg_cron's default ``cron.timezone`` is GMT).

Standard library only: this module runs inside the database under PL/Python.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

__all__ = ["CronError", "Schedule", "cron_check", "next_runs", "parse"]

FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
LOW = (0, 0, 1, 1, 0)
HIGH = (59, 23, 31, 12, 7)
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MAX_LENGTH = 200
MAX_RUNS = 10_000
# Every satisfiable expression fires within 8 years: the rarest day is 29 February, and
# leap years are at most 8 years apart (2096 -> 2104).
HORIZON_DAYS = 8 * 366 + 1
# Longest month each month can have (February: 29 in leap years).
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_ITEM = re.compile(r"^(\*|[0-9a-z]+)(?:-([0-9a-z]+))?(?:/([0-9]+))?$")
_SECONDS = re.compile(r"^(\d+)\s+seconds?$")


class CronError(ValueError):
    """An invalid cron expression; the message names the field and the value."""

    sqlstate = "22023"


class Schedule:
    """A parsed expression: the sets of minutes, hours, days, months and weekdays that match."""

    __slots__ = (
        "dom_star",
        "dow_star",
        "expr",
        "hours",
        "interval_seconds",
        "minutes",
        "month_days",
        "months",
        "weekdays",
    )

    def __init__(
        self,
        expr: str,
        fields: tuple[frozenset[int], ...] = (),
        *,
        dom_star: bool = True,
        dow_star: bool = True,
        interval_seconds: int | None = None,
    ) -> None:
        self.expr = expr
        self.interval_seconds = interval_seconds
        empty: frozenset[int] = frozenset()
        self.minutes, self.hours, self.month_days, self.months, weekdays = fields or (empty,) * 5
        # Day of week 7 is Sunday, like 0.
        self.weekdays = frozenset(d % 7 for d in weekdays)
        self.dom_star = dom_star
        self.dow_star = dow_star

    def day_matches(self, day: date) -> bool:
        """The month and the day fields (with pg_cron's day-of-month/day-of-week rule)."""
        if day.month not in self.months:
            return False
        dom = day.day in self.month_days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def matches(self, at: datetime) -> bool:
        """``at`` (UTC, any seconds) falls in a minute this schedule fires."""
        at = _utc(at)
        return at.minute in self.minutes and at.hour in self.hours and self.day_matches(at.date())


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def _fail(expr: str, message: str) -> CronError:
    return CronError(f"invalid cron expression {expr!r}: {message}")


def _value(expr: str, index: int, field: str, token: str) -> int:
    if token.isdigit() and len(token) <= 4:
        return int(token)
    if index == 3 and token in MONTH_NAMES:
        return MONTH_NAMES.index(token) + 1
    if index == 4 and token in DAY_NAMES:
        return DAY_NAMES.index(token)
    kind = {3: " or month name (jan-dec)", 4: " or day name (sun-sat)"}.get(index, "")
    raise _fail(
        expr,
        f"bad {FIELD_NAMES[index]} field {field!r}: {token!r} is not a number{kind}",
    )


def _parse_field(expr: str, index: int, field: str) -> frozenset[int]:
    name, low, high = FIELD_NAMES[index], LOW[index], HIGH[index]
    values: set[int] = set()
    for item in field.lower().split(","):
        if item == "":
            raise _fail(expr, f"bad {name} field {field!r}: empty list item")
        match = _ITEM.match(item)
        if match is None:
            raise _fail(expr, f"bad {name} field {field!r}: cannot read {item!r}")
        first, last, step_text = match.groups()
        if first == "*" and last is not None:
            raise _fail(expr, f"bad {name} field {field!r}: '*' cannot start a range")
        step = 1
        if step_text is not None:
            step = int(step_text) if len(step_text) <= 4 else high + 1
            if step < 1 or step > high:
                raise _fail(
                    expr, f"step {step_text} out of range in {name} field (1-{high}): {item!r}"
                )
            if first != "*" and last is None:
                raise _fail(
                    expr,
                    f"bad {name} field {field!r}: step {item!r} needs a range or '*'"
                    f" (write {first}-{high}/{step_text})",
                )
        if first == "*":
            start, stop = low, high
        else:
            start = _value(expr, index, field, first)
            stop = start if last is None else _value(expr, index, field, last)
            for value in (start, stop):
                if not low <= value <= high:
                    raise _fail(
                        expr, f"{name} value {value} in {item!r} is out of range {low}-{high}"
                    )
            if start > stop:
                raise _fail(expr, f"{name} field range {item!r} runs backwards")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


def parse(expr: str | None) -> Schedule:
    """Parse ``expr`` or raise :class:`CronError` naming the bad field and value."""
    if expr is None or expr.strip() == "":
        raise CronError("cron expression must not be empty")
    if len(expr) > MAX_LENGTH:
        raise CronError(f"cron expression is too long ({len(expr)} characters)")
    text = expr.strip().lower()
    if text.startswith("@"):
        if text not in MACROS:
            raise _fail(
                expr,
                f"unknown macro {text!r}; use one of {', '.join(sorted(set(MACROS)))}",
            )
        text = MACROS[text]
    seconds = _SECONDS.match(text)
    if seconds is not None:
        count = int(seconds.group(1)) if len(seconds.group(1)) <= 4 else 0
        if not 1 <= count <= 59:
            raise _fail(expr, "seconds must be between 1 and 59")
        return Schedule(expr, interval_seconds=count)
    fields = text.split()
    if len(fields) != 5:
        raise _fail(
            expr,
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}",
        )
    parsed = tuple(_parse_field(expr, i, field) for i, field in enumerate(fields))
    schedule = Schedule(
        expr, parsed, dom_star=fields[2].startswith("*"), dow_star=fields[4].startswith("*")
    )
    if schedule.dow_star and not any(
        min(schedule.month_days) <= MONTH_DAYS[month - 1] for month in schedule.months
    ):
        months = ", ".join(MONTH_NAMES[m - 1] for m in sorted(schedule.months))
        raise _fail(
            expr,
            f"never fires: day of month {fields[2]!r} does not occur in month {fields[3]!r}"
            f" ({months})",
        )
    return schedule


def cron_check(expr: str | None) -> str | None:
    """None when ``expr`` is a valid cron expression, else the message saying what is wrong."""
    try:
        parse(expr)
    except CronError as exc:
        return str(exc)
    return None


def _days_from(start: date) -> list[date]:
    return [start + timedelta(days=i) for i in range(HORIZON_DAYS)]


def next_runs(expr: str, n: int, after: datetime | None = None) -> list[datetime]:
    """The next ``n`` fire times (UTC, whole minutes) strictly after ``after`` (default: now).

    Fewer when the expression fires less often within 8 years; none for ``'N seconds'``
    (pg_cron runs those every N seconds from the job's own start, not at fixed times).
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_RUNS:
        raise CronError(f"n must be an integer between 0 and {MAX_RUNS}, got {n!r}")
    schedule = parse(expr)
    if schedule.interval_seconds is not None or n == 0:
        return []
    start = _utc(after if after is not None else datetime.now(UTC))
    # The first candidate minute: strictly after ``start``.
    first = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    hours = sorted(schedule.hours)
    minutes = sorted(schedule.minutes)
    runs: list[datetime] = []
    for day in _days_from(first.date()):
        if not schedule.day_matches(day):
            continue
        for hour in hours:
            for minute in minutes:
                at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                if at < first:
                    continue
                runs.append(at)
                if len(runs) == n:
                    return runs
    return runs
