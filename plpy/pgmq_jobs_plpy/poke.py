"""Self-hosted HTTP poke: POST ``{"queue", "max_seconds", "max_jobs"}`` to the runner's invoker.

What pg_net does on Supabase, with the standard library (``urllib``) so that pg_cron can drive
``pgmq-jobs serve`` (or anything speaking its protocol) on self-hosted PostgreSQL through
PL/Python. The call blocks until the invoker answers (it drains for up to ``max_seconds``).

Safe by construction: http(s) only (never ``file:`` and friends), no redirects (they would
carry the ``Authorization`` header elsewhere), no proxy from the environment, and the secret
never appears in an error message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["PokeError", "build_request", "invoke", "invoke_url"]

MAX_ANSWER_BYTES = 1024 * 1024


class PokeError(RuntimeError):
    """The invoker could not be reached or did not answer 2xx."""

    sqlstate = "08000"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is then raised as an HTTPError


def invoke_url(url: str) -> str:
    """The URL to POST to: ``url`` itself, or ``url/invoke`` when it has no path."""
    if not isinstance(url, str) or not url:
        raise ValueError("url must be a non-empty http(s) URL of the invoker")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url must be an http(s) URL of the invoker, got {url!r}")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/invoke")
    return urllib.parse.urlunsplit(parts)


def build_request(
    url: str, queue: str, secret: str, max_seconds: int = 50, max_jobs: int | None = 1000
) -> urllib.request.Request:
    """The POST request (validated arguments)."""
    if not isinstance(queue, str) or not queue:
        raise ValueError("queue must be a non-empty queue name")
    if not isinstance(secret, str) or not secret:
        raise ValueError("secret must be the invoker's non-empty shared secret")
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float):
        raise ValueError(f"max_seconds must be a number, got {max_seconds!r}")
    if not 0 < max_seconds <= 3600:
        raise ValueError(f"max_seconds must be in (0, 3600], got {max_seconds!r}")
    if max_jobs is not None and (
        isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1
    ):
        raise ValueError(f"max_jobs must be a positive integer or null, got {max_jobs!r}")
    body: dict[str, Any] = {"queue": queue, "max_seconds": max_seconds}
    if max_jobs is not None:
        body["max_jobs"] = max_jobs
    return urllib.request.Request(
        invoke_url(url),
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {secret}",
            "User-Agent": "pgmq-jobs-plpy",
        },
        method="POST",
    )


def _answer(raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {"body": text[:1000]}
    return data if isinstance(data, dict) else {"body": data}


def invoke(
    url: str,
    queue: str,
    secret: str,
    max_seconds: int = 50,
    max_jobs: int | None = 1000,
    timeout_seconds: float = 60.0,
) -> dict[str, Any]:
    """POST to the invoker and return its JSON answer plus ``http_status``.

    Raises :class:`PokeError` when it cannot be reached, times out or answers other than 2xx
    (the message carries the status and the invoker's ``error``), ``ValueError`` for bad
    arguments. ``timeout_seconds`` should exceed ``max_seconds`` plus the invoker's grace.
    """
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int | float):
        raise ValueError(f"timeout_seconds must be a number, got {timeout_seconds!r}")
    if not 0 < timeout_seconds <= 3600:
        raise ValueError(f"timeout_seconds must be in (0, 3600], got {timeout_seconds!r}")
    request = build_request(url, queue, secret, max_seconds, max_jobs)
    target = request.full_url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            status = int(response.status)
            answer = _answer(response.read(MAX_ANSWER_BYTES))
    except urllib.error.HTTPError as exc:
        answer = _answer(exc.read(MAX_ANSWER_BYTES))
        reason = answer.get("error") or answer.get("body") or exc.reason
        raise PokeError(f"POST {target} answered {exc.code}: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PokeError(f"POST {target} failed: {reason}") from None
    return {**answer, "http_status": status}
