"""Request validation against the OpenAPI description, without I/O (stage 10's core).

Everything is compiled once, at start-up: each policy route is matched to the spec operation
with the same method and path template (parameter names may differ: ``/orders/{id}`` is
``/orders/{order_id}``; the spec's server path, such as ``/v2``, may prefix the template), and
each of that operation's parameters and JSON bodies gets a compiled, tightened schema
(:mod:`apishield.schema.compile`). A policy route without an operation is not validated.

What a request must satisfy, and the status of the refusal (``schema_violation``):

- 400: a parameter (path, query, header, cookie) is missing, repeated, or fails its schema;
  a query parameter the operation does not declare (``unknown_query: refuse``, the default);
  a body sent to an operation that takes none, or none sent where one is required;
- 422 (RFC 9110 §15.5.21): the body is well-formed JSON of a declared media type and fails
  its schema. Only a request whose every violation is of this kind gets 422;
- 415 (``unsupported_media_type``): the body's media type is not one the operation declares.

Bodies of media types other than JSON are not validated here; their size is bounded by the
content stage and their values are read by inspection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from apishield.errors import ConfigError, SchemaViolationError, UnsupportedMediaTypeError
from apishield.policy.models import Route
from apishield.schema.compile import (
    DEFAULT_MAX_STRING_LENGTH,
    MAX_ERRORS,
    CompiledSchema,
    Violation,
    compile_schema,
    request_schema,
    safe_pointer,
)
from apishield.schema.params import (
    COOKIE_UNSAFE,
    ParameterError,
    ParameterReader,
    parse_cookies,
    parse_query,
    plan_parameter,
)
from apishield.schema.spec import OpenAPISpec, Operation

__all__ = [
    "NO_BODY",
    "OperationValidator",
    "RequestValidator",
    "ValidationOptions",
    "path_shape",
]

NO_BODY: Any = object()  # the JSON body was not parsed (none sent, or not JSON)
UnknownQuery = Literal["refuse", "allow"]
_PARAM = re.compile(r"\{[^{}/]*\}")
# OpenAPI 3.1 §4.8.12.1: these header parameters are ignored; other fields describe them.
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_UNKNOWN = "is not a parameter this operation declares"
_UNPLAIN_COOKIE = "holds a quote or a backslash, which applications unescape differently"


def path_shape(template: str) -> str:
    """``/orders/{order_id}`` → ``/orders/{}``: templates compared without parameter names."""
    return _PARAM.sub("{}", template)


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """The ``openapi`` settings that shape compilation."""

    max_string_length: int = DEFAULT_MAX_STRING_LENGTH
    unknown_query: UnknownQuery = "refuse"


@dataclass(frozen=True, slots=True)
class _Param:
    reader: ParameterReader
    schema: CompiledSchema | None


class OperationValidator:
    """One operation's compiled checks. ``check`` raises the refusal, or returns."""

    def __init__(self, operation: Operation, options: ValidationOptions, *, source: str) -> None:
        self.operation = operation
        self.unknown_query = options.unknown_query
        bound = options.max_string_length
        path: dict[str, _Param] = {}
        self.query: dict[str, _Param] = {}
        self.headers: dict[bytes, _Param] = {}
        self.cookies: dict[str, _Param] = {}
        for param in operation.parameters:
            where = f"{source}: {param.pointer or operation.pointer}: {param.location} " + (
                f"parameter {param.name!r}"
            )
            if param.location == "header" and param.name.lower() in _IGNORED_HEADERS:
                continue
            try:
                reader = plan_parameter(param)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            compiled = (
                compile_schema(request_schema(param.schema, max_string_length=bound), where=where)
                if param.schema is not None
                else None
            )
            entry = _Param(reader, compiled)
            if param.location == "path":
                path[param.name] = entry
            elif param.location == "query":
                self.query[param.name] = entry
            elif param.location == "header":
                self.headers[param.name.lower().encode("latin-1")] = entry
            else:
                self.cookies[param.name] = entry
        # Path values arrive by position: the policy may name them differently than the spec.
        self.path: tuple[tuple[str, _Param | None], ...] = tuple(
            (name[1:-1], path.get(name[1:-1])) for name in _PARAM.findall(operation.path)
        )
        self.bodies: dict[str, CompiledSchema | None] = {}
        for media in operation.request_body:
            media_type = media.media_type.split(";", 1)[0].strip().lower()
            self.bodies[media_type] = (
                compile_schema(
                    request_schema(media.schema, max_string_length=bound),
                    where=f"{source}: {operation.pointer}: requestBody {media_type}",
                )
                if media.schema is not None
                else None
            )

    def check(
        self,
        *,
        path_values: Sequence[str],
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        media_type: str | None,
        has_body: bool,
        body: Any = NO_BODY,
    ) -> None:
        """Raise ``SchemaViolationError`` (400/422) or ``UnsupportedMediaTypeError`` (415).

        ``path_values`` are the path's parameter values in template order, ``headers`` the
        ASGI header list (lower-case names), ``body`` the parsed JSON body or ``NO_BODY``.
        Trusts the content stage to have parsed ``body`` strictly and bounded its depth.
        """
        params = self._parameters(path_values, query, headers)
        found = self._body(media_type, has_body, body)
        if params or found is not None:
            body_only = not params and found is not None and found[1]
            violations = [*params, *(found[0] if found is not None else [])][:MAX_ERRORS]
            raise SchemaViolationError(
                [v.as_dict() for v in violations],
                status=422 if body_only else 400,
                hint=_hint(violations[0]),
            )

    def _parameters(
        self, path_values: Sequence[str], query: bytes, headers: list[tuple[bytes, bytes]]
    ) -> list[Violation]:
        found: list[Violation] = []
        for (name, param), value in zip(self.path, path_values, strict=False):
            if param is not None:
                found.extend(_check(param, name, [value]))
        if self.query or query:
            try:
                values = parse_query(query)
            except ParameterError as exc:
                return [*found, Violation("query", "", str(exc))]
            for name, param in self.query.items():
                found.extend(_check(param, name, values.get(name)))
            if self.unknown_query == "refuse":
                for name in values:
                    if name not in self.query:
                        found.append(Violation("query", safe_pointer([name])[1:], _UNKNOWN))
        if self.headers:
            sent: dict[bytes, list[str]] = {}
            for raw_name, raw_value in headers:
                if raw_name in self.headers:
                    sent.setdefault(raw_name, []).append(raw_value.decode("latin-1"))
            for key, param in self.headers.items():
                lines = sent.get(key)
                if lines and len(lines) > 1 and param.reader.array:
                    lines = [", ".join(lines)]  # RFC 9110 §5.3: field lines combine as a list
                found.extend(_check(param, param.reader.name, lines))
        if self.cookies:
            cookies = parse_cookies(headers)
            for name, param in self.cookies.items():
                occurrences = cookies.get(name)
                if occurrences and any(COOKIE_UNSAFE.intersection(value) for value in occurrences):
                    found.append(Violation("cookie", name, _UNPLAIN_COOKIE))
                    continue
                found.extend(_check(param, name, occurrences))
        return found

    def _body(
        self, media_type: str | None, has_body: bool, body: Any
    ) -> tuple[list[Violation], bool] | None:
        """Violations of the body and whether they are schema failures of parsed JSON."""
        if not self.bodies:
            if has_body:
                return [Violation("body", "", "this operation takes no request body")], False
            return None
        if not has_body:
            if self.operation.body_required:
                return [Violation("body", "", "a request body is required")], False
            return None
        media_type = (media_type or "").lower()
        key: str | None = media_type
        if key not in self.bodies:
            key = next(
                (k for k in (media_type.split("/", 1)[0] + "/*", "*/*") if k in self.bodies), None
            )
        if key is None:
            raise UnsupportedMediaTypeError(
                hint="send one of: " + ", ".join(sorted(self.bodies)),
            )
        schema = self.bodies[key]
        if schema is None or not _is_json(media_type):
            return None
        if body is NO_BODY:
            # Parsing was skipped (the content stage in report mode): fail closed.
            return [Violation("body", "", "the JSON body could not be read")], False
        found = schema.violations(body, "body")
        return (found, True) if found else None


