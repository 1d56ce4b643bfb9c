"""Strict JSON (RFC 8259 plus the I-JSON rules of RFC 7493 that matter for security).

Refused: nesting deeper than the limit (checked by a linear scan *before* parsing, so a deep
document cannot exhaust the parser's recursion), duplicate object keys (parsers disagree on
which one wins, so a gateway and an upstream could read different values), NaN and Infinity
(not JSON; many parsers reject them, some turn them into nulls), and text that is not UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

from apishield.errors import BadRequestError


class JSONRefused(BadRequestError):
    """A body that is not strict JSON."""


def check_depth(body: bytes, limit: int) -> None:
    """Raise when arrays/objects nest deeper than ``limit``; one pass, no recursion."""
    depth = 0
    in_string = False
    escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                raise JSONRefused(
                    code="json_too_deep", hint=f"JSON may nest at most {limit} levels here"
                )
        elif byte in (0x5D, 0x7D):
            depth -= 1


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONRefused(code="json_duplicate_key", hint="an object names a key twice")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise JSONRefused(code="json_non_finite", hint=f"{name} is not a JSON number")


def parse_strict_json(body: bytes, *, max_depth: int) -> Any:
    """Parse ``body`` as strict JSON or raise ``JSONRefused`` with a specific code."""
    check_depth(body, max_depth)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONRefused(code="json_invalid", hint="JSON must be UTF-8") from None
    if text.startswith("\ufeff"):
        raise JSONRefused(code="json_invalid", hint="JSON must not start with a byte order mark")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except JSONRefused:
        raise
    except (ValueError, RecursionError):
        raise JSONRefused(code="json_invalid", hint="the body is not valid JSON") from None
