"""``UpstreamApp`` behind a real ASGI server (uvicorn), and on uvloop, as in production."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import uvloop

from apishield.errors import PROBLEM_TYPE_BASE, UpstreamError, UpstreamTimeoutError
from apishield.pipeline.errors import ErrorsMiddleware
from apishield.policy.models import Upstream
from apishield.proxy import UpstreamAbortedError, UpstreamApp
from tests.proxy.upstreams import Connection, RawUpstream, drive, echo, served

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]


async def test_round_trip_through_uvicorn(serve: Serve, make_app: MakeApp) -> None:
    upstream = await serve()
    app = make_app(upstream.url(path="/base"))
    async with served(app) as url, httpx.AsyncClient() as client:
        for _ in range(3):
            response = await client.get(
                f"{url}/a%2Fb?q=%20x",
                headers={"X-Forwarded-For": "6.6.6.6", "Connection": "keep-alive, x-foo"},
            )
            assert response.status_code == 200
            seen = dict((k, v) for k, v in response.json()["headers"])
            assert response.json()["target"] == "/base/a%2Fb?q=%20x"
            assert seen["x-forwarded-for"] == "127.0.0.1"

        async def body() -> AsyncIterator[bytes]:
            yield b"abc"
            yield b"def"

        response = await client.post(f"{url}/upload", content=body())
        assert response.json()["headers"][-1] == ["transfer-encoding", "chunked"]
        assert response.json()["body_length"] == 6
    assert upstream.connections == 1
    assert app.pool.open_connections == 0  # lifespan shutdown closed the pool


async def test_mid_response_failure_reaches_the_client_as_truncation(
    serve: Serve, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"a" * 100)
        await asyncio.sleep(0.05)
        conn.reset()

    upstream = await serve(handler)
    app = make_app(upstream.url())
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        async with served(app) as url, httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(url)
    assert any(
        isinstance(r.exc_info and r.exc_info[1], UpstreamAbortedError) for r in caplog.records
    )


def test_on_uvloop() -> None:
    """The production event loop: keep-alive, streaming, a timeout and a refused connection."""

    async def scenario() -> None:
        async def slow(conn: Connection) -> None:
            await conn.read_request()
            await conn.reader.read()

        upstream = RawUpstream(echo)
        silent = RawUpstream(slow)
        await upstream.start()
        await silent.start()
        app = UpstreamApp(Upstream(url=upstream.url()))
        silent_app = UpstreamApp(
            Upstream.model_validate({"url": silent.url(), "timeouts": {"read": 0.3}})
        )
        try:
            for _ in range(3):
                assert (await drive(app, "GET", "/")).status == 200
            result = await drive(app, "PUT", "/", body=[b"x" * 65536] * 64)
            assert result.json()["body_length"] == 64 * 65536
            assert upstream.connections == 1
            timed_out = await drive(silent_app, "GET", "/")
            assert isinstance(timed_out.error, UpstreamTimeoutError)
            port = silent.port
        finally:
            await app.aclose()
            await silent_app.aclose()
            await upstream.close()
            await silent.close()
        refused_app = UpstreamApp(Upstream(url=f"http://127.0.0.1:{port}"))
        refused = await drive(refused_app, "GET", "/")
        await refused_app.aclose()
        assert isinstance(refused.error, UpstreamError)
        assert refused.error.code == "upstream_unavailable"

    uvloop.run(scenario())


async def test_spoofing_fields_are_dropped_behind_uvicorn(serve: Serve, make_app: MakeApp) -> None:
    # httptools accepts underscores in field names, and frameworks behind us fold them into
    # the hyphenated names (Django: HTTP_X_FORWARDED_FOR for both).
    upstream = await serve()
    app = ErrorsMiddleware(make_app(upstream.url()), type_base=PROBLEM_TYPE_BASE)
    async with served(app) as url, httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/orders",
            content=b"{}",
            headers={
                "X_Forwarded_For": "6.6.6.6",
                "X-Real_IP": "6.6.6.6",
                "X-HTTP-Method-Override": "DELETE",
                "X-Original-URI": "/admin",
                "X-Forwarded-Uri": "/admin",
                "Remote-User": "admin",
                "X-Remote-User": "admin",
                "X-Authenticated-Subject": "admin",
            },
        )
        refused = await client.get(url, headers={"Connection": "content-type"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "POST"
    assert [v for k, v in seen["headers"] if v in ("6.6.6.6", "DELETE", "/admin", "admin")] == []
    assert refused.status_code == 400
    assert refused.json()["code"] == "connection_header_invalid"
    assert len(upstream.requests) == 1