def _check(param: _Param, name: str, values: list[str] | None) -> list[Violation]:
    location = param.reader.location
    if not values:
        if param.reader.required:
            return [Violation(location, name, "is required")]
        return []
    try:
        value = param.reader.read(values)
    except ParameterError as exc:
        return [Violation(location, name, str(exc))]
    if param.schema is None:
        return []
    return [
        Violation(location, v.field or name, v.message)
        for v in param.schema.violations(value, location, name)
    ]


def _hint(first: Violation) -> str:
    where = f"{first.location} {first.field}".strip()
    return f"the request does not match the API description: {where} {first.message}"


class RequestValidator:
    """Every policy route's operation validator, keyed by the route and the method."""

    def __init__(
        self, spec: OpenAPISpec, routes: Iterable[Route], options: ValidationOptions
    ) -> None:
        prefixes = [""]
        for server in spec.servers:
            prefix = urlsplit(server).path.rstrip("/")
            if prefix and prefix not in prefixes:
                prefixes.append(prefix)
        by_shape: dict[tuple[str, str], Operation] = {}
        for op in spec.operations:
            for prefix in prefixes:
                by_shape.setdefault((path_shape(prefix + op.path), op.method), op)
        compiled: dict[int, OperationValidator] = {}
        self.validators: dict[tuple[int, str], OperationValidator] = {}
        source = str(spec.source)
        for route in routes:
            shape = path_shape(route.path)
            for method in route.methods:
                found = by_shape.get((shape, method))
                if found is None:
                    continue
                if id(found) not in compiled:
                    compiled[id(found)] = OperationValidator(found, options, source=source)
                self.validators[(id(route), method)] = compiled[id(found)]
                if method == "GET" and (shape, "HEAD") not in by_shape:
                    self.validators[(id(route), "HEAD")] = compiled[id(found)]

    def for_route(self, route: Route, method: str) -> OperationValidator | None:
        """The validator of ``route`` (a policy ``Route``) for ``method``; ``None``: none."""
        return self.validators.get((id(route), method))
