"""Stage 5 — routing: only what the policy declares gets through; versions announce their end.

Unknown paths are 404 and unknown methods 405 with ``Allow`` (RFC 9110 §15.5.6). A deprecated
version's responses carry ``Deprecation`` (RFC 9745), ``Sunset`` (RFC 8594) and ``Link``; a
retired version answers 410 with a link to its successor.
"""

from __future__ import annotations

from apishield.errors import ForbiddenError
from apishield.pipeline.context import get_context
from apishield.pipeline.router import Router, deprecation_headers
from apishield.types import ASGIApp, Receive, Scope, Send


class RoutingMiddleware:
    """Matches the request to a policy route and stores it in the request context."""

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        self.router = router
        self.version_header = (router.version_header or "").encode()
        self.deprecations = {
            v.label: deprecation_headers(v)
            for v in [*router.prefix_versions, *router.header_versions.values()]
            if v.deprecated is not None
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        match = ctx.route
        if match is None:
            version_value = None
            if self.version_header:
                for name, value in scope["headers"]:
                    if name == self.version_header:
                        version_value = value.decode("latin-1")
                        break
            match = self.router.match(
                scope["method"], scope["path"], scope.get("raw_path"), version_value
            )
            ctx.route = match
        if match.route.allow is None:
            # Refused here, before the body is read or any credential is verified: a closed
            # route must cost an attacker's request as little as an unknown one.
            raise ForbiddenError(
                code="route_not_allowed",
                hint="the policy route has no 'allow' rule, so nobody may call it",
            )
        if match.version is not None and (extra := self.deprecations.get(match.version.label)):
            ctx.response_headers.extend(extra)
        await self.app(scope, receive, send)
