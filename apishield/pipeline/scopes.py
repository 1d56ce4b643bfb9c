"""Stage 0 — only HTTP requests (and the lifespan) get into the pipeline.

Every stage reads ``http`` scopes and passes any other scope type on untouched, and the
policy routes HTTP methods only. A ``websocket`` scope let through would reach the app with
no credential checked, no route matched (deny by default) and no ``Origin`` checked
(cross-site WebSocket hijacking), so it is refused here: closing before ``accept`` makes the
server answer the handshake with 403 (ASGI WebSocket spec, "Close - send event").
"""

from __future__ import annotations

from apishield.types import ASGIApp, Receive, Scope, Send

__all__ = ["HTTPOnlyMiddleware"]

POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1


class HTTPOnlyMiddleware:
    """Passes ``http`` and ``lifespan`` scopes to ``app``; refuses WebSocket handshakes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind in ("http", "lifespan"):
            await self.app(scope, receive, send)
        elif kind == "websocket":
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        # any other scope type is not served: nothing of the app runs for it
