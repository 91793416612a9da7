"""Handlers, registered per queue on a :class:`Registry`, and the context they receive.

::

    app = pgmq_jobs.Registry()

    @app.handler("emails", timeout=30)
    def send(payload: dict, ctx: pgmq_jobs.JobContext) -> None: ...

    @app.handler("thumbnails")
    async def thumbnail(payload: dict, ctx: pgmq_jobs.JobContext) -> None: ...

A ``def`` handler runs in the worker's thread pool; an ``async def`` one is awaited on the
worker's event loop. Either is called as ``func(payload, ctx)``: a function that cannot be
called so is refused when it is registered.

Typed tasks (:mod:`pgmq_jobs.tasks`) are functions of keyword arguments, deferred by producers
with their arguments checked against the signature::

    @app.task("signups")
    def welcome(user_id: int, plan: str = "free") -> None: ...

    welcome.defer(conn, user_id=42)

``pgmq-jobs worker --app mymodule:app`` then runs every queue the registry knows
(``--queue emails`` narrows it).
"""

from __future__ import annotations

import importlib
import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from pgmq_jobs.tasks import Task

P = ParamSpec("P")
R = TypeVar("R")
HandlerFunc = Callable[[dict[str, Any], "JobContext"], Any]
_CANCELLED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Handler:
    """A queue's handler with its limits.

    ``timeout`` (seconds): the worker stops waiting and reports a failure after it.
    ``visibility_timeout`` (seconds): lease per claim; None uses the queue's setting.
    ``is_async``: ``func`` is a coroutine function, awaited on the worker's event loop.
    """

    queue: str
    func: HandlerFunc
    timeout: float | None = None
    visibility_timeout: float | None = None
    is_async: bool = False

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


@dataclass
class JobContext:
    """What a handler knows about the delivery it runs.

    ``cancelled`` is set when the worker gave up waiting (timeout), or when the delivery is
    no longer this worker's (its lease could not be extended: the job was redelivered or
    settled elsewhere). A cooperative handler can check it (``ctx.cancelled.is_set()``, in
    an ``async def`` too) and stop early; its result is ignored after a timeout and stale
    after a lost lease. An ``async def`` handler is also cancelled at its timeout.
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
        self.tasks: dict[str, Task[Any, Any]] = {}

    @property
    def queues(self) -> list[str]:
        """Every queue with a handler or task, sorted: what ``worker --app`` works by default."""
        return sorted(self.handlers)

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
        """Register ``func`` for ``queue`` (an error if the queue already has one, or if
        ``func`` cannot be called as ``func(payload, ctx)``)."""
        if queue in self.handlers:
            raise ValueError(f"queue {queue!r} already has a handler: {self.handlers[queue].name}")
        check_signature(queue, func)
        handler = Handler(
            queue,
            func,
            _seconds(timeout),
            _seconds(visibility_timeout),
            is_async=is_coroutine_function(func),
        )
        self.handlers[queue] = handler
        return handler

    def task(
        self,
        queue: str,
        *,
        timeout: float | timedelta | None = None,
        visibility_timeout: float | timedelta | None = None,
        context: bool = False,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Decorator: register a function of keyword arguments as ``queue``'s task.

        The decorated name becomes a :class:`~pgmq_jobs.tasks.Task`: ``.defer(conn, **kwargs)``
        enqueues, ``.configure(...)`` sets enqueue options, and calling it calls the function.
        The worker calls the function with the payload's keys as keyword arguments (with
        ``context=True``, the :class:`JobContext` first, positionally)."""
        from pgmq_jobs.tasks import Task

        def register(func: Callable[P, R]) -> Task[P, R]:
            task: Task[P, R] = Task(queue, func, with_context=context)
            self.add(queue, task.handler(), timeout=timeout, visibility_timeout=visibility_timeout)
            self.tasks[queue] = task
            return task

        return register

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


def check_signature(queue: str, func: Any) -> None:
    """TypeError, saying why, unless ``func`` can be called as ``func(payload, ctx)``."""
    if not callable(func):
        raise TypeError(
            f"the handler of queue {queue!r} must be callable as func(payload, ctx), "
            f"got an object of type {type(func).__name__}"
        )
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return  # no signature to inspect (some builtins): trust the caller
    try:
        signature.bind(None, None)
    except TypeError as exc:
        name = getattr(func, "__qualname__", repr(func))
        raise TypeError(
            f"the handler of queue {queue!r}, {name}{signature}, cannot be called as "
            f"func(payload, ctx) ({exc}): a handler takes the payload and the job's context "
            "as two positional arguments, and any other parameter needs a default"
        ) from None


def is_coroutine_function(func: Any) -> bool:
    """``func`` is an ``async def`` (or an object whose ``__call__`` is one, or a partial of
    one): calling it makes a coroutine that must be awaited."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - the method itself, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


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
