"""Stage 2 — audit: one structured event per request, with nothing secret in it.

The event names the route *template*, never the concrete path of a matched route, and never
carries a header value or a query string: those are where tokens, keys and cookies live. An
unmatched path (scanners, typos) is kept, cut to 256 characters and without its query, because
it is what an operator needs to see an attack; it cannot hold a credential of ours.

Where the event goes: the direct writer ``apishield serve`` installs
(:mod:`apishield.observe.auditlog`), else the ``apishield.audit`` logger (in-process use, where
the host application owns logging). The line is built by hand rather than with ``json.dumps``,
which builds a new encoder on every call when given separators (together with the direct
writer: 684k → 594k instructions per request through the gateway, callgrind). Every string
that may come from outside (method, path, route template, request id, client address, codes)
goes through the JSON encoder's own string escaping.
"""

from __future__ import annotations

import logging
import time
from json.encoder import encode_basestring_ascii as _quote

from apishield.errors import HTTPError
from apishield.identity.verifier import redact_credential_like
from apishield.observe import auditlog
from apishield.pipeline.context import get_context
from apishield.types import ASGIApp, Message, Receive, Scope, Send

audit_logger = logging.getLogger("apishield.audit")
MAX_PATH = 256




def redact_path(path: str) -> str:
    """``path`` with credential-like segments replaced by their fingerprint."""
    if len(path) < 24:
        return path
    return "/".join(
        redact_credential_like(segment) for segment in path.split("/")
    )


class AuditMiddleware:
    """Emits the request's audit event to the ``apishield.audit`` logger as one JSON line."""

    def __init__(self, app: ASGIApp, *, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or audit_logger
        # A logger given explicitly wins over the process's direct writer.
        self._direct = logger is None

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
        sink = auditlog.current_audit_log() if self._direct else None
        if sink is None and not self.logger.isEnabledFor(logging.INFO):
            return
        ctx = get_context(scope)
        route = ctx.route
        # Field names and order are the event's contract with log pipelines: keep them.
        parts = [
            '{"event":"request","ts":',
            repr(round(time.time(), 3)),
            ',"request_id":',
            _quote(ctx.request_id),
            ',"method":',
            _quote(str(scope.get("method", ""))),
            ',"route":',
            "null" if route is None else _quote(route.template),
            ',"status":',
            str(int(status)),
            ',"duration_ms":',
            repr(round((time.perf_counter() - ctx.started) * 1000, 3)),
            ',"client":',
            _quote(ctx.client_ip),
        ]
        if route is None:
            parts += (',"path":', _quote(redact_path(str(scope.get("path", ""))[:MAX_PATH])))
        elif route.version is not None:
            parts += (',"version":', _quote(route.version.label))
        if code:
            parts += (',"code":', _quote(code))
        if ctx.reported:
            parts += (',"reported":[', ",".join(map(_quote, ctx.reported)), "]")
        parts.append("}")
        line = "".join(parts)
        if sink is not None:
            sink.write(line)
        else:
            self.logger.info(line)
