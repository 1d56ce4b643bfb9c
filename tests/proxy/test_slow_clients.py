"""Clients that send or read slowly, or not at all, cannot hold the upstream pool.

The attack: with a pool of N connections, N clients that ask for an answer and never read it,
or start an upload and go silent, used to hold every connection for as long as they liked,
and everyone else got 503 ``upstream_pool_exhausted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest

from apishield.errors import PROBLEM_TYPE_BASE, UpstreamError, UpstreamTimeoutError
from apishield.pipeline.errors import ErrorsMiddleware
from apishield.proxy import (
    ClientTooSlowError,
    RequestTimeoutError,
    UpstreamAbortedError,
    UpstreamApp,
)
from apishield.types import Message
from tests.proxy.upstreams import Connection, RawUpstream, drive, http_scope, no_body, served

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]

MEDIUM = b"m" * (200 * 1024)  # complete in our buffers (under the flow-control window)
LARGE = b"L" * (4 * 1024 * 1024)  # never complete in our buffers while the client is stuck


async def by_path(conn: Connection) -> None:
    """Answer ``/medium`` and ``/large`` with their bodies, anything else with ``ok``."""
    while (request := await conn.read_request()) is not None:
        body = {"/medium": MEDIUM, "/large": LARGE}.get(request.target, b"ok")
        await conn.respond(200, [("Content-Type", "application/octet-stream")], body)


async def stuck_send(message: Message) -> None:
    """``send`` of a client that takes the head and never reads the body."""
    if message["type"] == "http.response.body":
        await asyncio.Event().wait()


async def ignore(message: Message) -> None:
    """``send`` that drops what it is given."""


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- in-process: the ASGI app driven directly ------------------------------------------------


async def test_connection_goes_back_before_a_stuck_client_reads(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve(by_path)
    app = make_app(server.url(), pool={"max_connections": 1}, timeouts={"connect": 0.5})
    stuck = asyncio.create_task(app(http_scope("GET", "/medium"), no_body, stuck_send))
    try:
        await wait_for(lambda: len(server.requests) == 1)
        await asyncio.sleep(0.1)
        result = await drive(app, "GET", "/next")
        assert (result.status, result.body) == (200, b"ok"), result.error
        assert not stuck.done()  # its client still has the rest to read, from memory
        assert server.connections == 1  # the same connection, reused
    finally:
        stuck.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stuck


async def test_response_completed_while_the_client_reads_releases_the_connection(
    serve: Serve, make_app: MakeApp
) -> None:
    release = asyncio.Event()

    async def slow_tail(conn: Connection) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/next":
                await conn.respond(200, [], b"ok")
                continue
            await conn.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhead")
            await release.wait()
            await conn.send_raw(b"er")

    server = await serve(slow_tail)
    app = make_app(server.url(), pool={"max_connections": 1}, timeouts={"connect": 0.5})
    stuck = asyncio.create_task(app(http_scope("GET", "/"), no_body, stuck_send))
    try:
        await wait_for(lambda: len(server.requests) == 1)
        await asyncio.sleep(0.05)
        release.set()  # completes while the client is stuck in its first body message
        result = await drive(app, "GET", "/next")
        assert (result.status, result.body) == (200, b"ok"), result.error
        assert server.connections == 1
    finally:
        stuck.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stuck


async def test_client_not_reading_a_large_response_is_cut_at_the_total_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve(by_path)
    app = make_app(server.url(), pool={"max_connections": 1}, timeouts={"total": 0.4})
    started = time.monotonic()
    with pytest.raises(ClientTooSlowError) as caught:
        await app(http_scope("GET", "/large"), no_body, stuck_send)
    assert time.monotonic() - started < 0.4 + 1.5
    assert caught.value.code == "client_too_slow"
    assert app.pool.open_connections == 0  # retired: the upstream was still sending
    result = await drive(app, "GET", "/next")
    assert (result.status, result.body) == (200, b"ok"), result.error


async def test_total_timeout_mid_response_from_the_upstream_aborts(
    serve: Serve, make_app: MakeApp
) -> None:
    async def trickle(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):  # a byte every 50 ms keeps the read timeout at bay
            await conn.send_raw(b"1\r\nx\r\n")
            await asyncio.sleep(0.05)

    server = await serve(trickle)
    app = make_app(server.url(), timeouts={"read": 0.3, "total": 0.4})
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamAbortedError)
    assert isinstance(result.error.__cause__, UpstreamTimeoutError)
    assert result.status == 200 and not result.finished
    assert app.pool.open_connections == 0


def stalled_receive(chunks: list[bytes]) -> Callable[[], Awaitable[Message]]:
    """``receive`` of a client that sends ``chunks`` of its body and then nothing."""
    position = 0

    async def receive() -> Message:
        nonlocal position
        if position < len(chunks):
            position += 1
            return {"type": "http.request", "body": chunks[position - 1], "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


@pytest.mark.parametrize(
    ("chunks", "framing"),
    [
        pytest.param([b"first"], (b"transfer-encoding", b"chunked"), id="chunked"),
        pytest.param([b"first"], (b"content-length", b"100"), id="content-length"),
    ],
)
async def test_stalled_upload_is_408_and_frees_the_connection(
    serve: Serve, make_app: MakeApp, chunks: list[bytes], framing: tuple[bytes, bytes]
) -> None:
    server = await serve()
    app = make_app(server.url(), pool={"max_connections": 1}, timeouts={"read": 0.2})
    scope = http_scope("POST", "/upload", headers=[framing])
    started = time.monotonic()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RequestTimeoutError) as caught:
        await app(scope, stalled_receive(chunks), send)
    assert 0.2 <= time.monotonic() - started < 0.2 + 1.5
    error = caught.value
    assert (error.status, error.code) == (408, "request_timeout")
    assert error.headers == {"Connection": "close"}  # RFC 9110 §15.5.9
    assert sent == []
    assert app.pool.open_connections == 0
    await wait_for(lambda: server.open_now == 0)  # the upstream saw the upload cut off
    assert server.requests == []


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([], id="nothing"),
        pytest.param([b"", b""], id="empty-pieces"),
    ],
)
async def test_no_connection_is_taken_before_the_body_starts(
    serve: Serve, make_app: MakeApp, chunks: list[bytes]
) -> None:
    server = await serve()
    app = make_app(server.url(), timeouts={"read": 0.2})
    scope = http_scope("POST", "/", headers=[(b"content-length", b"10")])

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    with pytest.raises(RequestTimeoutError):
        await app(scope, stalled_receive(chunks), send)
    assert server.connections == 0
    assert app.pool.open_connections == 0


async def test_trickling_upload_is_cut_at_the_total_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve()
    app = make_app(server.url(), timeouts={"read": 0.4, "total": 0.5})

    async def trickle() -> Message:
        await asyncio.sleep(0.05)  # well within the read timeout, piece after piece
        return {"type": "http.request", "body": b"x", "more_body": True}

    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        await app(
            http_scope("PUT", "/", headers=[(b"transfer-encoding", b"chunked")]), trickle, ignore
        )
    assert 0.5 <= time.monotonic() - started < 0.5 + 1.5
    assert app.pool.open_connections == 0


async def test_a_cancellation_from_elsewhere_is_not_taken_for_a_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve()
    app = make_app(server.url(), timeouts={"read": 0.2})
    scope = http_scope("POST", "/", headers=[(b"transfer-encoding", b"chunked")])
    task = asyncio.create_task(app(scope, stalled_receive([b"a"]), ignore))
    await wait_for(lambda: server.connections == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert app.pool.open_connections == 0


# -- on the wire: uvicorn in front, raw sockets as attackers ---------------------------------


async def attacker(url: str, request: bytes) -> socket.socket:
    """A client socket with a tiny receive buffer that sends ``request`` and then reads
    nothing."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    port = int(url.rsplit(":", 1)[1])
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, request)
    return sock


