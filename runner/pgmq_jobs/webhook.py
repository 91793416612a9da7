"""The built-in ``http`` handler: deliver a webhook described by the job's payload.

Payload: ``{"url": ..., "method": "POST", "headers": {...}, "body": ..., "timeout": 10}``.
``body`` may be a string (sent as is) or any JSON value (sent as JSON, with
``Content-Type: application/json`` unless the headers say otherwise).

Outcomes: 2xx completes. 408, 429, 5xx, connection errors and timeouts are retried, after
the response's ``Retry-After`` (seconds or an HTTP date) when it has one, else with the
queue's backoff. Any other status (other 4xx, unfollowed 3xx) and a malformed payload are
permanent: the job goes to the dead-letter queue at once.

Register it with ``app.http("webhooks")`` (see :meth:`pgmq_jobs.Registry.http`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

from pgmq_jobs.outcomes import Permanent, Retry
from pgmq_jobs.registry import JobContext

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
RETRYABLE_STATUS = frozenset({408, 429})
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: a webhook receiver answers where it was asked."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def deliver(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send the request; return ``{"status": ...}`` on 2xx, else raise Retry/Permanent."""
    request, timeout = build_request(payload)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return {"status": response.status}
    except urllib.error.HTTPError as exc:
        raise outcome_for_status(exc.code, exc.headers, exc.reason) from None
    except TimeoutError as exc:
        raise Retry(f"timed out after {timeout:g}s: {exc}", after=None) from None
    except urllib.error.URLError as exc:
        raise Retry(f"connection failed: {exc.reason}", after=None) from None
    except (ConnectionError, OSError) as exc:
        raise Retry(f"connection failed: {exc}", after=None) from None


def build_request(payload: dict[str, Any]) -> tuple[urllib.request.Request, float]:
    """The urllib request and timeout a payload describes; Permanent when it is malformed."""
    url = payload.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise Permanent(f"payload.url must be an http(s) URL, got {url!r}")
    method = str(payload.get("method", "POST")).upper()
    if method not in METHODS:
        raise Permanent(f"payload.method {method!r} is not one of {', '.join(sorted(METHODS))}")
    headers = payload.get("headers") or {}
    if not isinstance(headers, dict):
        raise Permanent("payload.headers must be an object of header names to values")
    data, content_type = encode_body(payload.get("body"))
    headers = {str(k): str(v) for k, v in headers.items()}
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    return request, request_timeout(payload.get("timeout"))


def encode_body(body: Any) -> tuple[bytes | None, str | None]:
    if body is None:
        return None, None
    if isinstance(body, str):
        return body.encode(), None
    return json.dumps(body).encode(), "application/json"


def request_timeout(value: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise Permanent(f"payload.timeout must be a positive number of seconds, got {value!r}")
    return min(float(value), MAX_TIMEOUT)


def outcome_for_status(status: int, headers: Message, reason: str) -> Exception:
    """Retry for 408, 429 and 5xx (after Retry-After when given); Permanent otherwise."""
    text = f"HTTP {status} {reason}".strip()
    if status in RETRYABLE_STATUS or 500 <= status <= 599:
        return Retry(text, after=retry_after_seconds(headers.get("Retry-After")))
    return Permanent(text)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
