"""Upstream failures: what the client is told, and how long it takes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from apishield.errors import UpstreamError, UpstreamTimeoutError
from apishield.proxy import UpstreamAbortedError, UpstreamApp
from apishield.types import Message
from tests.proxy.upstreams import Connection, RawUpstream, closed_port, drive, http_scope, no_body

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]


def assert_says_nothing_internal(error: UpstreamError, port: int) -> None:
    detail = error.detail or ""
    for leak in (str(port), "127.0.0.1", "Errno", "refused", "reset", "ssl", "Timeout"):
        assert leak.lower() not in detail.lower(), (leak, detail)


async def test_nothing_listening_is_502(make_app: MakeApp) -> None:
    port = closed_port()
    app = make_app(f"http://127.0.0.1:{port}")
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert not isinstance(result.error, UpstreamTimeoutError)
    assert (result.error.status, result.error.code) == (502, "upstream_unavailable")
    assert isinstance(result.error.__cause__, ConnectionRefusedError)
    assert_says_nothing_internal(result.error, port)
    assert result.messages == []
    assert app.pool.open_connections == 0


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="before-any-byte"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-", id="mid-headers"),
    ],
)
async def test_reset_before_the_head_is_complete_is_502(
    serve: Serve, make_app: MakeApp, sent: bytes
) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        if sent:
            await conn.send_raw(sent)
            await asyncio.sleep(0.05)
        conn.reset()

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert (result.error.status, result.error.code) == (502, "upstream_unavailable")
    assert_says_nothing_internal(result.error, server.port)
    assert result.messages == []


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A listening port whose accept queue is full, so a new SYN goes unanswered."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            fillers.append(filler)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_connect_timeout_is_504(make_app: MakeApp) -> None:
    with full_backlog() as port:
        app = make_app(f"http://127.0.0.1:{port}", timeouts={"connect": 0.3})
        started = time.monotonic()
        result = await drive(app, "GET", "/")
        elapsed = time.monotonic() - started
    assert isinstance(result.error, UpstreamTimeoutError)
    assert (result.error.status, result.error.code) == (504, "upstream_timeout")
    assert_says_nothing_internal(result.error, port)
    assert elapsed < 0.3 + 1.0


async def test_silent_upstream_is_504_after_the_read_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.reader.read()  # accepts, reads, never answers

    server = await serve(handler)
    app = make_app(server.url(), timeouts={"read": 0.4})
    started = time.monotonic()
    result = await drive(app, "GET", "/")
    elapsed = time.monotonic() - started
    assert isinstance(result.error, UpstreamTimeoutError)
    assert result.error.code == "upstream_timeout"
    assert_says_nothing_internal(result.error, server.port)
    assert 0.4 <= elapsed < 0.4 + 1.0
    assert app.pool.open_connections == 0


async def test_slow_headers_hit_the_total_timeout(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        # A byte every 100 ms keeps the read timeout at bay, never finishing the head.
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
            await conn.send_raw(bytes([byte]))
            await asyncio.sleep(0.1)

    server = await serve(handler)
    app = make_app(server.url(), timeouts={"read": 0.5, "total": 1.0})
    started = time.monotonic()
    result = await drive(app, "GET", "/")
    elapsed = time.monotonic() - started
    assert isinstance(result.error, UpstreamTimeoutError)
    assert 1.0 <= elapsed < 1.0 + 1.0


async def test_failure_mid_body_aborts_without_finishing(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
        await asyncio.sleep(0.1)
        conn.reset()

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamAbortedError)
    assert result.error.code == "upstream_aborted"
    assert result.status == 200
    assert not result.finished
    assert result.body == b"a" * 1000
    assert app.pool.open_connections == 0


async def test_read_timeout_mid_body_aborts(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await conn.reader.read()

    server = await serve(handler)
    app = make_app(server.url(), timeouts={"read": 0.4})
    started = time.monotonic()
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamAbortedError)
    assert isinstance(result.error.__cause__, UpstreamTimeoutError)
    assert (result.status, result.body, result.finished) == (200, b"abc", False)
    assert time.monotonic() - started < 0.4 + 1.0


async def test_close_before_the_announced_length_aborts(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
        await asyncio.sleep(0.05)

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamAbortedError)
    assert not result.finished


@pytest.mark.slow
async def test_slow_client_does_not_trigger_the_read_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    # Once the flow-control window is full we stop reading, so the upstream goes quiet for
    # longer than the read timeout; that silence is the client's doing, not the upstream's.
    payload = b"p" * (1024 * 1024)

    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.respond(200, [], payload)

    server = await serve(handler)
    app = make_app(server.url(), timeouts={"read": 0.2, "total": 10})
    received = 0

    async def send(message: Message) -> None:
        nonlocal received
        body = message.get("body", b"")
        assert isinstance(body, bytes)
        received += len(body)
        if message["type"] == "http.response.body":
            await asyncio.sleep(0.4)  # slower than the read timeout, message after message

    scope = http_scope("GET", "/")
    await app(scope, no_body, send)
    assert received == len(payload)


async def test_upstream_not_reading_the_upload_is_504(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)  # takes the head, never the body

    server = await serve(handler)
    app = make_app(server.url(), timeouts={"read": 0.3})
    chunk = b"u" * 65536
    started = time.monotonic()
    result = await drive(app, "PUT", "/", body=(chunk for _ in range(1024)))  # 64 MiB
    assert isinstance(result.error, UpstreamTimeoutError), result.error
    assert time.monotonic() - started < 0.3 + 2.0
    assert result.messages == []


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000, id="endless-field"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 10_000, id="too-many-fields"),
        pytest.param(b"HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n", id="status-600"),
    ],
)
async def test_oversized_or_invalid_heads_are_502(
    serve: Serve, make_app: MakeApp, head: bytes
) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(head)
        await conn.reader.read()

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert (result.error.status, result.error.code) == (502, "upstream_unavailable")
