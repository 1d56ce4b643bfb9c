"""Large bodies stream through: memory stays bounded by the flow-control windows."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator

import pytest

from apishield.proxy import UpstreamApp
from apishield.types import Message
from tests.proxy.upstreams import Connection, RawUpstream, drive, http_scope, no_body

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]

SIZE = 50 * 1024 * 1024
CHUNK = bytes(range(256)) * 256  # 64 KiB, the same object every time: no allocation per chunk
LIMIT = 10 * 1024 * 1024


def expected_digest() -> str:
    digest = hashlib.sha256()
    for _ in range(SIZE // len(CHUNK)):
        digest.update(CHUNK)
    return digest.hexdigest()


@pytest.fixture
def traced() -> Iterator[Callable[[], int]]:
    """Python heap growth above the starting point, at its peak."""
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()

    def growth() -> int:
        _, peak = tracemalloc.get_traced_memory()
        return peak - base

    yield growth
    tracemalloc.stop()


@pytest.mark.slow
async def test_50_mb_request_body_streams_through(
    serve: Serve, make_app: MakeApp, traced: Callable[[], int]
) -> None:
    async def handler(conn: Connection) -> None:
        while (request := await conn.read_request(keep_body=False)) is not None:
            await conn.respond(200, [], request.sha256.encode())

    server = await serve(handler)
    app = make_app(server.url())
    chunks = (CHUNK for _ in range(SIZE // len(CHUNK)))
    result = await drive(app, "PUT", "/blob", body=chunks)
    assert result.status == 200, result.error
    assert server.requests[0].body_length == SIZE
    assert result.body.decode() == expected_digest()
    assert traced() < LIMIT


@pytest.mark.slow
async def test_50_mb_response_body_streams_through(
    serve: Serve, make_app: MakeApp, traced: Callable[[], int]
) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
            for _ in range(SIZE // len(CHUNK)):
                conn.writer.write(CHUNK)
                await conn.writer.drain()

    server = await serve(handler)
    app = make_app(server.url())
    digest = hashlib.sha256()
    messages = 0

    async def send(message: Message) -> None:
        nonlocal messages
        if message["type"] == "http.response.body":
            body = message["body"]
            assert isinstance(body, bytes)
            digest.update(body)
            messages += 1

    scope = http_scope("GET", "/blob")
    await app(scope, no_body, send)
    assert digest.hexdigest() == expected_digest()
    assert messages > 10
    assert traced() < LIMIT
    assert app.pool.idle_connections == 1


@pytest.mark.slow
async def test_50_mb_chunked_upload_without_length(
    serve: Serve, make_app: MakeApp, traced: Callable[[], int]
) -> None:
    async def handler(conn: Connection) -> None:
        while (request := await conn.read_request(keep_body=False)) is not None:
            framing = request.header("transfer-encoding") or "none"
            await conn.respond(200, [], f"{framing} {request.sha256}".encode())

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "POST", "/", body=(CHUNK for _ in range(SIZE // len(CHUNK))))
    assert result.body.decode() == f"chunked {expected_digest()}"
    assert traced() < LIMIT


async def test_streamed_request_with_length_is_sent_with_it(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve()
    app = make_app(server.url())
    result = await drive(
        app, "POST", "/", headers=[(b"content-length", b"196608")], body=[CHUNK, CHUNK, CHUNK]
    )
    assert result.status == 200, result.error
    seen = server.requests[0]
    assert seen.header("content-length") == "196608"
    assert seen.header("transfer-encoding") is None
    assert seen.body == CHUNK * 3
