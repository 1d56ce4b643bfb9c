"""Stage 13 — response: strip headers that fingerprint the upstream, add security headers.

``Server``, ``X-Powered-By`` and friends tell an attacker which framework and version to aim
at; they are removed. Every response gets ``X-Content-Type-Options: nosniff``, a
``Content-Security-Policy`` that forbids everything (an API answer is never a page),
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store`` unless the route says otherwise
(RFC 9111 §5.2.2.5: API answers often carry personal data that shared caches must not keep).
"""

from __future__ import annotations

from apishield.pipeline.context import get_context
from apishield.policy.models import Policy
from apishield.types import ASGIApp, Headers, Message, Receive, Scope, Send

# Set by us: the upstream's copy is dropped so it cannot weaken ours.
_OURS = (
    b"x-content-type-options",
    b"content-security-policy",
    b"referrer-policy",
    b"cache-control",
    b"strict-transport-security",
    b"date",  # the serving layer sends its own; two Date headers confuse caches and clients
)
# The CORS stage decides cross-origin access; an upstream's own answer must not widen it.
_CORS_PREFIX = b"access-control-"


class ResponseMiddleware:
    """Rewrites the response headers of the upstream (or wrapped app)."""

    def __init__(
        self, app: ASGIApp, *, policy: Policy, own_csp_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        # Pages the gateway serves itself (the login page) carry a policy made for them.
        self.own_csp_paths = own_csp_paths
        settings = policy.response
        self.drop = frozenset(
            [*(h.lower().encode("latin-1") for h in settings.remove_headers), *_OURS]
            + [h.lower().encode("latin-1") for h in settings.set_headers]
            + [policy.request_id.header.lower().encode("latin-1")]  # the errors stage sets it
        )
        self.fixed: Headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", settings.content_security_policy.encode("latin-1")),
            (b"referrer-policy", settings.referrer_policy.encode("latin-1")),
            *(
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in settings.set_headers.items()
            ),
        ]
        default_cache = settings.cache_control.encode("latin-1")
        self.cache = {
            id(r): (r.cache_control.encode("latin-1") if r.cache_control else default_cache)
            for r in policy.routes
        }
        self.default_cache = default_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        cache = (
            self.cache.get(id(ctx.route.route), self.default_cache)
            if ctx.route is not None
            else self.default_cache
        )
        drop = self.drop
        fixed = self.fixed
        if scope.get("path") in self.own_csp_paths:
            drop = drop - {b"content-security-policy"}
            fixed = [h for h in fixed if h[0] != b"content-security-policy"]

        async def clean_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    h
                    for h in message.get("headers", ())
                    if (name := h[0].lower()) not in drop and not name.startswith(_CORS_PREFIX)
                ]
                headers.extend(fixed)
                headers.append((b"cache-control", cache))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, clean_send)
