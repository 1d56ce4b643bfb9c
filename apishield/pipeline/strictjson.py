"""Strict JSON (RFC 8259 plus the I-JSON rules of RFC 7493 that matter for security).

Refused: nesting deeper than the limit (checked *before* parsing, so a deep document cannot
exhaust the parser's recursion), duplicate object keys (parsers disagree on which one wins, so
a gateway and an upstream could read different values), keys equal but for case or Unicode
compatibility forms (``customer_id`` and ``CUSTOMER_ID`` or ``cuſtomer_id``: Go's
``encoding/json`` and ASP.NET bind such keys to the same field, so an owner check on one could
be bypassed with the other), NaN, Infinity and numbers too large for a double (not JSON; parsers
turn them into different things), lone UTF-16 surrogates (I-JSON §2.1), and text that is not
UTF-8.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from itertools import accumulate
from typing import Any

from apishield.errors import BadRequestError


class JSONRefused(BadRequestError):
    """A body that is not strict JSON."""


# A JSON string: its alternatives cannot overlap, so matching is linear (no backtracking).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_KEEP_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_DELTA = [0] * 256
_DELTA[0x5B] = _DELTA[0x7B] = 1
_DELTA[0x5D] = _DELTA[0x7D] = -1
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def check_depth(body: bytes, limit: int) -> None:
    """Raise when arrays/objects nest deeper than ``limit``; C-speed passes, no recursion."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # cannot nest deeper than the number of openers
    brackets = _STRING.sub(b"", body).translate(None, _KEEP_BRACKETS)
    if brackets and max(accumulate(map(_DELTA.__getitem__, brackets))) > limit:
        raise JSONRefused(code="json_too_deep", hint=f"JSON may nest at most {limit} levels here")


def _fold(key: str) -> str:
    return unicodedata.normalize("NFKC", key).casefold()


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    folded: set[str] = set()
    for key, value in pairs:
        if key in out:
            raise JSONRefused(code="json_duplicate_key", hint="an object names a key twice")
        norm = _fold(key)
        if norm in folded:
            raise JSONRefused(
                code="json_duplicate_key",
                hint="two keys of an object differ only by case or Unicode form",
            )
        folded.add(norm)
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise JSONRefused(code="json_non_finite", hint=f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONRefused(code="json_non_finite", hint="a number is too large for a double")
    return value


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
        value = json.loads(
            text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float
        )
    except JSONRefused:
        raise
    except (ValueError, RecursionError):
        raise JSONRefused(code="json_invalid", hint="the body is not valid JSON") from None
    if "\\u" in text and _SURROGATE.search(text) and _has_lone_surrogate(value):
        raise JSONRefused(code="json_invalid", hint="JSON strings must be valid Unicode")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
