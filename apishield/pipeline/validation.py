"""Stage 10 — request validation against the API's OpenAPI description (OWASP API3, API8).

Built only when the policy has an ``openapi`` section. The spec is loaded and every matched
operation compiled at start-up (:mod:`apishield.schema.validate`), so a bad spec stops the
gateway with a located ``ConfigError`` instead of failing requests. Per request the stage reads
the path parameters routing extracted, the query, headers and cookies, and the JSON body the
content stage already parsed (it is never parsed twice).

A refusal is ``schema_violation`` (400, or 422 for a JSON body that fails its schema), logged
once on ``apishield.validation`` with the location and field of the first failure, never a
value. In report mode the request goes on and the code is added to the audit event's
``reported`` list.
"""

from __future__ import annotations

import logging

from apishield.errors import ConfigError, HTTPError, SchemaViolationError
from apishield.pipeline.content import parse_media_type
from apishield.pipeline.context import get_context
from apishield.policy.models import OpenAPISettings, Policy
from apishield.schema.loader import load_openapi
from apishield.schema.validate import NO_BODY, RequestValidator, ValidationOptions
from apishield.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ValidationMiddleware", "build_validation_stage"]

logger = logging.getLogger("apishield.validation")


def _body_framing(headers: list[tuple[bytes, bytes]]) -> tuple[bool, str | None]:
    """Whether a body is sent, and its media type."""
    has_body = False
    content_type: str | None = None
    for name, value in headers:
        if name == b"content-length":
            has_body = has_body or value.strip() not in (b"", b"0")
        elif name == b"transfer-encoding":
            has_body = True
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    media_type = parse_media_type(content_type)[0] if content_type is not None else None
    return has_body, media_type


_FRAMED = (None, "1.0", "1.1")  # versions whose bodies are announced by a header


def _replay(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that answers ``first`` once, then defers to the real one."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


class ValidationMiddleware:
    """Refuses (or reports) requests that do not match their OpenAPI operation."""

    def __init__(self, app: ASGIApp, *, validator: RequestValidator, report: bool = False) -> None:
        self.app = app
        self.validator = validator
        self.report = report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        match = ctx.route
        operation = (
            self.validator.for_route(match.route, scope["method"]) if match is not None else None
        )
        if operation is None or match is None:
            await self.app(scope, receive, send)  # no operation in the spec: not validated
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        has_body, media_type = _body_framing(headers)
        body = ctx.extra.get("json", NO_BODY)
        if not has_body and body is NO_BODY and scope.get("http_version") not in _FRAMED:
            # HTTP/2 and 3 send a body without Content-Length or Transfer-Encoding: look at
            # the first message, or a body the spec does not allow would pass unseen.
            first = await receive()
            has_body = first["type"] == "http.request" and bool(
                first.get("body") or first.get("more_body")
            )
            receive = _replay(first, receive)
        try:
            operation.check(
                path_values=list(match.params.values()),
                query=scope.get("query_string", b""),
                headers=headers,
                media_type=media_type,
                has_body=has_body or body is not NO_BODY,
                body=body,
            )
        except HTTPError as exc:
            first = exc.errors[0] if isinstance(exc, SchemaViolationError) and exc.errors else {}
            logger.warning(
                "validation %s request_id=%s code=%s status=%d location=%s field=%s count=%d",
                "reported" if self.report else "refused",
                ctx.request_id,
                exc.code,
                exc.status,
                first.get("location", "body"),
                first.get("field", ""),
                len(exc.errors) if isinstance(exc, SchemaViolationError) else 1,
            )
            if not self.report:
                raise
            if exc.code not in ctx.reported:
                ctx.reported.append(exc.code)
        await self.app(scope, receive, send)


def build_validation_stage(app: ASGIApp, policy: Policy) -> ASGIApp:
    """Stage 10 over ``app`` when ``policy.openapi`` is set, else ``app`` itself.

    Raises ``ConfigError`` (the loader's ``SpecError``, located in the spec) when the spec
    cannot be loaded or one of its schemas or parameters cannot be compiled.
    """
    settings: OpenAPISettings | None = policy.openapi
    if settings is None:
        return app
    spec = load_openapi(settings.spec)
    options = ValidationOptions(
        max_string_length=settings.max_string_length, unknown_query=settings.unknown_query
    )
    try:
        validator = RequestValidator(spec, policy.routes, options)
    except RecursionError:
        raise ConfigError(f"{settings.spec}: a schema nests too deeply to compile") from None
    return ValidationMiddleware(app, validator=validator, report=settings.mode == "report")
