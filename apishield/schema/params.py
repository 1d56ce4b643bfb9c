"""OpenAPI parameters: read from the request as text, turned into typed values, strictly.

Path, query, header and cookie values are strings on the wire; the schema says what they mean.
Coercion is strict, because a lenient one is where a gateway and the application disagree: an
integer is ``-?(0|[1-9][0-9]*)`` (no ``+1``, ``01``, ``1.0`` or ``1e3``), a number is a JSON
number (RFC 8259 §6), a boolean is ``true`` or ``false`` and nothing else. A value that does
not read as its type stays a string, and the schema refuses it with a type message.

Styles (OpenAPI 3.1 §4.8.12.4): ``simple`` for path and header (arrays as ``a,b``), ``form``
for query and cookie (``explode`` defaults to true: ``?a=1&a=2``; false: ``?a=1,2``), and
``spaceDelimited``/``pipeDelimited`` for query arrays. Object-valued parameters and the
``deepObject``, ``matrix`` and ``label`` styles are refused at start-up: each framework reads
them its own way, which is the disagreement strictness is meant to rule out.

A parameter that is not an array and arrives more than once is refused: HTTP parameter
pollution relies on the gateway checking one copy and the application using the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from apishield.schema.spec import Parameter, ParameterLocation

__all__ = [
    "COOKIE_UNSAFE",
    "MAX_QUERY_FIELDS",
    "ParameterError",
    "ParameterReader",
    "parse_cookies",
    "parse_query",
    "plan_parameter",
]

MAX_QUERY_FIELDS = 1000  # a longer query is a flood, not a request
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,63})")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,63})(?:\.[0-9]{1,64})?(?:[eE][+-]?[0-9]{1,4})?")
_STYLES: dict[ParameterLocation, tuple[str, ...]] = {
    "path": ("simple",),
    "query": ("form", "spaceDelimited", "pipeDelimited"),
    "header": ("simple",),
    "cookie": ("form",),
}
_DEFAULT_STYLE: dict[ParameterLocation, str] = {
    "path": "simple",
    "query": "form",
    "header": "simple",
    "cookie": "form",
}
_SEPARATORS = {"simple": ",", "form": ",", "spaceDelimited": " ", "pipeDelimited": "|"}
_SCALARS = frozenset({"string", "integer", "number", "boolean", "null"})
COOKIE_UNSAFE = frozenset('"\\')


class ParameterError(Exception):
    """A parameter that cannot be read (repeated, badly encoded); the message is safe to show."""


def _types(schema: Any) -> tuple[str, ...]:
    if not isinstance(schema, dict):
        return ()
    declared = schema.get("type")
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, list):
        return tuple(t for t in declared if isinstance(t, str))
    return ()


def _local(schema: Any) -> Any:
    """``schema``, or the target of its top-level local ``$ref`` (one hop)."""
    if isinstance(schema, dict) and isinstance(ref := schema.get("$ref"), str):
        node: Any = schema
        for part in ref.removeprefix("#").split("/")[1:]:
            node = (
                node.get(part.replace("~1", "/").replace("~0", "~"))
                if isinstance(node, dict)
                else None
            )
        return node if isinstance(node, dict) else schema
    return schema


def coerce_scalar(raw: str, types: tuple[str, ...]) -> Any:
    """``raw`` as the first of ``types`` it strictly reads as; otherwise ``raw`` unchanged."""
    for kind in types:
        if kind == "integer" and _INTEGER.fullmatch(raw):
            return int(raw)
        if kind == "number" and _NUMBER.fullmatch(raw):
            number = float(raw)
            if number in (float("inf"), float("-inf")):
                continue  # 1e999: no finite number, so not a JSON number either
            return int(raw) if _INTEGER.fullmatch(raw) else number
        if kind == "boolean" and raw in ("true", "false"):
            return raw == "true"
    return raw


@dataclass(frozen=True, slots=True)
class ParameterReader:
    """How to turn one parameter's raw occurrences into the value its schema validates."""

    name: str
    location: ParameterLocation
    required: bool
    types: tuple[str, ...]  # of the value, or of the items for an array
    array: bool
    separator: str | None  # None: one item per occurrence (form, explode: true)

    def read(self, occurrences: list[str]) -> Any:
        """The typed value of ``occurrences`` (at least one); raises ``ParameterError``."""
        if not self.array:
            if len(occurrences) > 1:
                raise ParameterError("is given more than once")
            return coerce_scalar(occurrences[0], self.types)
        if self.separator is None:
            items = occurrences
        else:
            if len(occurrences) > 1:
                raise ParameterError("is given more than once")
            joined = occurrences[0]
            items = [] if joined == "" else joined.split(self.separator)
            if self.location == "header":
                items = [item.strip(" \t") for item in items]  # RFC 9110 §5.6.1 list OWS
        return [coerce_scalar(item, self.types) for item in items]