@contextlib.asynccontextmanager
async def gateway(app: UpstreamApp) -> AsyncIterator[str]:
    """``app`` behind the errors stage and uvicorn, with small socket buffers."""
    wrapped = ErrorsMiddleware(app, type_base=PROBLEM_TYPE_BASE)
    async with served(wrapped, send_buffer=4096) as url:
        yield url


@contextlib.contextmanager
def closing(socks: list[socket.socket]) -> Iterator[None]:
    try:
        yield
    finally:
        for sock in socks:
            sock.close()


async def test_clients_not_reading_do_not_starve_the_pool(serve: Serve, make_app: MakeApp) -> None:
    server = await serve(by_path)
    app = make_app(server.url(), pool={"max_connections": 2}, timeouts={"connect": 1, "total": 30})
    async with gateway(app) as url:
        request = b"GET /medium HTTP/1.1\r\nHost: gw\r\n\r\n"
        socks = [await attacker(url, request) for _ in range(2)]
        with closing(socks):
            await wait_for(lambda: len(server.requests) == 2)
            await asyncio.sleep(0.2)
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{url}/legit")
            # Starved, it would have waited out the 1 s acquire timeout and got a 503.
            assert (response.status_code, response.content) == (200, b"ok")


async def test_clients_not_reading_large_answers_are_cut_at_the_total_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve(by_path)
    app = make_app(server.url(), pool={"max_connections": 2}, timeouts={"connect": 3, "total": 1})
    async with gateway(app) as url:
        request = b"GET /large HTTP/1.1\r\nHost: gw\r\n\r\n"
        socks = [await attacker(url, request) for _ in range(2)]
        with closing(socks):
            await wait_for(lambda: len(server.requests) == 2)
            await asyncio.sleep(0.5)  # so that the attackers' deadlines come first
            started = time.monotonic()
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{url}/legit")
            assert (response.status_code, response.content) == (200, b"ok")
            assert time.monotonic() - started < 1.0 + 1.5


