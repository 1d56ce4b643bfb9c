"""``load_openapi``: an OpenAPI 3.0 or 3.1 spec (YAML or JSON, split across files) to an
``OpenAPISpec`` whose schemas are self-contained JSON Schema 2020-12.

Trust: the spec comes from the API's team and is read once at start-up. Every problem is a
``SpecError`` naming the file, the line and the field (``openapi.yaml:42:
paths./orders.post.requestBody: ...``). What the files may contain and reach (size, aliases,
``$ref`` outside the spec's folder or on the network) is bounded in ``sources``; how schemas
are translated is in ``dialect``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from apishield.schema.dialect import SchemaTranslator
from apishield.schema.sources import Document, Documents, Pointer, SpecError, get
from apishield.schema.spec import MediaSchema, OpenAPISpec, Operation, Parameter

__all__ = ["SpecError", "load_openapi"]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
LOCATIONS = ("path", "query", "header", "cookie")
# OpenAPI 3.0.3 §4.7.12: these header parameters are described elsewhere and SHALL be ignored.
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_VERSION = re.compile(r"^3\.([01])\.\d+(-[0-9A-Za-z.-]+)?$")
_DIALECTS_31 = frozenset(
    {
        "https://spec.openapis.org/oas/3.1/dialect/base",
        "https://json-schema.org/draft/2020-12/schema",
    }
)


def load_openapi(path: str | Path) -> OpenAPISpec:
    """Read the spec at ``path`` and every file its ``$ref`` reach, and resolve them all.

    Raises ``SpecError`` (a ``ConfigError``) with a one-line, located message.
    """
    docs = Documents(path)
    root = docs.root
    if not isinstance(root.data, dict):
        raise root.error((), "an OpenAPI document is a mapping with an 'openapi' field")
    dialect = _dialect(root)
    return _Reader(docs, dialect).read()


def _dialect(root: Document) -> str:
    data = root.data
    if "swagger" in data:
        raise root.error(
            ("swagger",),
            f"Swagger {data['swagger']} is not supported: convert the spec to OpenAPI 3 "
            "(3.0 or 3.1) first",
        )
    version = data.get("openapi")
    if version is None:
        raise root.error((), "not an OpenAPI document: the 'openapi' field is missing")
    if not isinstance(version, str):
        raise root.error(("openapi",), f'write the version as a quoted string, e.g. "{version}.0"')
    match = _VERSION.match(version)
    if match is None:
        raise root.error(("openapi",), f"OpenAPI {version} is not supported: use 3.0.x or 3.1.x")
    dialect = f"3.{match[1]}"
    schema_dialect = data.get("jsonSchemaDialect")
    if dialect == "3.1" and schema_dialect is not None and schema_dialect not in _DIALECTS_31:
        raise root.error(
            ("jsonSchemaDialect",),
            f"{schema_dialect!r} is not supported: schemas must be JSON Schema 2020-12",
        )
    return dialect


class _Reader:
    def __init__(self, docs: Documents, dialect: str) -> None:
        self.docs = docs
        self.root = docs.root
        self.schemas = SchemaTranslator(docs, dialect)

    def mapping(self, doc: Document, pointer: Pointer, what: str) -> dict[str, Any]:
        value = get(doc.data, pointer)
        if not isinstance(value, dict):
            raise doc.error(pointer, f"{what} must be a mapping")
        return value

    def read(self) -> OpenAPISpec:
        data = self.root.data
        info = data.get("info")
        if not isinstance(info, dict):
            raise self.root.error(("info",), "the 'info' mapping (title, version) is required")
        security_schemes = self.security_schemes()
        default_security = self.security((), security_schemes)
        operations: list[Operation] = []
        if "paths" in data:
            paths = self.mapping(self.root, ("paths",), "paths")
            for template in paths:
                if template.startswith("x-"):
                    continue
                here: Pointer = ("paths", template)
                if not template.startswith("/"):
                    raise self.root.error(here, f"{template!r}: a path must start with '/'")
                operations += self.path_item(template, here, default_security, security_schemes)
        servers = tuple(
            str(s["url"])
            for s in data.get("servers") or []
            if isinstance(s, dict) and isinstance(s.get("url"), str)
        )
        return OpenAPISpec(
            source=self.docs.root_path,
            openapi=data["openapi"],
            title=str(info.get("title", "")),
            version=str(info.get("version", "")),
            servers=servers,
            security_schemes=security_schemes,
            operations=tuple(operations),
        )

    def security_schemes(self) -> dict[str, dict[str, Any]]:
        components = self.root.data.get("components") or {}
        if not isinstance(components, dict) or "securitySchemes" not in components:
            return {}
        pointer: Pointer = ("components", "securitySchemes")
        found = self.mapping(self.root, pointer, "securitySchemes")
        out: dict[str, dict[str, Any]] = {}
        for name in found:
            doc, at, value = self.docs.resolve(self.root, (*pointer, name))
            if not isinstance(value, dict) or not isinstance(value.get("type"), str):
                raise doc.error(at, "a security scheme is a mapping with a 'type'")
            out[name] = value
        return out

    def security(
        self, pointer: Pointer, schemes: dict[str, dict[str, Any]], doc: Document | None = None
    ) -> tuple[dict[str, tuple[str, ...]], ...] | None:
        doc = doc or self.root
        holder = get(doc.data, pointer)
        value = holder.get("security") if isinstance(holder, dict) else None
        if not value:  # absent or [] : no security requirement
            return None
        here = (*pointer, "security")
        if not isinstance(value, list):
            raise doc.error(here, "security is a list of requirements")
        requirements: list[dict[str, tuple[str, ...]]] = []
        for i, requirement in enumerate(value):
            if not isinstance(requirement, dict):
                raise doc.error(
                    (*here, str(i)), "a security requirement maps scheme names to scopes"
                )
            entry: dict[str, tuple[str, ...]] = {}
            for name, scopes in requirement.items():
                if name not in schemes:
                    raise doc.error(
                        (*here, str(i), name),
                        f"{name!r} is not in components.securitySchemes",
                    )
                if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                    raise doc.error((*here, str(i), name), "scopes are a list of strings")
                entry[name] = tuple(scopes)
            requirements.append(entry)
        return tuple(requirements)

    def path_item(
        self,
        template: str,
        pointer: Pointer,
        default_security: tuple[dict[str, tuple[str, ...]], ...] | None,
        schemes: dict[str, dict[str, Any]],
    ) -> list[Operation]:
        doc, at, item = self.docs.resolve(self.root, pointer)
        if not isinstance(item, dict):
            raise doc.error(at, "a path item must be a mapping")
        shared = self.parameters(doc, at, item)
        out: list[Operation] = []
        for method in METHODS:
            if method not in item:
                continue
            op_at = (*at, method)
            op = self.mapping(doc, op_at, "an operation")
            params = {(p.name, p.location): p for p in shared}
            params.update({(p.name, p.location): p for p in self.parameters(doc, op_at, op)})
            security = default_security
            if "security" in op:
                security = self.security(op_at, schemes, doc)
            body_required, body = self.request_body(doc, op_at, op)
            tags = op.get("tags") or []
            out.append(
                Operation(
                    path=template,
                    method=method.upper(),
                    operation_id=_text(op.get("operationId")),
                    summary=_text(op.get("summary")),
                    parameters=tuple(params.values()),
                    body_required=body_required,
                    request_body=body,
                    responses=self.responses(doc, op_at, op),
                    security=security,
                    deprecated=op.get("deprecated") is True,
                    tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
                    pointer=self.docs.reference(doc, op_at),
                )
            )
        return out

    def parameters(
        self, doc: Document, pointer: Pointer, holder: dict[str, Any]
    ) -> list[Parameter]:
        if "parameters" not in holder:
            return []
        here = (*pointer, "parameters")
        listed = get(doc.data, here)
        if not isinstance(listed, list):
            raise doc.error(here, "parameters must be a list")
        out: list[Parameter] = []
        seen: set[tuple[str, str]] = set()
        for i in range(len(listed)):
            pdoc, at, param = self.docs.resolve(doc, (*here, str(i)))
            if not isinstance(param, dict):
                raise pdoc.error(at, "a parameter must be a mapping")
            name, location = param.get("name"), param.get("in")
            if not isinstance(name, str) or not name:
                raise pdoc.error(at, "a parameter needs a 'name'")
            if location not in LOCATIONS:
                raise pdoc.error((*at, "in"), f"'in' must be one of {', '.join(LOCATIONS)}")
            if (name, location) in seen:
                raise pdoc.error(at, f"the {location} parameter {name!r} is listed twice")
            seen.add((name, location))
            required = param.get("required", False)
            if location == "path" and required is not True:
                raise pdoc.error(at, f"path parameter {name!r} must say 'required: true'")
            if location == "header" and name.lower() in _IGNORED_HEADERS:
                continue
            schema = None
            if "schema" in param:
                schema = self.schemas.schema(pdoc, (*at, "schema"))
            elif "content" in param:
                media = self.content(pdoc, at, param)
                if len(media) != 1:
                    raise pdoc.error((*at, "content"), "a parameter's content has one media type")
                schema = media[0].schema
            style, explode = param.get("style"), param.get("explode")
            out.append(
                Parameter(
                    name=name,
                    location=location,
                    required=required is True,
                    schema=schema,
                    style=style if isinstance(style, str) else None,
                    explode=explode if isinstance(explode, bool) else None,
                    pointer=self.docs.reference(pdoc, at),
                )
            )
        return out

    def content(
        self, doc: Document, pointer: Pointer, holder: dict[str, Any]
    ) -> tuple[MediaSchema, ...]:
        if "content" not in holder:
            return ()
        here = (*pointer, "content")
        media = self.mapping(doc, here, "content")
        out: list[MediaSchema] = []
        for media_type in media:
            entry = (*here, media_type)
            value = self.mapping(doc, entry, "a media type object")
            schema = self.schemas.schema(doc, (*entry, "schema")) if "schema" in value else None
            out.append(MediaSchema(media_type=media_type, schema=schema))
        return tuple(out)

    def request_body(
        self, doc: Document, pointer: Pointer, op: dict[str, Any]
    ) -> tuple[bool, tuple[MediaSchema, ...]]:
        if "requestBody" not in op:
            return False, ()
        bdoc, at, body = self.docs.resolve(doc, (*pointer, "requestBody"))
        if not isinstance(body, dict):
            raise bdoc.error(at, "requestBody must be a mapping")
        if "content" not in body:
            raise bdoc.error(at, "requestBody needs 'content' (media types and their schemas)")
        return body.get("required") is True, self.content(bdoc, at, body)

    def responses(
        self, doc: Document, pointer: Pointer, op: dict[str, Any]
    ) -> dict[str, tuple[MediaSchema, ...]]:
        if "responses" not in op:
            return {}
        here = (*pointer, "responses")
        out: dict[str, tuple[MediaSchema, ...]] = {}
        for status in self.mapping(doc, here, "responses"):
            if status.startswith("x-"):
                continue
            rdoc, at, response = self.docs.resolve(doc, (*here, status))
            if not isinstance(response, dict):
                raise rdoc.error(at, "a response must be a mapping")
            out[status] = self.content(rdoc, at, response)
        return out


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
