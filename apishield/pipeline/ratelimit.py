"""Stage 8 — rate limits, quotas and concurrency caps, in two places of the pipeline.

``phase="ip"`` sits before authentication (stage 7) and applies the rules counted by address
or route alone, so floods, bad credentials included, are refused before any signature is
verified; it also counts the refused authentications (401) of ``when: anonymous`` rules.
``phase="principal"`` sits after authentication and applies the rules counted by principal. The
limiter (``apishield.ratelimit.limiter``) decides; this adapter reads the request context,
refuses with 429 problem+json (``Retry-After``, RFC 6585 §4, RFC 9110 §10.2.3) and adds the
``RateLimit-Policy`` / ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers) to the
response, refusals of later stages included.
"""

from __future__ import annotations

from apishield.errors import HTTPError
from apishield.pipeline.context import get_context
from apishield.ratelimit.guard import RateLimitGuard
from apishield.ratelimit.limiter import Phase, Verdict
from apishield.ratelimit.storage import Check
from apishield.types import ASGIApp, Message, Receive, Scope, Send

# Anonymous counts taken before authentication, given back after it when it succeeded.
REFUNDS_KEY = "ratelimit.refunds"


class RateLimitMiddleware:
    """Applies the limits of one phase (``ip`` before authentication, ``principal`` after).

    Trust assumption: ``ctx.client_ip`` was set by the transport stage and ``ctx.principal``
    by the authentication stage; nothing is read from the request but the method and whether
    credential headers are present.
    """

    def __init__(self, app: ASGIApp, *, guard: RateLimitGuard, phase: Phase) -> None:
        if phase not in ("ip", "principal"):
            raise ValueError(f"unknown rate-limit phase {phase!r}")
        self.app = app
        self.guard = guard
        self.limiter = guard.limiter
        self.phase: Phase = phase
        self.credential_headers = guard.credential_headers
        self.watch_credentials = phase == "ip" and guard.limiter.needs_credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.guard.lifespan(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        principal = ctx.principal.key if ctx.principal is not None else None
        route = ctx.route.template if ctx.route is not None else None
        credentials = False
        if self.watch_credentials:
            names = self.credential_headers
            credentials = any(name in names for name, _ in scope["headers"])
        given_back: list[Check] = []
        if self.phase == "principal" and principal is not None:
            given_back = ctx.extra.pop(REFUNDS_KEY, None) or []
        try:
            verdict = await self.limiter.check(
                self.phase,
                client_ip=ctx.client_ip,
                principal=principal,
                route=route,
                method=scope["method"],
                credentials=credentials,
            )
            if verdict.headers:
                ctx.response_headers.extend(verdict.headers)
            if not verdict.allowed:
                raise verdict.error()
            if verdict.code is not None:  # report mode: would have refused
                ctx.reported.append(verdict.code)
            if verdict.refundable:
                ctx.extra[REFUNDS_KEY] = verdict.refundable
            given_back += verdict.leases
            if verdict.failures:
                await self._counting_failures(scope, receive, send, verdict)
            else:
                await self.app(scope, receive, send)
        finally:
            if given_back:
                await self.limiter.release(given_back)

    async def _counting_failures(
        self, scope: Scope, receive: Receive, send: Send, verdict: Verdict
    ) -> None:
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except HTTPError as exc:
            status = status or exc.status
            raise
        finally:
            if status == 401:
                await self.limiter.count_failures(verdict.failures)
