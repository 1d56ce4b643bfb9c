"""Stage 1 — errors: every failure below becomes an RFC 9457 problem+json, nothing internal leaks.

Creates the request's ``RequestContext`` (with a fresh request id, which the transport stage
may replace with a trusted proxy's) because it is the outermost stage and must be able to
quote the id even when everything below it fails.
"""

from __future__ import annotations

import logging
import secrets

from apishield.errors import HTTPError
from apishield.pipeline.context import SCOPE_KEY, RequestContext
from apishield.pipeline.problem import send_problem
from apishield.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("apishield.errors")


def new_request_id() -> str:
    """A 96-bit random request id: unguessable, so it can be quoted without exposing others."""
    return secrets.token_hex(12)


class ErrorsMiddleware:
    """Catches every exception from the stages below and answers with problem+json."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        development: bool = False,
        type_base: str,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.development = development
        self.type_base = type_base

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(request_id=new_request_id())
        scope[SCOPE_KEY] = ctx
        started = False
        request_id_header = self.request_id_header

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # The id lets a client quote any answer, not only refusals, to the operator.
                message["headers"] = [
                    *message.get("headers", ()),
                    *ctx.response_headers,
                    (request_id_header, ctx.request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except HTTPError as exc:
            if started:
                # Status already sent: the only honest signal left is to drop the connection.
                raise
            ctx.status, ctx.code = exc.status, exc.code
            await send_problem(
                tracked_send,
                exc,
                ctx.request_id,
                development=self.development,
                type_base=self.type_base,
                head=scope.get("method") == "HEAD",
            )
        except Exception as exc:
            # The traceback goes to the operator's log only; the client gets the request id.
            logger.error("unhandled error request_id=%s", ctx.request_id, exc_info=exc)
            if started:
                raise
            error = HTTPError()
            ctx.status, ctx.code = error.status, error.code
            await send_problem(
                tracked_send,
                error,
                ctx.request_id,
                development=self.development,
                type_base=self.type_base,
                head=scope.get("method") == "HEAD",
            )
