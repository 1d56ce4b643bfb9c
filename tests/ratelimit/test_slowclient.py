"""Slowloris and slow bodies against a real uvicorn server using ``SlowClientProtocol``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn

from apishield.server.slowclient import SlowClientSettings, slow_client_protocol
from apishield.types import Receive, Scope, Send

TIMEOUT = 0.5  # head deadline and body window of the server under test
MARGIN = 3.0  # generous: the machine is shared


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, then answers; ``/slow`` thinks for 1.5 s first."""
    assert scope["type"] == "http"
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    body = json.dumps({"received": size}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    settings = SlowClientSettings(header_timeout=TIMEOUT, body_timeout=TIMEOUT, min_body_rate=200)
    config = uvicorn.Config(
        app,
        http=slow_client_protocol(settings),
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def trickle(writer: asyncio.StreamWriter, pieces: list[bytes], every: float) -> None:
    """Send ``pieces`` one by one, ``every`` seconds apart, until the server closes."""
    with contextlib.suppress(ConnectionError):
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(every)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), TIMEOUT + MARGIN + 10)


SLOW_HEADS = [
    pytest.param([b"GET / HTTP/1.1\r\n"] + [b"X-Pad: a\r\n"] * 100, id="header-lines"),
    pytest.param(
        [bytes([c]) for c in b"GET /a-long-path-sent-byte-by-byte HTTP/1.1\r\n"], id="bytes"
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("pieces", SLOW_HEADS)
async def test_slowloris_is_refused_within_the_timeout(
    port: int, pieces: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="apishield.server")
    async with connect(port) as (reader, writer):
        started = time.monotonic()
        sender = asyncio.create_task(trickle(writer, pieces, 0.1))
        answer = await read_all(reader)
        elapsed = time.monotonic() - started
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head and b"content-type: application/problem+json" in head
    assert json.loads(body)["code"] == "request_timeout"
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + MARGIN
    assert "slow client refused: request head not received in time (client 127.0.0.1)" in (
        caplog.text
    )


@pytest.mark.slow
async def test_a_silent_connection_is_closed(port: int) -> None:
    async with connect(port) as (reader, _):
        started = time.monotonic()
        assert await read_all(reader) == b""  # nothing was asked, so nothing is answered
        assert time.monotonic() - started < TIMEOUT + MARGIN


@pytest.mark.slow
async def test_a_slow_body_is_refused(port: int) -> None:
    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n"
    async with connect(port) as (reader, writer):
        started = time.monotonic()
        sender = asyncio.create_task(trickle(writer, [head] + [b"x"] * 200, 0.1))
        answer = await read_all(reader)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 2 * TIMEOUT + MARGIN


@pytest.mark.slow
async def test_honest_clients_and_slow_applications_are_served(port: int) -> None:
    async with connect(port) as (reader, writer):
        # Keep-alive: each request gets its own deadline, idle time between them is not counted.
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 ")
            await asyncio.wait_for(reader.readuntil(b"}"), 10)
            await asyncio.sleep(TIMEOUT * 1.5)
        # A body at a decent rate over several windows, then an application slower than every
        # deadline: neither is the client's fault.
        body = b"y" * 3000
        writer.write(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n")
        for i in range(0, len(body), 250):
            writer.write(body[i : i + 250])
            await writer.drain()
            await asyncio.sleep(0.1)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(reader.readuntil(b"}"), 10) == b'{"received": 3000}'
