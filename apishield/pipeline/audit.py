"""Stage 2 — audit: one structured event per request, with nothing secret in it.

The event names the route *template*, never the concrete path of a matched route, and never
carries a header value or a query string: those are where tokens, keys and cookies live. An
unmatched path (scanners, typos) is kept, cut to 256 characters and without its query, because
it is what an operator needs to see an attack; it cannot hold a credential of ours.
"""

from __future__ import annotations

import json
import logging
import re
import time

from apishield.errors import HTTPError
from apishield.identity.verifier import fingerprint
from apishield.pipeline.context import get_context
from apishield.types import ASGIApp, Message, Receive, Scope, Send

audit_logger = logging.getLogger("apishield.audit")
MAX_PATH = 256


# A segment this long that mixes letters and digits is a key, a token or a reset code far more
# often than a name: clients do paste credentials into URLs (AUTH 38 forbids them in logs).
_SECRET_LIKE = re.compile(r"^(?=[^/]*[A-Za-z])(?=[^/]*\d)[A-Za-z0-9._~+=-]{24,}$")


def redact_path(path: str) -> str:
    """``path`` with credential-like segments replaced by their fingerprint."""
    if len(path) < 24:
        return path
    return "/".join(
        f"[redacted:{fingerprint(segment)}]" if _SECRET_LIKE.match(segment) else segment
        for segment in path.split("/")
    )


class AuditMiddleware:
    """Emits the request's audit event to the ``apishield.audit`` logger as one JSON line."""

    def __init__(self, app: ASGIApp, *, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or audit_logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        status = 0

        async def audit_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        code: str | None = None
        try:
            await self.app(scope, receive, audit_send)
        except HTTPError as exc:
            code = exc.code
            if not status:
                status = exc.status
            raise
        except Exception:
            code = "internal_error"
            if not status:
                status = 500
            raise
        finally:
            self.emit(scope, status, code or ctx.code)

    def emit(self, scope: Scope, status: int, code: str | None) -> None:
        ctx = get_context(scope)
        if not self.logger.isEnabledFor(logging.INFO):
            return
        route = ctx.route
        event: dict[str, object] = {
            "event": "request",
            "ts": round(time.time(), 3),
            "request_id": ctx.request_id,
            "method": scope.get("method", ""),
            "route": route.template if route is not None else None,
            "status": status,
            "duration_ms": round((time.perf_counter() - ctx.started) * 1000, 3),
            "client": ctx.client_ip,
        }
        if route is None:
            event["path"] = redact_path(str(scope.get("path", ""))[:MAX_PATH])
        if route is not None and route.version is not None:
            event["version"] = route.version.label
        if code:
            event["code"] = code
        if ctx.reported:
            event["reported"] = ctx.reported
        self.logger.info(json.dumps(event, separators=(",", ":")))
