"""Error texts as the dashboard shows them: tracebacks without the worker's own frames, and
errors grouped by message.

A failed attempt records ``traceback.format_exception`` of what the handler raised
(:func:`pgmq_jobs.outcomes.error_text`): the first frames are the worker's (the executor that
called the handler, the typed-task adapter, the event-loop thread), which say nothing about
the failure. :func:`trim` drops those frames and keeps every other one, the handler's and the
libraries' it called; :func:`message` is the exception text after the last traceback, what
:func:`group` groups by. Texts that are not tracebacks (timeouts, errors given to
``pgmq_jobs.fail`` by SQL) pass through unchanged and are their own message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FRAME = re.compile(r'^(?P<indent>[ |]*?)File "(?P<file>[^"]*)", line \d+, in ')
"""A traceback's frame line; ``indent`` is what precedes ``File`` (two spaces, or more with
the ``|`` margins of an exception group)."""

WORKER_FILE = re.compile(
    r"[/\\]pgmq_jobs[/\\](?:worker[/\\][^/\\]+|worker|async_runner|tasks|registry|testing)\.py$"
)
"""The worker's own modules: the worker package (``worker.py`` in 0.1.0), the asyncio runner,
the typed-task adapter, the handler registry and the inline test runner."""

TRACEBACK_HEAD = "Traceback (most recent call last):"
MESSAGE_LIMIT = 500
"""Messages are grouped (and shown) by at most this many characters."""


def is_worker_frame(filename: str) -> bool:
    """Whether a frame's file is one of the worker's own modules."""
    return WORKER_FILE.search(filename) is not None


@dataclass(frozen=True, slots=True)
class Trimmed:
    """An error text without the worker's frames, and how many frames were dropped."""

    text: str
    hidden: int


def _frames(lines: list[str]) -> Iterable[tuple[int, int, str | None]]:
    """Spans ``(start, end, file)`` of the text's lines: a frame (its ``File`` line with the
    source and marker lines under it) has its file name, every other line None."""
    i = 0
    while i < len(lines):
        m = FRAME.match(lines[i])
        if m is None:
            yield i, i + 1, None
            i += 1
            continue
        inner = m.group("indent") + "  "
        end = i + 1
        while end < len(lines) and lines[end].startswith(inner) and not FRAME.match(lines[end]):
            end += 1
        yield i, end, m.group("file")
        i = end


def trim(text: str | None) -> Trimmed:
    """``text`` without the frames of the worker's own modules (see :data:`WORKER_FILE`)."""
    if not text or TRACEBACK_HEAD not in text:
        return Trimmed(text or "", 0)
    lines = text.splitlines()
    kept: list[str] = []
    hidden = 0
    for start, end, filename in _frames(lines):
        if filename is not None and is_worker_frame(filename):
            hidden += 1
            continue
        kept.extend(lines[start:end])
    return Trimmed("\n".join(kept) if hidden else text, hidden)


def message(text: str | None) -> str:
    """The exception text of an error: what follows the last frame of its last traceback
    (``ValueError: bad row 7``, with any further lines), else the whole text; stripped and
    cut to :data:`MESSAGE_LIMIT` characters."""
    if not text:
        return ""
    lines = text.strip().splitlines()
    tail = 0
    if any(line.startswith(TRACEBACK_HEAD) for line in lines):
        for start, end, filename in _frames(lines):
            if filename is not None or lines[start].startswith(TRACEBACK_HEAD):
                tail = end
    found = "\n".join(lines[tail:]).strip() or text.strip()
    return found[:MESSAGE_LIMIT]


@dataclass
class ErrorGroup:
    """One message and how often it is the last error of a dead letter or a failing job."""

    message: str
    dead: int = 0
    failing: int = 0
    last_at: datetime | None = None
    example: str = ""
    """One full error text of the group (the newest), for a look at its traceback."""
    job_ids: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.dead + self.failing


def _at(errors: Any) -> datetime | None:
    """The time of the last entry of an ``errors`` list (ISO 8601 text), if any."""
    if isinstance(errors, list) and errors and isinstance(errors[-1], dict):
        try:
            return datetime.fromisoformat(str(errors[-1].get("at")))
        except ValueError:
            return None
    return None


def group(dead: Iterable[Any], failing: Iterable[dict[str, Any]]) -> list[ErrorGroup]:
    """The last errors of dead letters (``DeadLetter``) and failing jobs (``failing_jobs``
    rows) grouped by :func:`message`: most frequent first, then the most recent."""
    groups: dict[str, ErrorGroup] = {}

    def add(text: str | None, at: datetime | None, job_id: int, kind: str) -> None:
        if not text:
            return
        key = message(text)
        g = groups.get(key)
        if g is None:
            g = groups[key] = ErrorGroup(key)
        if kind == "dead":
            g.dead += 1
        else:
            g.failing += 1
        if len(g.job_ids) < 20:
            g.job_ids.append(job_id)
        if at is not None and (g.last_at is None or at > g.last_at):
            g.last_at, g.example = at, text
        elif not g.example:
            g.example = text

    for d in dead:
        add(d.last_error, _at(d.errors) or d.died_at, d.original_job_id or d.job_id, "dead")
    for j in failing:
        add(j.get("last_error"), _at(j.get("errors")), int(j["job_id"]), "failing")
    return sorted(
        groups.values(),
        key=lambda g: (-g.count, -(g.last_at.timestamp() if g.last_at else 0.0), g.message),
    )
