"""Registration checks a handler's signature: it must be callable as ``func(payload, ctx)``.
No database: these run in milliseconds."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

import pgmq_jobs
from pgmq_jobs.registry import JobContext


def payload_only(payload: dict[str, Any]) -> None: ...


def three_required(a: Any, b: Any, c: Any) -> None: ...


def ctx_keyword_only(payload: dict[str, Any], *, ctx: JobContext) -> None: ...


def no_arguments() -> None: ...


def plain(payload: dict[str, Any], ctx: JobContext) -> None: ...


def with_keyword_extra(payload: dict[str, Any], ctx: JobContext, *, extra: int = 1) -> None: ...


def with_default_extra(payload: dict[str, Any], ctx: JobContext, extra: int = 1) -> None: ...


def star_args(*args: Any) -> None: ...


def star_both(*args: Any, **kwargs: Any) -> None: ...


async def async_plain(payload: dict[str, Any], ctx: JobContext) -> None: ...


async def async_payload_only(payload: dict[str, Any]) -> None: ...


class AsyncCallable:
    async def __call__(self, payload: dict[str, Any], ctx: JobContext) -> None: ...


class SyncCallable:
    def __call__(self, payload: dict[str, Any], ctx: JobContext) -> None: ...


@pytest.mark.parametrize(
    ("func", "reason"),
    [
        (payload_only, "too many positional arguments"),
        (three_required, "missing a required argument: 'c'"),
        (ctx_keyword_only, "too many positional arguments"),
        (no_arguments, "too many positional arguments"),
        (async_payload_only, "too many positional arguments"),
        (lambda: None, "too many positional arguments"),
    ],
)
def test_a_handler_that_cannot_take_payload_and_ctx_is_refused(
    func: Callable[..., Any], reason: str
) -> None:
    app = pgmq_jobs.Registry()
    with pytest.raises(TypeError) as caught:
        app.add("emails", func)
    message = str(caught.value)
    assert "'emails'" in message
    assert "cannot be called as func(payload, ctx)" in message
    assert reason in message
    assert "emails" not in app.handlers


def test_the_decorator_refuses_too() -> None:
    app = pgmq_jobs.Registry()
    with pytest.raises(TypeError, match=r"payload_only\(payload\b"):
        app.handler("emails")(payload_only)
    assert app.handlers == {}


def test_something_not_callable_is_refused() -> None:
    app = pgmq_jobs.Registry()
    with pytest.raises(TypeError, match="must be callable as func\\(payload, ctx\\)"):
        app.add("emails", "not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("func", "is_async"),
    [
        (plain, False),
        (with_keyword_extra, False),
        (with_default_extra, False),
        (star_args, False),
        (star_both, False),
        (SyncCallable(), False),
        (lambda payload, ctx: None, False),
        (functools.partial(three_required, "bound"), False),
        (async_plain, True),
        (AsyncCallable(), True),
        (functools.partial(async_plain), True),
    ],
)
def test_handlers_that_take_payload_and_ctx_are_registered_with_their_kind(
    func: Callable[..., Any], is_async: bool
) -> None:
    app = pgmq_jobs.Registry()
    handler = app.add("emails", func)
    assert app.handlers["emails"] is handler
    assert handler.is_async is is_async


def test_the_decorator_returns_the_function_unchanged() -> None:
    app = pgmq_jobs.Registry()
    assert app.handler("a")(async_plain) is async_plain
    assert app.handler("b")(plain) is plain
    assert (app.handlers["a"].is_async, app.handlers["b"].is_async) == (True, False)
