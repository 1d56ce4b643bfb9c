"""The whole gateway on the wire: GatewayServer + pipeline + upstream pool, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apishield.pipeline.build import build_gateway
from apishield.policy import parse_policy
from apishield.policy.load import resolve_paths
from apishield.server import GatewayServer
from tests.proxy.upstreams import RawUpstream, echo


def gateway_policy(upstream: str, state: Path, tls: str = "off") -> Any:
    return resolve_paths(
        parse_policy(
            {
                "apishield": 1,
                "listen": {"address": "127.0.0.1:0", "tls": tls},
                "state": {"dir": str(state)},
                "upstream": {"url": upstream, "timeouts": {"read": "5s"}},
                "routes": [
                    {"path": "/v1/items", "methods": ["GET", "POST"], "allow": "public"},
                    {"path": "/v1/items/{item_id}", "methods": ["GET"], "allow": "public"},
                ],
            }
        ),
        state,
    )


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, tls: str = "off"
) -> AsyncIterator[tuple[int, RawUpstream, GatewayServer]]:
    upstream = RawUpstream(echo)
    await upstream.start()
    policy = gateway_policy(upstream.url(), tmp_path, tls)
    app = build_gateway(policy)
    server = GatewayServer(policy, app, announce=False)
    task = asyncio.create_task(server.serve(install_signal_handlers=False))
    try:
        await asyncio.wait_for(server.wait_started(), 30)
        assert server.bound_port is not None
        yield server.bound_port, upstream, server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await upstream.close()


async def raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


SMUGGLING = [
    pytest.param(
        b"POST /v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /v1/items/1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        id="cl-te",
    ),
    pytest.param(
        b"POST /v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
        id="two-content-lengths",
    ),
    pytest.param(
        b"POST /v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        id="te-list",
    ),
    pytest.param(
        b"POST /v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: +2\r\n\r\n{}",
        id="signed-content-length",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("request_bytes", SMUGGLING)
async def test_smuggling_never_reaches_upstream(tmp_path: Path, request_bytes: bytes) -> None:
    async with gateway(tmp_path) as (port, upstream, _):
        answer = await raw_exchange(port, request_bytes)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert upstream.requests == []


@pytest.mark.slow
async def test_https_end_to_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secrets = {
        "authorization": "Bearer very-secret-token-value-123",
        "cookie": "sid=cookie-secret-456",
        "x-api-key": "ask_test_key-secret-789",
    }
    async with gateway(tmp_path, tls="dev") as (port, upstream, server):
        ca = tmp_path / "tls"
        context = ssl.create_default_context(cafile=next(ca.glob("*ca*.crt")))
        with caplog.at_level(logging.DEBUG):
            async with httpx.AsyncClient(verify=context) as client:
                response = await client.get(
                    f"https://localhost:{port}/v1/items/7?note=query-secret-000",
                    headers={**secrets, "x-forwarded-for": "6.6.6.6", "x-real-ip": "6.6.6.6"},
                )
                refused = await client.delete(f"https://localhost:{port}/v1/items/7")
                in_query = await client.get(
                    f"https://localhost:{port}/v1/items/7?api_key=query-secret-111"
                )
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert "server" not in response.headers
    seen = json.loads(response.text)
    assert seen["target"] == "/v1/items/7?note=query-secret-000"
    assert in_query.status_code == 400 and in_query.json()["code"] == "credentials_in_query"
    forwarded = {k.lower(): v for k, v in seen["headers"]}
    assert forwarded["x-forwarded-for"] == "127.0.0.1"
    assert forwarded["x-forwarded-proto"] == "https"
    assert "x-real-ip" not in forwarded
    assert forwarded["x-request-id"] == response.headers["x-request-id"]
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    # every record of ours and of the server we run (the test client's own logs aside)
    ours = [r for r in caplog.records if r.name.startswith(("apishield", "uvicorn"))]
    text = "\n".join(r.getMessage() for r in ours)
    assert '"route":"/v1/items/{item_id}"' in text
    for secret in [*secrets.values(), "query-secret", "very-secret", "cookie-secret"]:
        assert secret not in text
