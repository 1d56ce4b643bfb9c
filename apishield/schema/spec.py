"""An OpenAPI 3.0 or 3.1 document, loaded: what validation and ``apishield init`` read.

The loader (``apishield.schema.loader``) resolves every ``$ref`` (across files too) and turns
each schema into a self-contained JSON Schema of draft 2020-12: OpenAPI 3.0's dialect
(``nullable``, boolean ``exclusiveMinimum``…) is translated, and a schema that refers to
itself keeps its recursion through ``$defs`` inside that one schema. Nothing downstream
follows references into the document again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["MediaSchema", "OpenAPISpec", "Operation", "Parameter", "ParameterLocation"]

ParameterLocation = Literal["path", "query", "header", "cookie"]
JSONSchema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Parameter:
    """One operation parameter (path-level and operation-level merged, operation wins)."""

    name: str
    location: ParameterLocation
    required: bool
    schema: JSONSchema | None
    style: str | None = None
    explode: bool | None = None
    pointer: str = ""  # JSON pointer of the parameter in its source file, for error messages


@dataclass(frozen=True, slots=True)
class MediaSchema:
    """A media type of a request body or response and its schema (``None``: no schema given)."""

    media_type: str
    schema: JSONSchema | None


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path template, as the spec declares it."""

    path: str  # the template as written in the spec, e.g. /v1/orders/{order_id}
    method: str  # upper case
    operation_id: str | None
    summary: str | None
    parameters: tuple[Parameter, ...]
    body_required: bool
    request_body: tuple[MediaSchema, ...]  # empty when the operation takes no body
    responses: dict[str, tuple[MediaSchema, ...]]  # status ("200", "4XX", "default") -> media
    security: tuple[dict[str, tuple[str, ...]], ...] | None  # effective requirement, None = none
    deprecated: bool = False
    tags: tuple[str, ...] = ()
    pointer: str = ""  # e.g. #/paths/~1v1~1orders/post


@dataclass(frozen=True, slots=True)
class OpenAPISpec:
    """The loaded document: its version, servers, security schemes and every operation."""

    source: Path
    openapi: str  # the document's own "openapi" field, e.g. "3.0.3" or "3.1.0"
    title: str
    version: str
    servers: tuple[str, ...]
    security_schemes: dict[str, dict[str, Any]]
    operations: tuple[Operation, ...] = field(default_factory=tuple)

    @property
    def base_path(self) -> str:
        """The path every server URL shares (``/api`` for ``https://x.example/api``), or ``""``.

        Clients call ``base_path + operation.path``; when the servers differ in their path, or
        use a variable in it, there is no one prefix and this is ``""``.
        """
        paths = {urlsplit(url).path.rstrip("/") for url in self.servers}
        if len(paths) != 1:
            return ""
        (path,) = paths
        return path if path.startswith("/") and "{" not in path else ""

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation for ``method`` on the template ``path``, if the spec has one."""
        method = method.upper()
        for op in self.operations:
            if op.method == method and op.path == path:
                return op
        return None
