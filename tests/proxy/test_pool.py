"""Keep-alive reuse, pool limits, idle expiry and the stale-connection retry, on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from apishield.errors import UpstreamError
from apishield.proxy import UpstreamApp
from apishield.types import Message
from tests.proxy.upstreams import Connection, RawUpstream, drive, http_scope, no_body

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]


async def test_sequential_requests_share_one_connection(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    for i in range(5):
        result = await drive(app, "POST" if i % 2 else "GET", f"/{i}", body=b"x" * i)
        assert result.status == 200, result.error
    assert server.connections == 1
    assert [(r.connection, r.index) for r in server.requests] == [(1, i) for i in range(5)]
    assert app.pool.idle_connections == 1


async def test_pool_limit_holds_under_concurrency(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await asyncio.sleep(0.02)
            await conn.respond(200, [], b"ok")

    server = await serve(handler)
    app = make_app(server.url(), pool={"max_connections": 3})
    results = await asyncio.gather(*(drive(app, "GET", f"/{i}") for i in range(30)))
    assert [r.status for r in results] == [200] * 30
    assert server.max_open <= 3
    assert server.connections == 3
    assert len(server.requests) == 30


async def test_exhausted_pool_is_503_after_the_connect_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    release = asyncio.Event()

    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await release.wait()
            await conn.respond(200, [], b"ok")

    server = await serve(handler)
    app = make_app(server.url(), pool={"max_connections": 1}, timeouts={"connect": 0.3})
    first = asyncio.create_task(drive(app, "GET", "/slow"))
    while not server.requests:
        await asyncio.sleep(0.01)
    second = await drive(app, "GET", "/waits")
    assert isinstance(second.error, UpstreamError)
    assert (second.error.status, second.error.code) == (503, "upstream_pool_exhausted")
    assert second.error.headers == {"Retry-After": "1"}
    release.set()
    assert (await first).status == 200
    assert (await drive(app, "GET", "/after")).status == 200
    assert server.connections == 1


async def test_waiter_gets_the_released_connection(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await asyncio.sleep(0.1)
            await conn.respond(200, [], b"ok")

    server = await serve(handler)
    app = make_app(server.url(), pool={"max_connections": 1}, timeouts={"connect": 2})
    results = await asyncio.gather(*(drive(app, "GET", "/") for _ in range(3)))
    assert [r.status for r in results] == [200] * 3
    assert server.connections == 1


async def test_idle_connections_are_closed_after_the_idle_timeout(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve()
    app = make_app(server.url(), pool={"idle_timeout": 0.2})
    assert (await drive(app, "GET", "/")).status == 200
    assert app.pool.idle_connections == 1
    for _ in range(100):
        if server.open_now == 0:
            break
        await asyncio.sleep(0.02)
    assert server.open_now == 0  # the upstream saw the connection closed
    assert app.pool.open_connections == 0
    assert (await drive(app, "GET", "/")).status == 200
    assert server.connections == 2


async def test_connection_closed_by_the_upstream_while_idle_is_dropped(
    serve: Serve, make_app: MakeApp
) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.respond(200, [], b"ok")  # no "Connection: close", then closes anyway

    server = await serve(handler)
    app = make_app(server.url())
    assert (await drive(app, "GET", "/")).status == 200
    for _ in range(100):
        if app.pool.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert app.pool.open_connections == 0
    second = await drive(app, "GET", "/")
    assert second.status == 200, second.error
    assert server.connections == 2


def drop_second_request(conn: Connection) -> Callable[[], Awaitable[None]]:
    """Answer the first request on a connection, then close without answering the second:
    the race where the upstream times out an idle connection just as we reuse it."""

    async def run() -> None:
        if await conn.read_request() is None:
            return
        await conn.respond(200, [], b"first")
        await conn.reader.readuntil(b"\r\n\r\n")
        conn.writer.close()

    return run


async def test_stale_keep_alive_connection_is_retried_once(serve: Serve, make_app: MakeApp) -> None:
    server = await serve(lambda conn: drop_second_request(conn)())
    app = make_app(server.url())
    first = await drive(app, "GET", "/a")
    second = await drive(app, "GET", "/b")
    assert (first.status, first.body) == (200, b"first")
    assert (second.status, second.body) == (200, b"first"), second.error
    assert server.connections == 2


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("POST", b'{"pay": 10}', id="post-not-idempotent"),
        pytest.param("PATCH", b"{}", id="patch-not-idempotent"),
        pytest.param("PUT", [b"streamed", b"body"], id="put-body-streamed"),
    ],
)
async def test_unsafe_requests_are_not_retried(
    serve: Serve, make_app: MakeApp, method: str, body: bytes | list[bytes]
) -> None:
    server = await serve(lambda conn: drop_second_request(conn)())
    app = make_app(server.url())
    assert (await drive(app, "GET", "/a")).status == 200
    result = await drive(app, method, "/b", body=body)
    assert isinstance(result.error, UpstreamError)
    assert (result.error.status, result.error.code) == (502, "upstream_unavailable")
    assert server.connections == 1


async def test_failure_on_a_new_connection_is_not_retried(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        conn.writer.close()

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", id="close"
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", id="http-1.0"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            id="http-1.0-keep-alive",
        ),
    ],
)
async def test_connection_is_not_reused_when_the_upstream_says_so(
    serve: Serve, make_app: MakeApp, answer: bytes
) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.send_raw(answer)

    server = await serve(handler)
    app = make_app(server.url())
    for _ in range(2):
        result = await drive(app, "GET", "/")
        assert (result.status, result.body) == (200, b"ok"), result.error
    assert server.connections == 2
    assert app.pool.open_connections == 0


async def test_connection_is_not_reused_after_a_partly_read_response(
    serve: Serve, make_app: MakeApp
) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.respond(200, [], b"x" * 2_000_000)

    server = await serve(handler)
    app = make_app(server.url())

    class ClientGone(Exception):
        pass

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise ClientGone  # a server whose client went away mid-response

    scope = http_scope("GET", "/")
    with pytest.raises(ClientGone):
        await app(scope, no_body, send)
    assert app.pool.open_connections == 0
    assert (await drive(app, "GET", "/", keep_body=False)).status == 200
    assert server.connections == 2


async def test_extra_bytes_after_a_response_retire_the_connection(
    serve: Serve, make_app: MakeApp
) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.send_raw(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
            )

    server = await serve(handler)
    app = make_app(server.url())
    for _ in range(2):
        result = await drive(app, "GET", "/")
        assert (result.status, result.body) == (200, b"ok"), result.error
    assert server.connections == 2


async def test_cancelled_request_releases_its_connection(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await asyncio.sleep(10)

    server = await serve(handler)
    app = make_app(server.url(), pool={"max_connections": 1})
    task = asyncio.create_task(drive(app, "GET", "/"))
    while not server.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert app.pool.open_connections == 0


async def test_unsolicited_bytes_on_an_idle_connection_retire_it(
    serve: Serve, make_app: MakeApp
) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.respond(200, [], b"ok")
            await asyncio.sleep(0.05)
            await conn.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")

    server = await serve(handler)
    app = make_app(server.url())
    assert (await drive(app, "GET", "/")).body == b"ok"
    for _ in range(100):
        if app.pool.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert app.pool.open_connections == 0
    second = await drive(app, "GET", "/")
    assert second.body == b"ok"
    assert server.connections == 2
