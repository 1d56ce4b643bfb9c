"""Stage 6 — content: declared media types only, bounded bodies, strict JSON, no smuggling.

The size limit is enforced while the body streams in: a declared ``Content-Length`` over the
limit is refused before a byte is read (413), and a chunked body is cut off the moment it
passes the limit. Conflicting framing (``Content-Length`` with ``Transfer-Encoding``, two
``Content-Length`` values, a coding other than ``chunked``) is refused (RFC 9112 §6.1, §6.3):
that ambiguity is what request smuggling exploits.
"""

from __future__ import annotations

import logging

from apishield.errors import (
    BadRequestError,
    HTTPError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from apishield.pipeline.context import RequestContext, get_context
from apishield.pipeline.problem import send_problem
from apishield.pipeline.strictjson import parse_strict_json
from apishield.policy.models import Policy, Route
from apishield.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("apishield.content")


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``application/json; charset=UTF-8`` → (``application/json``, {``charset``: ``utf-8``})."""
    main, *params = value.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        name, sep, val = param.partition("=")
        if sep:
            parsed[name.strip().lower()] = val.strip().strip('"').lower()
    return main.strip().lower(), parsed


class _RouteLimits:
    __slots__ = ("content_types", "body_limit", "json_depth")

    def __init__(self, route: Route, policy: Policy) -> None:
        content = policy.content
        self.content_types = frozenset(route.content_types or content.content_types)
        self.body_limit = route.body_limit if route.body_limit is not None else content.body_limit
        self.json_depth = route.json_depth or content.json_depth


class ContentMiddleware:
    """Enforces media type, body size and JSON strictness for the matched route."""

    def __init__(
        self, app: ASGIApp, *, policy: Policy, development: bool = False, type_base: str
    ) -> None:
        self.app = app
        self.policy = policy
        self.report = policy.content.mode == "report"
        self.development = development
        self.type_base = type_base
        self.limits = {id(r): _RouteLimits(r, policy) for r in policy.routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        assert ctx.route is not None  # noqa: S101 - routing runs first, always
        limits = self.limits[id(ctx.route.route)]
        # Framing is never report-only: an ambiguous request is read differently by us and by
        # the upstream, so letting it through would defeat every later check.
        length, chunked, content_type, encoding = self._framing(scope)
        if length is None and not chunked:
            if scope.get("http_version", "1.1") in ("1.0", "1.1"):
                await self.app(scope, receive, send)  # RFC 9112 §6.3: no body
                return
            # HTTP/2 and 3 need no Content-Length: look at the first chunk before deciding.
            first = await receive()
            if first["type"] != "http.request" or (
                not first.get("body") and not first.get("more_body")
            ):
                await self.app(scope, _replay(first, receive), send)
                return
            receive = _replay(first, receive)
            chunked = True
        try:
            if encoding is not None and encoding != "identity":
                # Limits count the bytes we see; a compressed body could inflate past them
                # in the upstream (a decompression bomb), and inspection could not read it.
                raise UnsupportedMediaTypeError(
                    code="content_encoding_not_allowed",
                    hint="send the body uncompressed",
                )
            media_type, params = parse_media_type(content_type or "")
            if not content_type or media_type not in limits.content_types:
                raise UnsupportedMediaTypeError(
                    headers={"Accept-Post": ", ".join(sorted(limits.content_types))}
                    if scope["method"] == "POST"
                    else None,
                    hint="send one of: " + ", ".join(sorted(limits.content_types)),
                )
            json_body = is_json(media_type)
            if json_body and params.get("charset", "utf-8") != "utf-8":
                raise UnsupportedMediaTypeError(code="charset_not_utf8", hint="JSON is UTF-8 only")
            if length is not None and length > limits.body_limit:
                raise PayloadTooLargeError(
                    hint=f"this route accepts bodies up to {limits.body_limit} bytes"
                )
        except HTTPError as exc:
            if not self.report:
                raise
            ctx.reported.append(exc.code)
            await self.app(scope, receive, send)
            return

        if json_body:
            await self._buffered_json(scope, receive, send, ctx, limits)
        else:
            await self._streamed(scope, receive, send, ctx, limits.body_limit)

    def _framing(self, scope: Scope) -> tuple[int | None, bool, str | None, str | None]:
        lengths: list[bytes] = []
        codings: list[bytes] = []
        content_type: str | None = None
        encoding: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-encoding":
                text = value.decode("latin-1").strip().lower()
                encoding = text if encoding is None else f"{encoding},{text}"
            elif name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.append(value)
            elif name == b"content-type":
                if content_type is not None:
                    raise BadRequestError(code="content_type_ambiguous", hint="one Content-Type")
                content_type = value.decode("latin-1")
        if lengths and codings:
            raise BadRequestError(
                code="request_smuggling", hint="Content-Length and Transfer-Encoding together"
            )
        if len(lengths) > 1:
            raise BadRequestError(code="request_smuggling", hint="more than one Content-Length")
        if codings:
            if b",".join(codings).strip().lower() != b"chunked":
                raise BadRequestError(
                    code="request_smuggling", hint="only 'Transfer-Encoding: chunked' is accepted"
                )
            return None, True, content_type, encoding
        if lengths:
            raw = lengths[0].strip()
            if not raw.isdigit() or len(raw) > 18:
                raise BadRequestError(code="request_smuggling", hint="invalid Content-Length")
            length = int(raw)
            return (length if length > 0 else None), False, content_type, encoding
        return None, False, content_type, encoding

    async def _buffered_json(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext, limits: _RouteLimits
    ) -> None:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
            if size > limits.body_limit:
                if not self.report:
                    raise PayloadTooLargeError(
                        hint=f"this route accepts bodies up to {limits.body_limit} bytes"
                    )
                # Report mode: note it, stop buffering, stream the rest through unparsed.
                ctx.reported.append("body_too_large")
                break
        body = b"".join(chunks)
        if not more:
            try:
                ctx.extra["json"] = parse_strict_json(body, max_depth=limits.json_depth)
            except HTTPError as exc:
                if not self.report:
                    raise
                ctx.reported.append(exc.code)
        first: Message = {"type": "http.request", "body": body, "more_body": more}
        await self.app(scope, _replay(first, receive), send)

    async def _streamed(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext, limit: int
    ) -> None:
        size = 0
        refused = False

        async def counted() -> Message:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit and not self.report:
                    # Answer 413 ourselves and tell the app the client is gone: an app that
                    # turns exceptions into its own 500 cannot swallow the refusal this way.
                    refused = True
                    error = PayloadTooLargeError(
                        hint=f"this route accepts bodies up to {limit} bytes"
                    )
                    ctx.status, ctx.code = error.status, error.code
                    await send_problem(
                        send,
                        error,
                        ctx.request_id,
                        development=self.development,
                        type_base=self.type_base,
                    )
                    return {"type": "http.disconnect"}
                if size > limit and "body_too_large" not in ctx.reported:
                    ctx.reported.append("body_too_large")
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded_send)


def _replay(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that answers ``first`` once, then defers to the real one."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