def plan_parameter(param: Parameter) -> ParameterReader:
    """The reader for ``param``; raises ``ValueError`` (a start-up message) if unsupported."""
    style = param.style or _DEFAULT_STYLE[param.location]
    if style not in _STYLES[param.location]:
        raise ValueError(
            f"style {style!r} is not supported for {param.location} parameters "
            f"(supported: {', '.join(_STYLES[param.location])})"
        )
    schema = _local(param.schema)
    types = _types(schema)
    array = "array" in types
    if array:
        item_schema = _local(schema.get("items")) if isinstance(schema, dict) else None
        item_types = _types(item_schema)
        if (
            not set(item_types) <= _SCALARS
            or isinstance(item_schema, dict)
            and ("properties" in item_schema)
        ):
            raise ValueError("arrays of arrays or objects are not supported as parameters")
        types = item_types
    elif "object" in types or isinstance(schema, dict) and "properties" in schema:
        raise ValueError("object-valued parameters are not supported; declare each field")
    elif style != _DEFAULT_STYLE[param.location]:
        raise ValueError(f"style {style!r} applies to arrays only")
    explode = param.explode if param.explode is not None else style == "form"
    # Exploded query arrays repeat the name (`?id=1&id=2`) whatever the delimiter; `simple`
    # reads `1,2` with or without explode (§4.8.12.4's style table).
    repeated = array and explode and param.location in ("query", "cookie")
    separator = None if repeated else _SEPARATORS[style]
    return ParameterReader(
        name=param.name,
        location=param.location,
        required=param.required or param.location == "path",
        types=tuple(t for t in types if t != "null"),
        array=array,
        separator=separator,
    )


def parse_query(query_string: bytes) -> dict[str, list[str]]:
    """Every query parameter's occurrences, percent-decoded (``+`` is a space, form style).

    Raises ``ParameterError`` for bytes that are not UTF-8 (raw or percent-encoded) and for
    more than ``MAX_QUERY_FIELDS`` parameters.
    """
    found: dict[str, list[str]] = {}
    if not query_string:
        return found
    try:
        text = query_string.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise ParameterError("the query string is not valid UTF-8") from None
    except ValueError:
        raise ParameterError(f"more than {MAX_QUERY_FIELDS} query parameters") from None
    for name, value in pairs:
        found.setdefault(name, []).append(value)
    return found


def parse_cookies(headers: list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """Every cookie's occurrences from the ``Cookie`` header lines (RFC 6265 §5.4 syntax).

    Written by hand: ``http.cookies`` accepts and rewrites a looser grammar (quoted values,
    ``$``-attributes), which would let this stage read a cookie differently than the app.
    A value left with ``"`` or ``\\`` is not RFC 6265 cookie-octets, and frameworks unescape
    it their own way (Python's ``http.cookies`` reads ``"\\047"`` as ``'``): a declared cookie
    holding one is refused (``COOKIE_UNSAFE``).
    """
    found: dict[str, list[str]] = {}
    for name, value in headers:
        if name != b"cookie":
            continue
        for pair in value.decode("latin-1").split(";"):
            key, sep, val = pair.partition("=")
            # Whitespace around the name and the value is not part of them (RFC 6265 §5.2),
            # and frameworks strip any whitespace (Starlette: str.strip, so NBSP and \x0b
            # too): `session\xa0=x` is the cookie `session` to the app, so it is here too.
            key, val = key.strip(), val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]  # RFC 6265 §4.1.1 allows DQUOTEs around a value; apps drop them
            if sep and key:
                found.setdefault(key, []).append(val)
    return found
