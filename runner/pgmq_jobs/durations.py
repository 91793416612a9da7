"""Durations as pgmq-jobs prints them: PostgreSQL's ``interval`` output, everywhere.

What people type is parsed by the database (``'90 s'``, ``'1h30m'``, ``'10 minutes'``,
``'PT10M'``, ``'250ms'``, plain seconds such as ``90``): the CLI sends the text as an
``interval`` (``pgmq_jobs.api.calls.interval``), so every form PostgreSQL accepts works and a
bad one gets PostgreSQL's own error. What pgmq-jobs prints uses one format, the one in the
database's own error messages (``delay must be at least 00:00:00, got -00:00:05``):
PostgreSQL's interval output (``IntervalStyle = postgres``) of the value with hours justified
into days, e.g. ``00:01:30``, ``01:30:00``, ``7 days``, ``1 day 02:00:00``, ``00:00:00.25``.
Every printed duration can be typed back as it is. Machine output (``--json``) gives seconds.
"""

from __future__ import annotations

from datetime import timedelta

SWEEP_FLOOR = timedelta(seconds=1)
"""The shortest ``pgmq-jobs sweep --every``: a sweep a second is already far more than the
minute pg_cron gives it."""


def format_duration(value: timedelta) -> str:
    """``value`` as PostgreSQL prints ``justify_hours(value)``: ``[N day(s) ]HH:MM:SS[.ffffff]``
    with trailing zeros of the fraction dropped, the time part left out when it is zero and
    there are days, and a minus sign on each part of a negative duration."""
    negative = value < timedelta(0)
    magnitude = -value if negative else value
    days = magnitude.days
    micros = magnitude.seconds * 1_000_000 + magnitude.microseconds
    sign = "-" if negative else ""
    parts: list[str] = []
    if days:
        parts.append(f"{sign}{days} day" if days == 1 and not negative else f"{sign}{days} days")
    if micros or not days:
        seconds, fraction = divmod(micros, 1_000_000)
        text = f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if fraction:
            text += f".{fraction:06d}".rstrip("0")
        parts.append(text)
    return " ".join(parts)
