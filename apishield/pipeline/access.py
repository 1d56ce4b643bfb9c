"""Stage 9 — authorization, deny by default (OWASP API5: broken function-level authorization).

Every route says who may call it. ``allow: public`` lets anyone through; a route that names
scopes or roles needs a verified principal carrying them; a route that says nothing is closed.
Without an authentication stage there is never a principal, so only public routes answer.
"""

from __future__ import annotations

from apishield.errors import ForbiddenError, UnauthorizedError
from apishield.pipeline.context import get_context
from apishield.types import ASGIApp, Receive, Scope, Send


class AccessMiddleware:
    """Refuses requests the matched route does not allow."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        assert ctx.route is not None  # noqa: S101 - routing runs first, always
        allow = ctx.route.route.allow
        if allow == "public":
            await self.app(scope, receive, send)
            return
        if allow is None:
            raise ForbiddenError(
                code="route_not_allowed",
                hint="the policy route has no 'allow' rule, so nobody may call it",
            )
        if ctx.principal is None:
            raise UnauthorizedError(
                headers={"WWW-Authenticate": 'Bearer realm="apishield"'},
                hint="this route needs credentials",
            )
        scopes = set(getattr(ctx.principal, "scopes", ()))
        roles = set(getattr(ctx.principal, "roles", ()))
        if not set(allow.scopes) <= scopes or not set(allow.roles) <= roles:
            raise ForbiddenError(
                code="scope_missing",
                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
                hint="the credentials lack a scope or role this route requires",
            )
        await self.app(scope, receive, send)
