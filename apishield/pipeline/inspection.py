"""Stage 11 — inspection: injection detectors over every value of the request.

The stage hands the request's values to :class:`apishield.inspect.Inspector` and turns its
findings into a 403 refusal with a code per category (``sqli_detected``, ``xss_detected``...),
or, in report mode, into entries of the request's ``reported`` list. A refusal never echoes the
value: the client learns the code, the operator the location, the field and the score (logged on
``apishield.inspect`` and kept in ``ctx.extra["inspection"]`` for the audit stage).

What is inspected: path parameters of the matched route, every query parameter (name and
value), every header except credentials and framing (``Authorization`` tokens are checked by
authentication; cookies are inspected one by one), the JSON body the content stage parsed
(every key and string), and ``application/x-www-form-urlencoded`` and ``multipart/form-data``
bodies, which this stage buffers (the content stage has already bounded their size to the
route's ``body_limit``) and replays to the app byte for byte.

In a multipart body (RFC 7578) every part's field name, every file part's file name (field
``body.<name>.filename``) and the text of every part without a file name (field
``body.<name>``) are inspected. The contents of parts with a file name are not, whatever
their ``Content-Type``: uploads are binary or documents (images, PDFs, CSV, source code) in
which SQL or markup is ordinary data, and the part's ``Content-Type`` is chosen by the client,
so inspecting ``text/*`` files only would be evaded by relabelling the part. Frameworks hand
file parts to the app as files, not as form strings, so what is inspected is what the app
reads as form values. A multipart body that cannot be read unambiguously (no boundary,
truncated, broken or oversized part headers, too many parts, a transfer encoding, control
characters in a name; :mod:`apishield.inspect.multipart`) is refused with 400
``multipart_invalid`` and never forwarded; in report mode it is reported and passed on.

A JSON body that the content stage let through unparsed (its report mode) is inspected as one
text value rather than skipped. Other media types (binary uploads, ``text/plain``) are passed
through without inspection: they are files or opaque data, and a route that accepts them
should validate them itself.

References: OWASP Top 10 A03:2021 Injection; OWASP API Security Top 10 2023 API8 (Security
Misconfiguration) and API10 (Unsafe Consumption); OWASP CRS for the paranoia-level model.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from apishield.errors import BadRequestError, ForbiddenError, PolicyError
from apishield.inspect.engine import Finding, Inspector, RequestParts
from apishield.inspect.multipart import MultipartError, parse_form_data
from apishield.inspect.settings import DetectorName, InspectionSettings
from apishield.pipeline.context import get_context
from apishield.policy.models import Policy
from apishield.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CommandInjectionError",
    "InjectionDetectedError",
    "InspectionMiddleware",
    "NoSQLInjectionError",
    "PathTraversalError",
    "SQLInjectionError",
    "TemplateInjectionError",
    "XSSError",
    "build_inspection_stage",
]

logger = logging.getLogger("apishield.inspect")

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_SAFE_FIELD = re.compile(r"^[A-Za-z0-9_.\-\[\]@]{1,96}$")


class InjectionDetectedError(ForbiddenError):
    """403: a value of the request looks like an injection. Subclasses carry the code."""

    label = "an injection"


class SQLInjectionError(InjectionDetectedError):
    code = "sqli_detected"
    label = "SQL injection"


class NoSQLInjectionError(InjectionDetectedError):
    code = "nosqli_detected"
    label = "NoSQL operator injection"


class CommandInjectionError(InjectionDetectedError):
    code = "cmdi_detected"
    label = "OS command injection"


class XSSError(InjectionDetectedError):
    code = "xss_detected"
    label = "cross-site scripting"


class PathTraversalError(InjectionDetectedError):
    code = "path_traversal_detected"
    label = "path traversal"


class TemplateInjectionError(InjectionDetectedError):
    code = "ssti_detected"
    label = "template injection"


ERRORS: dict[DetectorName, type[InjectionDetectedError]] = {
    "sqli": SQLInjectionError,
    "nosqli": NoSQLInjectionError,
    "cmdi": CommandInjectionError,
    "xss": XSSError,
    "traversal": PathTraversalError,
    "ssti": TemplateInjectionError,
}


def safe_field(finding: Finding) -> str:
    """The finding's field name, or only its location when the name itself looks hostile.

    Parameter and key names come from the client too; one that is not a plain identifier could
    be (part of) the payload, and is not repeated in logs or hints.
    """
    return finding.field if _SAFE_FIELD.match(finding.field) else f"{finding.location}.<name>"


def refusal(finding: Finding) -> InjectionDetectedError:
    """The 403 for ``finding``; its hint (development mode only) names the field, not the value."""
    error_class = ERRORS[finding.category]
    return error_class(
        hint=f"a value in {safe_field(finding)} looks like {error_class.label}; if it is "
        "legitimate, add an inspection exclusion for this route and field"
    )


def _media_type(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return ""


def _content_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"content-type":
            return value
    return b""


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


class InspectionMiddleware:
    """Refuses (or reports) requests in which a detector finds an injection."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: InspectionSettings,
        inspector: Inspector | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.report = settings.mode == "report"
        self.inspector = inspector or Inspector(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        kwargs: dict[str, Any] = {
            "path_params": ctx.route.params if ctx.route is not None else {},
            "query": scope.get("query_string", b""),
            "headers": headers,
        }
        if "json" in ctx.extra:
            kwargs["json"] = ctx.extra["json"]
        body: bytes | None = None
        media_type = _media_type(headers)
        unparsed_json = media_type.endswith(("/json", "+json")) and "json" not in ctx.extra
        if (media_type == FORM or media_type == MULTIPART or unparsed_json) and _has_body(headers):
            body = await self._read_body(receive)
            if body is None:
                return  # the client left, or the content stage already answered 413
            if media_type == FORM:
                kwargs["form"] = body
            elif media_type == MULTIPART:
                try:
                    kwargs["multipart"] = parse_form_data(body, _content_type(headers))
                except MultipartError as exc:
                    logger.warning(
                        "inspection %s request_id=%s code=multipart_invalid reason=%s",
                        "reported" if self.report else "refused",
                        ctx.request_id,
                        exc.reason,
                    )
                    if not self.report:
                        raise BadRequestError(
                            code="multipart_invalid",
                            hint="send a well-formed multipart/form-data body: a boundary "
                            "parameter, a closing boundary, 'Content-Disposition: form-data' "
                            "with a name on every part, no Content-Transfer-Encoding",
                        ) from exc
                    if "multipart_invalid" not in ctx.reported:
                        ctx.reported.append("multipart_invalid")
            else:
                kwargs["text_body"] = body.decode("utf-8", "replace")
        findings = self.inspector.inspect(
            RequestParts(**kwargs),
            route=ctx.route.template if ctx.route is not None else None,
            first_only=not self.report,
        )
        if findings:
            ctx.extra["inspection"] = [
                {"code": f.code, "location": f.location, "field": safe_field(f), "score": f.score}
                for f in findings
            ]
            for finding in findings:
                logger.warning(
                    "inspection %s request_id=%s code=%s field=%s score=%d",
                    "reported" if self.report else "refused",
                    ctx.request_id,
                    finding.code,
                    safe_field(finding),
                    finding.score,
                )
            if not self.report:
                raise refusal(findings[0])
            for finding in findings:
                if finding.code not in ctx.reported:
                    ctx.reported.append(finding.code)
        if body is None:
            await self.app(scope, receive, send)
            return
        replayed = False
        whole = body

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        # The content stage below us in the chain of `receive` bounds the size: past the route's
        # limit it answers 413 itself and reports a disconnect, which ends this loop.
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def build_inspection_stage(app: ASGIApp, settings: InspectionSettings, policy: Policy) -> ASGIApp:
    """Stage 11 over ``app`` as ``settings`` asks, or ``app`` itself when inspection is off.

    Raises ``PolicyError`` when an exclusion names a route the policy does not have: a typo
    there would otherwise silently keep inspection on (or, worse, be "fixed" by widening it).
    """
    if not settings.enabled:
        return app
    templates = {route.path for route in policy.routes}
    for i, exclusion in enumerate(settings.exclude):
        if exclusion.route is not None and exclusion.route not in templates:
            raise PolicyError(
                f"{exclusion.route!r} is not the path of a route in 'routes'",
                field=f"inspection.exclude[{i}].route",
            )
    return InspectionMiddleware(app, settings=settings)
