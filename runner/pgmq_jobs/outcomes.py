"""What a handler can raise to choose its outcome, and the error text a failure reports.

A handler that returns completes its job. Raising :class:`Retry` schedules the next attempt
after a given delay (or, without one, the queue's backoff), :class:`Permanent` sends the job
straight to the dead-letter queue, :class:`Snooze` puts the job off for a while without using
up an attempt, and any other exception is an ordinary failure that the queue's backoff (in
SQL) retries or dead-letters. The runner only reports; every decision
stays in the database.
"""

from __future__ import annotations

import traceback
from datetime import timedelta

Seconds = float | int


def as_timedelta(after: timedelta | Seconds | None) -> timedelta | None:
    """``after`` (a timedelta or seconds) as a non-negative timedelta; None stays None."""
    if after is None:
        return None
    if isinstance(after, timedelta):
        return max(after, timedelta(0))
    if isinstance(after, bool) or not isinstance(after, int | float):
        raise TypeError(f"after must be a timedelta or seconds, got {type(after).__name__}")
    return timedelta(seconds=max(float(after), 0.0))


class Retry(Exception):
    """Fail this attempt and retry after ``after`` (seconds or timedelta).

    ``after=None`` leaves the delay to the queue's backoff. The attempt still counts: a job
    at its last attempt goes to the dead-letter queue.
    """

    def __init__(
        self, message: str = "retry requested", *, after: timedelta | Seconds | None = None
    ) -> None:
        super().__init__(message)
        self.after = as_timedelta(after)


class Permanent(Exception):
    """Fail this job for good: it goes to the dead-letter queue without further attempts."""


class Snooze(Exception):
    """Not yet: end this delivery and run the job again after ``after`` (seconds or
    timedelta) without using up an attempt (``pgmq_jobs.snooze``). Not a failure: nothing
    is recorded in the job's errors. A snooze of a delivery that is no longer the worker's
    (timed out, redelivered, cancelled) is ignored, as a late completion is."""

    def __init__(self, after: timedelta | Seconds, message: str = "snoozed") -> None:
        super().__init__(message)
        snooze = as_timedelta(after)
        if snooze is None:
            raise TypeError("Snooze needs after: a timedelta or seconds")
        self.after = snooze


def error_text(exc: BaseException) -> str:
    """Traceback, exception type and message, as stored in the job's error history: text
    PostgreSQL takes (a NUL or a lone surrogate in a message would make the report fail)."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def timeout_text(timeout: float, job_id: int, attempt: int) -> str:
    """The error reported for a handler that outlived its timeout."""
    return (
        f"TimeoutError: handler exceeded its {timeout:g} s timeout (job {job_id}, attempt "
        f"{attempt}); the worker stopped waiting for it and will ignore its late result"
    )
