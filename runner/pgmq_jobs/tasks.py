"""Typed tasks: a function of keyword arguments, registered for a queue, that producers defer.

::

    app = pgmq_jobs.Registry()

    @app.task("emails")
    def send_email(to: str, subject: str, body: str = "") -> None: ...

    send_email.defer(conn, to="a@example.com", subject="hi")          # psycopg.Connection
    await send_email.defer_async(aconn, to="a@example.com", subject="hi")
    send_email.configure(delay="10 minutes", priority=5).defer(conn, to=..., subject=...)

``defer`` checks the arguments against the function's signature before anything is sent: a
missing, unknown or non-JSON argument raises :class:`TypeError` naming it. The payload is the
arguments as a plain JSON object (``{"to": ..., "subject": ...}``), so SQL producers and other
languages enqueue for the same task with ``pgmq_jobs.enqueue('emails', '{"to": ...}')``.

The worker calls the function with the payload's keys as keyword arguments. A payload that
does not fit the signature fails its job permanently (a dead letter saying why): retrying it
could never succeed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from pgmq_jobs.outcomes import Permanent
from pgmq_jobs.registry import is_coroutine_function

if TYPE_CHECKING:
    import psycopg

    from pgmq_jobs.api.types import Duration
    from pgmq_jobs.registry import HandlerFunc, JobContext

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """The enqueue options a task's ``defer`` passes (those of ``pgmq_jobs.client.enqueue``);
    None leaves each to the queue's setting or the default."""

    delay: Duration | None = None
    run_at: datetime | None = None
    priority: int | None = None
    dedupe_key: str | None = None
    dedupe_window: Duration | None = None
    group_key: str | None = None
    max_attempts: int | None = None

    def enqueue_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``enqueue``: only the options that are set."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class Task(Generic[P, R]):
    """A function of keyword arguments bound to a queue (made by ``Registry.task``).

    Calling the task calls the function directly (handy in unit tests); ``defer`` enqueues
    a job that a worker runs."""

    queue: str
    func: Callable[P, R]
    options: TaskOptions = field(default_factory=TaskOptions)
    with_context: bool = False

    def __post_init__(self) -> None:
        check_task_signature(self.queue, self.func, self.with_context)

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    # ------------------------------------------------------------ producing

    def payload(self, **kwargs: Any) -> dict[str, Any]:
        """The JSON object that ``defer(**kwargs)`` would enqueue, after checking ``kwargs``
        against the signature (TypeError naming a missing, unknown or non-JSON argument)."""
        signature = _signature(self.func)
        params = list(signature.parameters.values())
        if self.with_context:
            params = params[1:]
        try:
            bound = signature.replace(parameters=params).bind(**kwargs)
        except TypeError as exc:
            raise TypeError(f"task {self.name} (queue {self.queue!r}): {exc}") from None
        payload: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                payload.update(value)
            else:
                payload[name] = value
        for name, value in payload.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"task {self.name} (queue {self.queue!r}): argument {name!r} is not JSON "
                    f"({exc}); a payload holds JSON values only (str, int, float, bool, None, "
                    "lists and dicts of them)"
                ) from None
        return payload

    def defer(self, conn: psycopg.Connection[Any], /, **kwargs: Any) -> int:
        """Check ``kwargs`` against the signature, then enqueue them as the payload in the
        connection's current transaction (nothing commits); returns the job id."""
        from pgmq_jobs import client

        payload = self.payload(**kwargs)
        return client.enqueue(conn, self.queue, payload, **self.options.enqueue_kwargs())

    async def defer_async(self, conn: psycopg.AsyncConnection[Any], /, **kwargs: Any) -> int:
        """``defer`` on an asyncio connection (``pgmq_jobs.aio.enqueue``)."""
        from pgmq_jobs import aio

        payload = self.payload(**kwargs)
        return await aio.enqueue(conn, self.queue, payload, **self.options.enqueue_kwargs())

    def configure(
        self,
        *,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        dedupe_key: str | None = None,
        dedupe_window: Duration | None = None,
        group_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Task[P, R]:
        """A copy of this task whose ``defer`` passes these enqueue options (on top of the
        ones this task already has); the task itself is unchanged."""
        given = {
            "delay": delay,
            "run_at": run_at,
            "priority": priority,
            "dedupe_key": dedupe_key,
            "dedupe_window": dedupe_window,
            "group_key": group_key,
            "max_attempts": max_attempts,
        }
        options = dataclasses.replace(
            self.options, **{k: v for k, v in given.items() if v is not None}
        )
        return dataclasses.replace(self, options=options)

    # ------------------------------------------------------------ running

    def handler(self) -> HandlerFunc:
        """The ``(payload, ctx)`` handler the worker runs: it calls the function with the
        payload's keys as keyword arguments (and the context first, with ``context=True``).
        An ``async def`` task gets an ``async def`` handler."""
        func: Callable[..., Any] = self.func
        bind = self._arguments

        if is_coroutine_function(func):

            async def run_async(payload: dict[str, Any], ctx: JobContext) -> Any:
                args, kwargs = bind(payload, ctx)
                return await func(*args, **kwargs)

            return _named(run_async, func)

        def run(payload: dict[str, Any], ctx: JobContext) -> Any:
            args, kwargs = bind(payload, ctx)
            return func(*args, **kwargs)

        return _named(run, func)

    def _arguments(
        self, payload: Mapping[str, Any], ctx: JobContext
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args: tuple[Any, ...] = (ctx,) if self.with_context else ()
        if not isinstance(payload, Mapping):
            raise Permanent(
                f"task {self.name} (queue {self.queue!r}) takes a JSON object of keyword "
                f"arguments; got a payload of type {type(payload).__name__}"
            )
        kwargs = dict(payload)
        try:
            _signature(self.func).bind(*args, **kwargs)
        except TypeError as exc:
            raise Permanent(
                f"payload does not fit task {self.name}{_signature(self.func)} of queue "
                f"{self.queue!r}: {exc} (payload keys: {', '.join(sorted(kwargs)) or 'none'})"
            ) from None
        return args, kwargs


def _named(wrapper: HandlerFunc, func: Any) -> HandlerFunc:
    """``wrapper`` under ``func``'s names (for logs and errors), keeping its own
    ``(payload, ctx)`` signature: no ``__wrapped__``, which ``inspect.signature`` follows."""
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(wrapper, attr, getattr(func, attr))
    return wrapper


def _signature(func: Any) -> inspect.Signature:
    return inspect.signature(func)


def check_task_signature(queue: str, func: Any, with_context: bool = False) -> None:
    """TypeError, saying why, unless ``func`` can take its arguments by keyword (and, with
    ``with_context``, the job's context as its first positional argument)."""
    name = getattr(func, "__qualname__", repr(func))
    if not callable(func):
        raise TypeError(f"the task of queue {queue!r} must be callable, got {type(func).__name__}")
    try:
        params = list(_signature(func).parameters.values())
    except (TypeError, ValueError):
        raise TypeError(
            f"the task {name} of queue {queue!r} has no signature to check its arguments against"
        ) from None
    if with_context:
        if not params or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(
                f"the task {name} of queue {queue!r} was registered with context=True: its "
                "first parameter must take the job's context positionally"
            )
        params = params[1:]
    for param in params:
        if param.kind is inspect.Parameter.POSITIONAL_ONLY and param.default is param.empty:
            raise TypeError(
                f"the task {name} of queue {queue!r} has the positional-only parameter "
                f"{param.name!r}: a task is called with the payload's keys as keyword "
                "arguments"
            )
