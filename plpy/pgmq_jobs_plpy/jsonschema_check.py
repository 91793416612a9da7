"""Payload contracts: check a JSON payload against a queue's JSON Schema, naming every violation.

Uses the ``jsonschema`` module of the Python that runs the code (inside the database: the
server's, Debian ``python3-jsonschema``). The draft comes from the schema's ``$schema``
(default: 2020-12); ``format`` is checked where the module has a checker for it.

A schema refers to nothing outside itself. jsonschema resolves a ``$ref`` to a file or a URL by
reading or fetching it (as the database server's OS user), so a schema with any reference that
does not start with ``#`` is refused, and validation runs with a resolver that retrieves
nothing (``referencing.Registry`` with a refusing ``retrieve`` on jsonschema 4.18 and later, a
``RefResolver`` whose ``resolve_remote`` refuses before that).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["InvalidSchema", "check_local_refs", "format_path", "validate_json_schema"]

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


REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _non_local_ref(node: Any, path: tuple[Any, ...] = ()) -> tuple[str, str, str] | None:
    """The first reference (keyword, value, location) in ``node`` not starting with ``#``."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for keyword in REF_KEYWORDS:
                ref = item.get(keyword)
                if isinstance(ref, str) and not ref.startswith("#"):
                    return keyword, ref, format_path(where)
            stack.extend((value, (*where, key)) for key, value in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((value, (*where, i)) for i, value in reversed(list(enumerate(item))))
    return None


def check_local_refs(schema: Any) -> None:
    """Raise :class:`InvalidSchema` when ``schema`` refers to anything outside itself."""
    found = _non_local_ref(schema)
    if found is not None:
        keyword, ref, where = found
        raise InvalidSchema(
            f"a payload_schema may refer only to itself: {keyword} {ref[:200]!r} (at {where} "
            "in the schema) is not a reference within the schema (one starting with '#'); put "
            "the referenced schema under $defs and refer to it as #/$defs/<name>"
        )


class _Refused(Exception):
    """Raised instead of retrieving a referenced document."""


def _refuse(uri: str) -> Any:
    raise _Refused(f"{uri!r} is outside the schema and is not retrieved")


def _validator(cls: Any, schema: Any, checker: Any) -> tuple[Any, tuple[type, ...]]:
    """A validator for ``schema`` that resolves references only within it, and the exception
    types a reference it cannot resolve raises."""
    import inspect

    import jsonschema

    if "registry" in inspect.signature(cls).parameters:
        from referencing import Registry
        from referencing.exceptions import Unresolvable

        registry: Any = Registry(retrieve=_refuse)  # type: ignore[call-arg]
        return cls(schema, format_checker=checker, registry=registry), (Unresolvable, _Refused)
    resolver_base = jsonschema.RefResolver
    resolution_error = jsonschema.exceptions.RefResolutionError

    class LocalResolver(resolver_base):  # type: ignore[misc, valid-type]
        def resolve_remote(self, uri: str) -> Any:
            raise resolution_error(f"{uri!r} is outside the schema and is not retrieved")

    resolver = LocalResolver.from_schema(schema, id_of=getattr(cls, "ID_OF", None) or _id_of)
    return cls(schema, format_checker=checker, resolver=resolver), (resolution_error, _Refused)


def _id_of(schema: Any) -> str:
    return schema.get("$id", "") if isinstance(schema, dict) else ""


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
    check_local_refs(schema)
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidSchema(
            f"not a valid JSON Schema at {format_path(exc.absolute_path)}: {exc.message}"
        ) from None
    checker = getattr(cls, "FORMAT_CHECKER", None)
    validator, unresolvable = _validator(cls, schema, checker)
    try:
        errors = sorted(validator.iter_errors(payload), key=_sort_key)
    except unresolvable as exc:
        raise InvalidSchema(f"a reference in the schema cannot be resolved: {exc}") from None
    violations = [f"{format_path(e.absolute_path)}: {e.message}" for e in errors]
    if len(violations) > MAX_VIOLATIONS:
        more = len(violations) - MAX_VIOLATIONS
        violations = [*violations[:MAX_VIOLATIONS], f"... and {more} more"]
    return violations
