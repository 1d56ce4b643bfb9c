"""Request schemas, tightened and compiled once at start-up.

The validator is ``jsonschema_rs`` (draft 2020-12), chosen by ``bench/schema_micro.py``: CPU µs
per validation on the 2-core machine of DESIGN's budget, median of four runs (each the median
of 5 rounds), valid / invalid body:

==========================  =============  ==============
body                        jsonschema_rs  fastjsonschema
==========================  =============  ==============
small order                 1.1 / 0.7      7.3 / 12.3
order of 50 lines           8.6 / 7.6      84 / 101
nested customer record      1.0 / 1.0      7.2 / 8.2
compile (nested schema)     40             4700
==========================  =============  ==============

Beyond being 7 to 13 times cheaper, it is the only one of the two that implements draft
2020-12: ``fastjsonschema`` (drafts 4-7) ignores ``unevaluatedProperties`` and ``prefixItems``,
and mass-assignment protection through ``allOf`` rests on ``unevaluatedProperties``. Both
enforce the formats ``email``, ``uuid``, ``date-time`` and ``uri``; only ``jsonschema_rs``
reports the failing field as a JSON path (``fastjsonschema`` gives an English sentence that
quotes the data).

Tightening (:func:`request_schema`) happens on a copy; the loaded spec is never changed:

- **mass assignment** (OWASP API3:2023): an object schema that declares properties and says
  neither ``additionalProperties`` nor ``unevaluatedProperties`` gets
  ``unevaluatedProperties: false`` at its instance location, never inside ``allOf``/``anyOf``/
  ``oneOf`` branches or ``$defs``: there it would refuse the properties other branches declare.
  An object that declares no properties at all (``type: object``) is OpenAPI's free-form
  object and stays open;
- **readOnly**: a ``readOnly`` property may not be sent in a request (OpenAPI 3.1 §4.8.24.1),
  so its schema becomes ``false`` and it leaves ``required``;
- **string bound**: a schema of ``type: string`` without ``maxLength`` gets the configured
  bound, so that no field is unbounded short of the whole body limit;
- **integer formats**: ``format: int32`` or ``int64`` without bounds gets that range.

Nothing is changed under ``not`` or ``if``: a tighter schema there would loosen the whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from apishield.errors import ConfigError
from apishield.identity.verifier import redact_credential_like

__all__ = [
    "DEFAULT_MAX_STRING_LENGTH",
    "CompiledSchema",
    "Violation",
    "compile_schema",
    "request_schema",
    "safe_pointer",
]

JSONSchema = dict[str, Any]
DEFAULT_MAX_STRING_LENGTH = 4096
MAX_ERRORS = 20  # a development-mode list longer than this helps nobody and costs CPU
_UNDECLARED = "is not a property the schema declares"

# A pattern with back-references or look-around runs on a backtracking engine: bound its work
# so that an operator's careless pattern cannot become a denial of service.
_PATTERNS = jsonschema_rs.FancyRegexOptions(backtrack_limit=100_000)

# Keywords whose subschemas describe the same instance (in place) or another one (a child).
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("then", "else")
_CHILD_MAPS = ("properties", "patternProperties")
_CHILD_ONE = (
    "items",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "additionalItems",
)
# "not", "if" and "contains" are copied as they are: see the module docstring.
# OpenAPI's integer formats (§4.4): JSON Schema leaves them unchecked, but a value past them
# overflows the API's column or field, which some stacks wrap around instead of refusing.
_INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-@$]{1,64}$")


@dataclass(frozen=True, slots=True)
class Violation:
    """One failing field: where (``query``, ``body``...), which (a name or a JSON pointer), why.

    ``message`` is written from the schema, never from the submitted value: a value may be a
    credential or an attack, and it would be echoed back or into logs.
    """

    location: str
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"location": self.location, "field": self.field, "message": self.message}


def _types(schema: JSONSchema) -> tuple[str, ...]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, list):
        return tuple(t for t in declared if isinstance(t, str))
    return ()


def _resolve(ref: object, root: JSONSchema) -> Any:
    """The local target of ``ref`` (``#/$defs/Name``); ``None`` for anything else."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _declares_properties(schema: Any, root: JSONSchema, seen: set[int]) -> bool:
    """Whether ``schema`` or a schema in place of it (combinators, ``$ref``) lists properties."""
    if not isinstance(schema, dict) or id(schema) in seen:
        return False
    seen.add(id(schema))
    if "properties" in schema or "patternProperties" in schema:
        return True
    branches: list[Any] = [_resolve(schema.get("$ref"), root)]
    for key in _IN_PLACE_LISTS:
        branches.extend(schema.get(key) or ())
    branches.extend(schema.get(key) for key in _IN_PLACE_ONE)
    return any(_declares_properties(b, root, seen) for b in branches)


def _read_only(schema: Any, root: JSONSchema, seen: set[int] | None = None) -> bool:
    """Whether ``schema`` says ``readOnly``, itself or through ``$ref`` or an ``allOf`` branch.

    Annotations of every ``allOf`` branch apply to the instance: a 3.1 ``$ref`` with a sibling
    ``description`` becomes ``allOf: [target]``, and 3.0 specs wrap a ``$ref`` in ``allOf`` to
    describe it, so the ``readOnly`` of the referred schema must be seen there too.
    """
    seen = set() if seen is None else seen
    if not isinstance(schema, dict) or id(schema) in seen:
        return False
    seen.add(id(schema))
    if schema.get("readOnly") is True:
        return True
    branches: list[Any] = [_resolve(schema.get("$ref"), root), *(schema.get("allOf") or ())]
    return any(_read_only(branch, root, seen) for branch in branches)


def request_schema(schema: JSONSchema, *, max_string_length: int) -> JSONSchema:
    """A tightened copy of ``schema`` for validating requests (see the module docstring).

    Trusts ``schema`` to be self-contained draft 2020-12, as the loader produces it: local
    references only, recursion through ``$defs``.
    """

    def walk(node: Any, at_instance: bool) -> Any:
        if not isinstance(node, dict):
            return node
        out: JSONSchema = dict(node)
        types = _types(node)
        if "string" in types and "maxLength" not in node:
            out["maxLength"] = max_string_length
        if "integer" in types and node.get("format") in _INTEGER_RANGES:
            low, high = _INTEGER_RANGES[node["format"]]
            if "minimum" not in node and "exclusiveMinimum" not in node:
                out["minimum"] = low
            if "maximum" not in node and "exclusiveMaximum" not in node:
                out["maximum"] = high
        for key in _CHILD_MAPS:
            children = node.get(key)
            if isinstance(children, dict):
                out[key] = {
                    name: False
                    if key == "properties" and _read_only(sub, schema)
                    else walk(sub, True)
                    for name, sub in children.items()
                }
        properties = node.get("properties")
        if isinstance(properties, dict) and isinstance(node.get("required"), list):
            out["required"] = [
                name for name in node["required"] if not _read_only(properties.get(name), schema)
            ]
        for key in _CHILD_ONE:
            if key in node:
                out[key] = walk(node[key], True)
        if isinstance(node.get("prefixItems"), list):
            out["prefixItems"] = [walk(sub, True) for sub in node["prefixItems"]]
        for key in _IN_PLACE_LISTS:
            if isinstance(node.get(key), list):
                out[key] = [walk(sub, False) for sub in node[key]]
        for key in _IN_PLACE_ONE:
            if key in node:
                out[key] = walk(node[key], False)
        for key in ("$defs", "dependentSchemas"):
            if isinstance(node.get(key), dict):
                out[key] = {name: walk(sub, False) for name, sub in node[key].items()}
        if (
            at_instance
            and "additionalProperties" not in node
            and "unevaluatedProperties" not in node
            and _declares_properties(node, schema, set())
        ):
            out["unevaluatedProperties"] = False
        return out

    tightened: JSONSchema = walk(schema, True)
    return tightened


def safe_pointer(path: list[str | int] | tuple[str | int, ...]) -> str:
    """A JSON pointer (RFC 6901) to a field; names that are not plain identifiers are masked.

    Property names come from the client too: one that is not a plain name may be the payload.
    """
    parts = []
    for part in path:
        if isinstance(part, int):
            parts.append(str(part))
        elif _SAFE_SEGMENT.match(part):
            # A plain name may still be a pasted key or token: shown as its fingerprint.
            parts.append(redact_credential_like(part).replace("~", "~0").replace("/", "~1"))
        else:
            parts.append("<name>")
    return "/" + "/".join(parts) if parts else ""


def _message(kind: Any) -> str:
    name = kind.name
    detail = kind.as_dict()
    limit = detail.get("limit")
    simple = {
        "maxLength": f"must be at most {limit} characters long",
        "minLength": f"must be at least {limit} characters long",
        "maximum": f"must be at most {limit}",
        "minimum": f"must be at least {limit}",
        "exclusiveMaximum": f"must be less than {limit}",
        "exclusiveMinimum": f"must be greater than {limit}",
        "maxItems": f"must have at most {limit} items",
        "minItems": f"must have at least {limit} items",
        "maxProperties": f"must have at most {limit} properties",
        "minProperties": f"must have at least {limit} properties",
        "uniqueItems": "must not repeat items",
        "enum": "is not one of the allowed values",
        "const": "is not the required value",
        "falseSchema": "is not allowed here (a read-only or forbidden field)",
        "anyOf": "matches none of the allowed shapes",
        "oneOfNotValid": "matches none of the allowed shapes",
        "oneOfMultipleValid": "matches more than one of the allowed shapes",
        "not": "matches a shape that is not allowed",
        "contains": "has no item of the required shape",
    }
    if name in simple:
        return simple[name]
    if name == "type":
        return "must be of type " + " or ".join(str(t) for t in detail.get("types", ()))
    if name == "format":
        return f"is not a valid {detail.get('format')}"
    if name == "pattern":
        return f"does not match the pattern {detail.get('pattern')}"
    if name == "multipleOf":
        return f"must be a multiple of {detail.get('multiple_of')}"
    if name == "required":
        return f"the required property {detail.get('property')!r} is missing"
    if name == "backtrackLimitExceeded":
        return "could not be checked against its pattern in bounded time"
    return f"fails the schema's {name!r} rule"


def _declared_names(schema: Any, out: set[str]) -> set[str]:
    """Every property name any ``properties`` of ``schema`` declares."""
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            out.update(str(name) for name in properties)
        for value in schema.values():
            _declared_names(value, out)
    elif isinstance(schema, list):
        for value in schema:
            _declared_names(value, out)
    return out


class CompiledSchema:
    """One compiled request schema; ``violations`` is empty for a valid instance."""

    __slots__ = ("_validator", "_declared")

    def __init__(self, validator: Any, declared: frozenset[str] = frozenset()) -> None:
        self._validator = validator
        self._declared = declared

    def is_valid(self, instance: Any) -> bool:
        return bool(self._validator.is_valid(instance))

    def violations(self, instance: Any, location: str, field: str = "") -> list[Violation]:
        """The failures of ``instance``, each located under ``field`` (a name or a pointer)."""
        if self._validator.is_valid(instance):
            return []  # the fast path: a valid request costs one native call
        found: list[Violation] = []
        unevaluated: list[tuple[str, str]] = []
        for error in self._validator.iter_errors(instance):
            pointer = field + safe_pointer(error.instance_path)
            kind = error.kind
            if kind.name == "unevaluatedProperties":
                unevaluated.extend((pointer, str(name)) for name in kind.unexpected)
            elif kind.name == "additionalProperties":
                found.extend(
                    Violation(location, pointer + safe_pointer([name]), _UNDECLARED)
                    for name in kind.unexpected
                )
            else:
                found.append(Violation(location, pointer, _message(kind)))
            if len(found) + len(unevaluated) >= MAX_ERRORS:
                break
        # A failing branch of allOf contributes no evaluated properties (JSON Schema 2020-12
        # §11.3), so its own valid properties would be listed as undeclared too: when other
        # failures are listed, only names the schema declares nowhere are reported as unknown.
        for pointer, name in unevaluated:
            if not found or name not in self._declared:
                found.append(Violation(location, pointer + safe_pointer([name]), _UNDECLARED))
        return found[:MAX_ERRORS]


def _never_fetch(uri: str) -> Any:
    # jsonschema_rs fetches a remote `$ref` over HTTP by default (it does for one under
    # `definitions`, say). The loader inlines every reference it knows, but a keyword it copies
    # as it is must not make the gateway reach the network at start-up.
    raise ValueError(f"{uri} is not fetched: schemas refer to the spec's own files only")


def compile_schema(schema: JSONSchema | bool, *, where: str) -> CompiledSchema:
    """Compile ``schema`` (already tightened) or raise ``ConfigError`` naming ``where``."""
    try:
        validator = jsonschema_rs.Draft202012Validator(
            schema, validate_formats=True, pattern_options=_PATTERNS, retriever=_never_fetch
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        # The library's message quotes the schema, which is the operator's own; keep one line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where}: the schema is not valid JSON Schema: {first}") from exc
    return CompiledSchema(validator, frozenset(_declared_names(schema, set())))
