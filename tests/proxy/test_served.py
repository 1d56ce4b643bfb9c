"""``UpstreamApp`` behind a real ASGI server (uvicorn), and on uvloop, as in production."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import uvicorn
import uvloop

from apishield.errors import UpstreamError, UpstreamTimeoutError
from apishield.policy.models import Upstream
from apishield.proxy import UpstreamAbortedError, UpstreamApp
from tests.proxy.upstreams import Connection, RawUpstream, drive, echo

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]


@contextlib.asynccontextmanager
async def served(app: UpstreamApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (httptools) on a free loopback port; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http="httptools",
        lifespan="on",
        proxy_headers=False,  # client addresses are the transport stage's business
        log_config=None,  # leave logging to the test (caplog)
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


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
