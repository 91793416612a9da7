"""Payload contracts: check a JSON payload against a queue's JSON Schema, naming every violation.

Uses the ``jsonschema`` module of the Python that runs the code (inside the database: the
server's, Debian ``python3-jsonschema``). The draft comes from the schema's ``$schema``
(default: 2020-12); ``format`` is checked where the module has a checker for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["InvalidSchema", "format_path", "validate_json_schema"]

MAX_VIOLATIONS = 50
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidSchema(ValueError):
    """The schema itself is not a valid JSON Schema (a setting error, not a payload error)."""

    sqlstate = "22023"


def format_path(path: Iterable[Any]) -> str:
    """A JSONPath-like location: ``$``, ``$.user.email``, ``$.items[2]``, ``$["odd key"]``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _sort_key(error: Any) -> tuple[Any, ...]:
    return (
        tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.absolute_path),
        error.message,
    )


def validate_json_schema(schema: Any, payload: Any) -> list[str]:
    """Every way ``payload`` violates ``schema``, each ``"<path>: <message>"``; [] when valid.

    ``schema`` and ``payload`` are parsed JSON values (or JSON text). Raises
    :class:`InvalidSchema` when ``schema`` is not a valid JSON Schema.
    """
    import jsonschema
    from jsonschema import validators

    if isinstance(schema, str):
        schema = json.loads(schema)
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(schema, dict | bool):
        raise InvalidSchema(
            f"a JSON Schema must be an object or a boolean, got {type(schema).__name__}"
        )
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidSchema(
            f"not a valid JSON Schema at {format_path(exc.absolute_path)}: {exc.message}"
        ) from None
    checker = getattr(cls, "FORMAT_CHECKER", None)
    validator = cls(schema, format_checker=checker)
    errors = sorted(validator.iter_errors(payload), key=_sort_key)
    violations = [f"{format_path(e.absolute_path)}: {e.message}" for e in errors]
    if len(violations) > MAX_VIOLATIONS:
        more = len(violations) - MAX_VIOLATIONS
        violations = [*violations[:MAX_VIOLATIONS], f"... and {more} more"]
    return violations
