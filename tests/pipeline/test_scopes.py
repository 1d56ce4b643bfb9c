"""``protect``: a WebSocket handshake gets no way around the pipeline.

The policy routes HTTP requests only, and no stage reads a WebSocket scope: one passed to the
app would skip authentication, deny-by-default routing and the origin check (cross-site
WebSocket hijacking). It is refused before the app sees it.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from apishield import protect
from apishield.types import Message

reached: list[str] = []


async def secrets_feed(websocket: WebSocket) -> None:
    reached.append(websocket.url.path)
    await websocket.accept()
    await websocket.send_text("account balances")
    await websocket.close()


APP = Starlette(routes=[WebSocketRoute("/v1/feed", secrets_feed)])

POLICY: dict[str, Any] = {
    "apishield": 1,
    "mode": "production",
    "inspection": {"enabled": False},
    # Nothing is public: the feed needs a credential, and no route names /v1/other at all.
    "routes": [{"path": "/v1/feed", "methods": ["GET"], "allow": {"scopes": ["feed:read"]}}],
}


async def handshake(app: Any, path: str) -> list[Message]:
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "wss",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"api.test"), (b"origin", b"https://evil.example")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 443),
        "subprotocols": [],
    }
    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("path", ["/v1/feed", "/v1/other"])
async def test_a_websocket_handshake_is_refused(path: str) -> None:
    reached.clear()
    sent = await handshake(protect(APP, POLICY), path)
    assert reached == []
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008
