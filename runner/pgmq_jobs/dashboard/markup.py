"""Escaping by default: the dashboard's HTML is built from :class:`Markup` fragments.

Everything that is not already ``Markup`` (queue names, payloads, error texts: user data)
goes through :func:`html.escape` on its way into a page, so forgetting to escape takes an
explicit ``Markup(...)`` around untrusted text rather than an omission.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any


class Markup(str):
    """A string that is safe HTML as it is (a trusted template or escaped text)."""

    __slots__ = ()


def esc(value: Any) -> Markup:
    """``value`` as HTML text: ``Markup`` unchanged, ``None`` empty, anything else escaped."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(str(value), quote=True))


def h(template: str, *args: Any, **kwargs: Any) -> Markup:
    """Fill a trusted ``str.format`` template with escaped arguments (``{}`` / ``{name}``)."""
    return Markup(
        template.format(*(esc(a) for a in args), **{k: esc(v) for k, v in kwargs.items()})
    )


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    """Concatenate fragments, escaping those that are not ``Markup``."""
    return Markup(sep.join(esc(p) for p in parts))
