"""Stage 4 — CORS (Fetch standard §3.2): preflights answered here, exact origin allowlists.

A request that carries an ``Origin`` which is neither allowed nor the gateway's own origin is
refused, not merely left without ``Access-Control-Allow-Origin``: the browser would still have
sent it, with the user's cookies, and a state-changing call would have happened (CSRF). The
allowlist comes from the route, else its version group, else the policy; absent everywhere, no
cross-origin access at all. A request the browser itself marks ``Sec-Fetch-Site: same-origin``
is same-origin whatever its ``Origin`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from apishield.errors import ForbiddenError
from apishield.pipeline.context import get_context
from apishield.pipeline.router import RouteMatch, Router
from apishield.policy.models import Cors, Policy
from apishield.types import ASGIApp, Headers, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class _Compiled:
    origins: frozenset[str]
    any_origin: bool
    credentials: bool
    methods: frozenset[str] | None
    headers: frozenset[str]
    any_header: bool
    expose: bytes
    max_age: bytes


def _compile(cors: Cors) -> _Compiled:
    return _Compiled(
        origins=frozenset(o for o in cors.origins if o != "*"),
        any_origin="*" in cors.origins,
        credentials=cors.credentials,
        methods=frozenset(cors.methods) if cors.methods is not None else None,
        headers=frozenset(h.lower() for h in cors.headers if h != "*"),
        any_header="*" in cors.headers,
        expose=", ".join(cors.expose_headers).encode(),
        max_age=str(cors.max_age).encode(),
    )


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class CorsMiddleware:
    """Answers preflights and decorates allowed cross-origin responses."""

    def __init__(self, app: ASGIApp, *, policy: Policy, router: Router) -> None:
        self.app = app
        self.router = router
        self.default = _compile(policy.cors) if policy.cors else None
        self.by_version = {v.label: _compile(v.cors) for v in policy.versions if v.cors}
        self.by_route = {id(r): _compile(r.cors) for r in policy.routes if r.cors}
        self.version_header = (router.version_header or "").encode()

    def _settings(self, match: RouteMatch) -> _Compiled | None:
        found = self.by_route.get(id(match.route))
        if found is None and match.version is not None:
            found = self.by_version.get(match.version.label)
        return found if found is not None else self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        if ctx.scheme and ctx.host and origin.lower() == f"{ctx.scheme}://{ctx.host}".lower():
            await self.app(scope, receive, send)  # same origin: not a CORS request
            return
        if header(scope, b"sec-fetch-site") == "same-origin":
            # The browser's own word (a Sec- header no script can set, Fetch Metadata §2.1):
            # a same-origin request, though its Origin may read "null" (a form posted from a
            # page with `Referrer-Policy: no-referrer`, Fetch §3.1), like the login page's.
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        requested = header(scope, b"access-control-request-method")
        preflight = method == "OPTIONS" and requested is not None
        version_value = header(scope, self.version_header) if self.version_header else None
        match = self.router.match(
            None if preflight else method,
            scope["path"],
            scope.get("raw_path"),
            version_value,
        )
        ctx.route = match
        settings = self._settings(match)
        lowered = origin.lower()
        if settings is None or not (settings.any_origin or lowered in settings.origins):
            raise ForbiddenError(
                code="cors_origin_not_allowed",
                hint="add this exact origin to the route's cors.origins to allow it",
            )
        allow_origin = b"*" if settings.any_origin and not settings.credentials else origin.encode()
        if preflight:
            await self._preflight(scope, send, match, settings, allow_origin)
            return

        extra = ctx.response_headers
        extra.append((b"access-control-allow-origin", allow_origin))
        extra.append((b"vary", b"Origin"))
        if settings.credentials:
            extra.append((b"access-control-allow-credentials", b"true"))
        if settings.expose:
            extra.append((b"access-control-expose-headers", settings.expose))
        await self.app(scope, receive, send)

    async def _preflight(
        self,
        scope: Scope,
        send: Send,
        match: RouteMatch,
        settings: _Compiled,
        allow_origin: bytes,
    ) -> None:
        methods = settings.methods if settings.methods is not None else match.methods
        requested = (header(scope, b"access-control-request-method") or "").upper()
        if requested not in methods:
            raise ForbiddenError(
                code="cors_method_not_allowed",
                hint=f"cross-origin calls may use {', '.join(sorted(methods))} here",
            )
        asked = header(scope, b"access-control-request-headers") or ""
        names = [h.strip().lower() for h in asked.split(",") if h.strip()]
        if not settings.any_header:
            refused = [n for n in names if n not in settings.headers]
            if refused:
                raise ForbiddenError(
                    code="cors_header_not_allowed",
                    hint="add the header to the route's cors.headers to allow it",
                )
        headers: Headers = [
            (b"access-control-allow-origin", allow_origin),
            (b"access-control-allow-methods", ", ".join(sorted(methods)).encode()),
            (b"access-control-max-age", settings.max_age),
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
        ]
        if names:
            headers.append((b"access-control-allow-headers", ", ".join(names).encode()))
        if settings.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        get_context(scope).status = 204
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
