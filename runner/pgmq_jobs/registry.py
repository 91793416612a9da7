"""Handlers, registered per queue on a :class:`Registry`, and the context they receive.

::

    app = pgmq_jobs.Registry()

    @app.handler("emails", timeout=30)
    def send(payload: dict, ctx: pgmq_jobs.JobContext) -> None: ...

``pgmq-jobs worker --app mymodule:app --queue emails`` then runs it.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

HandlerFunc = Callable[[dict[str, Any], "JobContext"], Any]
_CANCELLED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Handler:
    """A queue's handler with its limits.

    ``timeout`` (seconds): the worker stops waiting and reports a failure after it.
    ``visibility_timeout`` (seconds): lease per claim; None uses the queue's setting.
    """

    queue: str
    func: HandlerFunc
    timeout: float | None = None
    visibility_timeout: float | None = None

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


@dataclass
class JobContext:
    """What a handler knows about the delivery it runs.

    ``cancelled`` is set when the worker gave up waiting (timeout): a cooperative handler
    can check it and stop early; its result is ignored either way.
    """

    queue: str
    job_id: int
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    worker_id: str
    deadline: float | None = None
    _cancelled: threading.Event | None = field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> threading.Event:
        # Made on first use: most handlers never look, and an Event per job is measurable
        # at thousands of jobs per second.
        if self._cancelled is None:
            with _CANCELLED_LOCK:
                if self._cancelled is None:
                    self._cancelled = threading.Event()
        return self._cancelled

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def time_left(self) -> float | None:
        """Seconds until the handler's timeout, or None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()


class Registry:
    """Maps queue names to handlers; one handler per queue."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def handler(
        self,
        queue: str,
        *,
        timeout: float | timedelta | None = None,
        visibility_timeout: float | timedelta | None = None,
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator: register ``func(payload, ctx)`` for ``queue``."""

        def register(func: HandlerFunc) -> HandlerFunc:
            self.add(queue, func, timeout=timeout, visibility_timeout=visibility_timeout)
            return func

        return register

    def add(
        self,
        queue: str,
        func: HandlerFunc,
        *,
        timeout: float | timedelta | None = None,
        visibility_timeout: float | timedelta | None = None,
    ) -> Handler:
        """Register ``func`` for ``queue`` (an error if the queue already has one)."""
        if queue in self.handlers:
            raise ValueError(f"queue {queue!r} already has a handler: {self.handlers[queue].name}")
        handler = Handler(queue, func, _seconds(timeout), _seconds(visibility_timeout))
        self.handlers[queue] = handler
        return handler

    def http(self, queue: str, *, timeout: float | None = None) -> Handler:
        """Register the built-in webhook executor (:func:`pgmq_jobs.webhook.deliver`).

        Each request is bounded by its payload's ``timeout`` (default 10 s, at most 300 s).
        """
        from pgmq_jobs.webhook import deliver

        return self.add(queue, deliver, timeout=timeout)

    def for_queues(self, queues: list[str]) -> dict[str, Handler]:
        """The handlers of ``queues``; a clear error names queues without one."""
        missing = [q for q in queues if q not in self.handlers]
        if missing:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise LookupError(f"no handler for queue(s) {', '.join(missing)} (registered: {known})")
        return {q: self.handlers[q] for q in queues}


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ValueError(f"durations must be positive, got {seconds}")
    return seconds


def load_registry(spec: str) -> Registry:
    """``module:attribute`` (e.g. ``myapp.jobs:app``) to the Registry it names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app must look like module:registry, got {spec!r}")
    module = importlib.import_module(module_name)
    try:
        registry = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name} has no attribute {attr!r}") from None
    if not isinstance(registry, Registry):
        raise ValueError(f"{spec} is a {type(registry).__name__}, not a pgmq_jobs.Registry")
    return registry
