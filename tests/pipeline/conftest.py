from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from apishield import protect
from apishield.types import Receive, Scope, Send


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in upstream: echoes what reached it, and leaks the headers apps tend to leak."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "body_length": len(body),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"server", b"gunicorn/19.9.0"),
                (b"x-powered-by", b"Express"),
                (b"cache-control", b"public, max-age=3600"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


BASE_POLICY: dict[str, Any] = {
    "apishield": 1,
    "mode": "production",
    "cors": {"origins": ["https://app.example.com"], "credentials": True},
    "versions": [
        {
            "prefix": "/v1",
            "deprecated": {
                "since": "2026-01-01",
                "sunset": "2027-06-30",
                "link": "https://docs.example.com/v2",
            },
        },
        {"prefix": "/v2"},
        {"prefix": "/v0", "retired": True, "link": "https://docs.example.com/v2"},
    ],
    "routes": [
        {"path": "/v2/items", "methods": ["GET", "POST"], "allow": "public"},
        {"path": "/v2/items/{item_id}", "methods": ["GET", "PUT", "DELETE"], "allow": "public"},
        {"path": "/v2/items/latest", "methods": ["GET"], "allow": "public"},
        {
            "path": "/v2/uploads",
            "methods": ["POST"],
            "allow": "public",
            "content_types": ["application/octet-stream", "text/plain"],
            "body_limit": "1KiB",
        },
        {"path": "/v2/small", "methods": ["POST"], "allow": "public", "body_limit": 64},
        {"path": "/v2/shallow", "methods": ["POST"], "allow": "public", "json_depth": 3},
        {
            "path": "/v2/cached",
            "methods": ["GET"],
            "allow": "public",
            "cache_control": "max-age=60",
        },
        {"path": "/v2/private", "methods": ["GET"], "allow": {"scopes": ["items:read"]}},
        {"path": "/v2/closed", "methods": ["GET"]},
        {"path": "/v1/items", "methods": ["GET"], "allow": "public"},
        {"path": "/v0/items", "methods": ["GET"], "allow": "public"},
        {"path": "/health", "methods": ["GET"], "allow": "public"},
    ],
}

ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    def factory(
        policy: dict[str, Any] | None = None,
        *,
        app: Any = echo_app,
        base_url: str = "https://api.test",
        client: tuple[str, int] = ("127.0.0.1", 50000),
    ) -> httpx.AsyncClient:
        wrapped = protect(app, policy or BASE_POLICY)
        transport = httpx.ASGITransport(app=wrapped, client=client)
        c = httpx.AsyncClient(transport=transport, base_url=base_url)
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()
