"""Stage 3 (end) — the ban list: banned addresses, networks and principals get 403 ``banned``.

Placed right after the transport stage for addresses (the client address is only known once
trusted proxies are resolved) and right after authentication for principals. The check is a
lookup in the process's copy of the shared list (``apishield.ratelimit.bans``): no I/O on the
request path. The refusal says nothing of the reason; ``mode: development`` shows it as the
hint, since the operator reads that, not the banned client.
"""

from __future__ import annotations

import logging
from typing import Literal

from apishield.errors import ForbiddenError
from apishield.pipeline.context import get_context
from apishield.ratelimit.guard import RateLimitGuard
from apishield.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("apishield.ratelimit")


class BanMiddleware:
    """Refuses requests from banned addresses (``subject="ip"``) or principals."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: RateLimitGuard,
        subject: Literal["ip", "principal"] = "ip",
    ) -> None:
        if subject not in ("ip", "principal"):
            raise ValueError(f"unknown ban subject {subject!r}")
        self.app = app
        self.guard = guard
        self.bans = guard.bans
        self.subject = subject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.guard.lifespan(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        await self.bans.ready()
        ctx = get_context(scope)
        if self.subject == "ip":
            hit = self.bans.check_ip(ctx.client_ip)
        else:
            hit = self.bans.check_principal(ctx.principal.key) if ctx.principal else None
        if hit is not None:
            self.guard.metrics.banned += 1
            reason = hit.reason or "no reason given"
            raise ForbiddenError(
                code="banned", hint=f"banned until {hit.expires:.0f} (unix time): {reason}"
            )
        await self.app(scope, receive, send)