async def test_stalled_uploads_do_not_starve_the_pool(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(
        server.url(),
        pool={"max_connections": 2},
        timeouts={"connect": 3, "read": 0.3, "total": 30},
    )
    async with gateway(app) as url:
        request = (
            b"POST /upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        socks = [await attacker(url, request) for _ in range(2)]
        with closing(socks):
            await wait_for(lambda: server.connections == 2)
            started = time.monotonic()
            async with httpx.AsyncClient() as client:
                response = await client.get(f"{url}/legit")
            assert response.status_code == 200
            assert time.monotonic() - started < 0.3 + 1.5
            loop = asyncio.get_running_loop()
            for sock in socks:
                answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
                assert answer.startswith(b"HTTP/1.1 408 ")
                assert b'"code":"request_timeout"' in answer
                assert b"connection: close" in answer.lower()
    assert server.requests[-1].target == "/legit"


async def test_pool_exhausted_is_still_reported_when_the_upstream_is_slow(
    serve: Serve, make_app: MakeApp
) -> None:
    # The deadlines end clients' holds, not the upstream's: a busy pool still says so.
    release = asyncio.Event()

    async def slow(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await release.wait()
            await conn.respond(200, [], b"ok")

    server = await serve(slow)
    app = make_app(server.url(), pool={"max_connections": 1}, timeouts={"connect": 0.3})
    first = asyncio.create_task(drive(app, "GET", "/"))
    await wait_for(lambda: len(server.requests) == 1)
    second = await drive(app, "GET", "/")
    assert isinstance(second.error, UpstreamError)
    assert second.error.code == "upstream_pool_exhausted"
    release.set()
    assert (await first).status == 200
