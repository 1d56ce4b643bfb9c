"""Responses leave in whole writes per loop turn: on the wire every answer still arrives
complete and in order, also around pipelining, streaming and a closing connection."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from apishield.server import GatewayServer
from apishield.types import Receive, Scope, Send

from .server_support import StandInApp, policy_for, serving_in_thread

STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The head, then a body in three pieces with real waits in between."""
    if scope["type"] == "lifespan":
        await StandInApp()(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for piece in (b"one,", b"two,", b"three"):
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    policy = policy_for(tmp_path_factory.mktemp("coalescing"), tls="off")
    with serving_in_thread(policy, StandInApp()) as server:
        yield server


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    assert found is not None
    length = int(found[1])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_pipelined_requests_get_every_answer_in_order(plain: GatewayServer) -> None:
    requests = b"".join(
        f"GET /item-{n} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() for n in range(20)
    )
    requests += b"GET /last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    assert plain.bound_port is not None
    with socket.create_connection(("127.0.0.1", plain.bound_port), timeout=10) as sock:
        sock.sendall(requests)
        data = read_all(sock)  # the server closes after the last answer
    assert STATUS.findall(data) == [b"200"] * 21
    paths = re.findall(rb'"path": "(/[^"]*)"', data)
    assert paths == [f"/item-{n}".encode() for n in range(20)] + [b"/last"]


def test_a_bad_request_gets_its_400_before_the_close(plain: GatewayServer) -> None:
    assert plain.bound_port is not None
    with socket.create_connection(("127.0.0.1", plain.bound_port), timeout=10) as sock:
        sock.sendall(b"GET /\x01 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = read_all(sock)
    assert STATUS.findall(data) == [b"400"]


def test_a_streamed_body_arrives_whole(tmp_path: Path) -> None:
    with serving_in_thread(policy_for(tmp_path, tls="off"), streaming_app) as server:
        assert server.bound_port is not None
        with socket.create_connection(("127.0.0.1", server.bound_port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in head
    assert body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"


@pytest.mark.slow
def test_an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(
    plain: GatewayServer,
) -> None:
    assert plain.bound_port is not None
    request = b"GET /again HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", plain.bound_port), timeout=30) as sock:
        for _ in range(3):  # answers keep coming on the same connection
            sock.sendall(request)
            assert STATUS.match(read_response(sock)) is not None
        # Then nothing more: uvicorn's keep-alive timeout (5 s) ends it from the server side.
        assert sock.recv(65536) == b""
