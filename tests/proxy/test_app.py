"""Round trips through ``UpstreamApp`` against real loopback upstreams."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from apishield.errors import BadRequestError, ConfigError, UpstreamError
from apishield.policy.models import Upstream
from apishield.proxy import UpstreamApp
from apishield.types import Message
from tests.proxy.upstreams import Connection, RawUpstream, context, drive, http_scope

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]


async def test_get_round_trip(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    result = await drive(app, "GET", "/v1/orders/7")
    assert result.error is None
    assert result.status == 200
    assert result.header("content-type") == "application/json"
    seen = result.json()
    assert seen["method"] == "GET"
    assert seen["target"] == "/v1/orders/7"
    assert dict(seen["headers"])["host"] == f"127.0.0.1:{server.port}"
    assert "content-length" not in dict(seen["headers"])  # GET without content
    assert result.messages[-1] == {"type": "http.response.body", "more_body": False}


@pytest.mark.parametrize(
    ("chunks", "client_length", "framing"),
    [
        pytest.param([b'{"a": 1}'], None, ("content-length", "8"), id="whole-body"),
        pytest.param([b""], None, ("content-length", "0"), id="empty-post"),
        pytest.param(
            [b'{"a":', b"", b" 1}"], None, ("transfer-encoding", "chunked"), id="streamed-chunked"
        ),
        pytest.param([b'{"a":', b" 1}"], b"8", ("content-length", "8"), id="streamed-with-length"),
    ],
)
async def test_post_body_is_forwarded(
    serve: Serve,
    make_app: MakeApp,
    chunks: list[bytes],
    client_length: bytes | None,
    framing: tuple[str, str],
) -> None:
    server = await serve()
    app = make_app(server.url())
    headers = [(b"content-type", b"application/json")]
    if client_length is not None:
        headers.append((b"content-length", client_length))
    result = await drive(app, "POST", "/orders", headers=headers, body=chunks)
    assert result.status == 200, result.error
    request = server.requests[0]
    assert request.body == b"".join(chunks)
    assert request.header(framing[0]) == framing[1]
    other = "transfer-encoding" if framing[0] == "content-length" else "content-length"
    assert request.header(other) is None


@pytest.mark.parametrize(
    ("base", "raw_path", "query", "target"),
    [
        pytest.param("", b"/a%2Fb/c", b"", "/a%2Fb/c", id="encoded-slash-kept"),
        pytest.param("", b"/a/b", b"x=1&y=%20z", "/a/b?x=1&y=%20z", id="query-kept"),
        pytest.param("/api", b"/users", b"", "/api/users", id="base-path-joined"),
        pytest.param("/api/v2", b"/", b"q=1", "/api/v2/?q=1", id="base-path-root"),
        pytest.param("/api", b"/%E2%98%83", b"", "/api/%E2%98%83", id="percent-utf8-kept"),
        pytest.param("", b"/a;b=c,d", b"", "/a;b=c,d", id="sub-delims-kept"),
    ],
)
async def test_target_is_forwarded_byte_for_byte(
    serve: Serve,
    make_app: MakeApp,
    base: str,
    raw_path: bytes,
    query: bytes,
    target: str,
) -> None:
    server = await serve()
    app = make_app(server.url(path=base))
    result = await drive(app, "GET", "/ignored", raw_path=raw_path, query=query)
    assert result.status == 200, result.error
    assert server.requests[0].target == target


async def test_target_without_raw_path_is_quoted(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    result = await drive(app, "GET", "/files/a b/\u00e9", omit_raw_path=True)
    assert result.status == 200, result.error
    assert server.requests[0].target == "/files/a%20b/%C3%A9"


async def test_invalid_path_is_refused_before_connecting(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    result = await drive(app, "GET", "/", raw_path=b"no-slash")
    assert isinstance(result.error, BadRequestError)
    assert server.connections == 0


async def test_hop_by_hop_fields_are_removed_both_ways(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.respond(
                200,
                [
                    ("Connection", "keep-alive, X-Upstream-Private"),
                    ("X-Upstream-Private", "internal"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authenticate", "Basic realm=x"),
                    ("Upgrade", "h2c"),
                    ("Trailer", "X-Checksum"),
                    ("X-Public", "yes"),
                ],
                b"ok",
            )

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(
        app,
        "GET",
        "/",
        headers=[
            (b"connection", b"keep-alive, X-Foo, TE"),
            (b"x-foo", b"client-private"),
            (b"keep-alive", b"timeout=5"),
            (b"te", b"trailers"),
            (b"trailer", b"x-sum"),
            (b"upgrade", b"websocket"),
            (b"proxy-authorization", b"Basic c2VjcmV0"),
            (b"proxy-connection", b"keep-alive"),
            (b"authorization", b"Bearer kept"),
            (b"x-kept", b"yes"),
        ],
    )
    assert result.status == 200, result.error
    seen = server.requests[0]
    for name in (
        "connection",
        "x-foo",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ):
        assert name not in seen.names(), name
    assert seen.header("authorization") == "Bearer kept"
    assert seen.header("x-kept") == "yes"
    for name in ("connection", "x-upstream-private", "keep-alive", "proxy-authenticate"):
        assert result.header(name) is None, name
    for name in ("upgrade", "trailer"):
        assert result.header(name) is None, name
    assert result.header("x-public") == "yes"


async def test_client_identity_fields_are_replaced_by_ours(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    ctx = context(request_id="rid-42", client_ip="192.0.2.10", scheme="https", host="api.test")
    result = await drive(
        app,
        "GET",
        "/",
        ctx=ctx,
        headers=[
            (b"host", b"api.test"),
            (b"x-forwarded-for", b"10.0.0.1, 6.6.6.6"),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-host", b"evil.example"),
            (b"forwarded", b"for=6.6.6.6;proto=http"),
            (b"x-real-ip", b"6.6.6.6"),
            (b"x-request-id", b"spoofed"),
        ],
    )
    assert result.status == 200, result.error
    seen = server.requests[0]
    assert seen.header("x-forwarded-for") == "192.0.2.10"
    assert seen.header("x-forwarded-proto") == "https"
    assert seen.header("x-forwarded-host") == "api.test"
    assert seen.header("x-request-id") == "rid-42"
    assert seen.header("host") == f"127.0.0.1:{server.port}"
    assert seen.header("forwarded") is None
    assert seen.header("x-real-ip") is None


async def test_without_a_context_the_server_view_is_used(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    result = await drive(app, "GET", "/", ctx=None, headers=[(b"host", b"standalone.test")])
    assert result.status == 200, result.error
    seen = server.requests[0]
    assert seen.header("x-forwarded-for") == "198.51.100.1"
    assert seen.header("x-forwarded-proto") == "http"
    assert seen.header("x-forwarded-host") == "standalone.test"
    request_id = seen.header("x-request-id")
    assert request_id is not None and len(request_id) == 32
    int(request_id, 16)


async def test_head_response_keeps_its_length_and_the_connection(
    serve: Serve, make_app: MakeApp
) -> None:
    async def handler(conn: Connection) -> None:
        while (request := await conn.read_request()) is not None:
            if request.method == "HEAD":
                await conn.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                await conn.respond(200, [], b"body")

    server = await serve(handler)
    app = make_app(server.url())
    head = await drive(app, "HEAD", "/")
    assert head.status == 200, head.error
    assert head.header("content-length") == "1234"
    assert head.body == b"" and head.finished
    get = await drive(app, "GET", "/")
    assert (get.status, get.body) == (200, b"body")
    assert server.connections == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_responses_without_content(serve: Serve, make_app: MakeApp, status: int) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.send_raw(
                f"HTTP/1.1 {status} X\r\nContent-Length: 5\r\nETag: x\r\n\r\n".encode()
            )

    server = await serve(handler)
    app = make_app(server.url())
    for _ in range(2):
        result = await drive(app, "GET", "/")
        assert result.status == status, result.error
        assert result.body == b"" and result.finished
        assert result.header("content-length") is None
        assert result.header("etag") == "x"
    assert server.connections == 1


async def test_interim_responses_are_skipped(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.send_raw(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
            )

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "POST", "/", body=b"x")
    assert (result.status, result.body) == (201, b"ok")
    assert result.header("link") is None


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", id="two-lengths"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok", id="bad-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", id="negative-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", id="te-not-chunked"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n", id="bare-cr"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", id="obs-fold"),
        pytest.param(b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", id="http-2-status-line"),
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", id="unrequested-101"),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
            id="unrequested-upgrade",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk-size"
        ),
    ],
)
async def test_malformed_responses_are_502(
    serve: Serve, make_app: MakeApp, response: bytes
) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(response)
        await conn.reader.read()  # hold the connection until the proxy gives up on it

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    error = result.error
    if isinstance(error, UpstreamError) and error.code == "upstream_aborted":
        pytest.fail("a framing error in the head must be caught before the response starts")
    assert isinstance(error, UpstreamError), error
    assert (error.status, error.code) == (502, "upstream_unavailable")
    assert error.detail is not None and str(server.port) not in error.detail
    assert result.status is None


async def test_close_delimited_body_is_forwarded_whole(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 300_000)
        conn.writer.close()

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert result.status == 200, result.error
    assert result.body == b"z" * 300_000
    assert result.finished


async def test_chunked_response_is_decoded_and_streamed(serve: Serve, make_app: MakeApp) -> None:
    release = asyncio.Event()

    async def handler(conn: Connection) -> None:
        await conn.read_request()
        await conn.send_raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await release.wait()
        await conn.send_raw(b"6\r\n world\r\n0\r\n\r\n")

    server = await serve(handler)
    app = make_app(server.url())
    task = asyncio.create_task(drive(app, "GET", "/"))
    while not server.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    release.set()
    result = await task
    assert result.status == 200, result.error
    assert result.body == b"hello world"
    assert result.header("transfer-encoding") is None
    bodies = [m for m in result.messages if m["type"] == "http.response.body"]
    assert [m["more_body"] for m in bodies] == [True, False]


async def test_early_response_stops_the_upload(serve: Serve, make_app: MakeApp) -> None:
    async def handler(conn: Connection) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await conn.respond(413, [("Content-Type", "text/plain")], b"too big")
        await conn.reader.read()

    server = await serve(handler)
    app = make_app(server.url())
    sent = 0
    gate = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        sent += 1
        if sent > 1:
            await gate.wait()  # the client is still uploading when the upstream answers
        return {"type": "http.request", "body": b"x" * 1000, "more_body": sent < 1000}

    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    scope = http_scope("POST", "/upload", headers=[(b"content-length", b"1000000")])
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.sleep(0.2)
    gate.set()
    await asyncio.wait_for(task, 5)
    assert messages[0]["status"] == 413
    assert sent < 1000
    assert app.pool.open_connections == 0  # never reused after an unfinished upload


async def test_client_disconnect_during_upload_closes_the_upstream_connection(
    serve: Serve, make_app: MakeApp
) -> None:
    outcome: list[str] = []

    async def handler(conn: Connection) -> None:
        try:
            await conn.read_request()
            outcome.append("complete")
        except asyncio.IncompleteReadError:
            outcome.append("cut")

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "POST", "/", body=[b"part"] * 3, disconnect=True)
    assert result.error is None
    assert result.messages == []
    assert app.pool.open_connections == 0
    for _ in range(100):
        if outcome:
            break
        await asyncio.sleep(0.01)
    assert outcome == ["cut"]
    assert server.requests == []


async def test_lifespan_closes_the_pool(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    assert (await drive(app, "GET", "/")).status == 200
    assert app.pool.idle_connections == 1
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[Message] = []
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})

    async def send(message: Message) -> None:
        outbox.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    assert [m["type"] for m in outbox] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert app.pool.open_connections == 0
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)


async def test_websocket_is_refused(serve: Serve, make_app: MakeApp) -> None:
    server = await serve()
    app = make_app(server.url())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert server.connections == 0


async def test_large_response_streams_in_several_messages(serve: Serve, make_app: MakeApp) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.respond(200, [], payload)

    server = await serve(handler)
    app = make_app(server.url())
    result = await drive(app, "GET", "/")
    assert hashlib.sha256(result.body).digest() == hashlib.sha256(payload).digest()
    bodies = [m for m in result.messages if m["type"] == "http.response.body"]
    assert len(bodies) > 2
    assert all(m["more_body"] for m in bodies[:-1]) and not bodies[-1]["more_body"]


@pytest.mark.parametrize(
    ("version", "headers", "waits"),
    [
        pytest.param("1.1", [], False, id="http-1.1-no-framing"),
        pytest.param("1.1", [(b"content-length", b"0")], True, id="http-1.1-content-length"),
        pytest.param("1.1", [(b"transfer-encoding", b"chunked")], True, id="http-1.1-chunked"),
        pytest.param("2", [], True, id="http-2-always"),
    ],
)
async def test_body_is_read_only_when_framing_allows_one(
    serve: Serve, make_app: MakeApp, version: str, headers: list[tuple[bytes, bytes]], waits: bool
) -> None:
    server = await serve()
    app = make_app(server.url())
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = http_scope("GET", "/", headers=headers)
    scope["http_version"] = version
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert calls == (1 if waits else 0)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:99999", id="port-out-of-range"),
        pytest.param("http://127.0.0.1:port", id="port-not-a-number"),
    ],
)
def test_unusable_upstream_url_is_a_start_up_error(url: str) -> None:
    with pytest.raises(ConfigError):
        UpstreamApp(Upstream(url=url))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(b"x_forwarded_for", b"6.6.6.6", id="underscore-forwarded-for"),
        pytest.param(b"x-real_ip", b"6.6.6.6", id="underscore-real-ip"),
        pytest.param(b"x-original-uri", b"/admin", id="x-original-uri"),
        pytest.param(b"x-forwarded-uri", b"/admin", id="x-forwarded-uri"),
        pytest.param(b"x-remote-user", b"admin", id="x-remote-user"),
        pytest.param(b"remote-user", b"admin", id="remote-user"),
        pytest.param(b"x-http-method-override", b"DELETE", id="method-override"),
        pytest.param(b"x-method-override", b"DELETE", id="x-method-override"),
        pytest.param(b"x-http-method", b"DELETE", id="x-http-method"),
        pytest.param(b"x-authenticated-subject", b"admin", id="forged-identity"),
    ],
)
async def test_spoofed_identity_and_override_fields_never_reach_the_upstream(
    serve: Serve, make_app: MakeApp, name: bytes, value: bytes
) -> None:
    server = await serve()
    app = make_app(server.url())
    result = await drive(app, "POST", "/orders", headers=[(name, value)], body=b"{}")
    assert result.status == 200, result.error
    seen = server.requests[0]
    assert seen.method == "POST"
    assert value.decode() not in [v for _, v in seen.headers if v != "203.0.113.7"]
    for forwarded in seen.names():
        assert "_" not in forwarded
        assert "override" not in forwarded and forwarded != "x-http-method"
    assert seen.header("x-forwarded-for") == "203.0.113.7"


async def test_verified_identity_from_the_context_reaches_the_upstream(
    serve: Serve, make_app: MakeApp
) -> None:
    server = await serve()
    app = make_app(server.url())
    ctx = context()
    ctx.extra["identity_headers"] = [
        (b"x-authenticated-subject", b"alice"),
        (b"x-authenticated-scopes", b"orders:read"),
    ]
    result = await drive(
        app,
        "GET",
        "/",
        ctx=ctx,
        headers=[(b"x-authenticated-subject", b"admin"), (b"x-authenticated-roles", b"root")],
    )
    assert result.status == 200, result.error
    seen = server.requests[0]
    assert seen.header("x-authenticated-subject") == "alice"
    assert seen.header("x-authenticated-scopes") == "orders:read"
    assert seen.header("x-authenticated-roles") is None


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param(b"content-type", id="content-type"),
        pytest.param(b"keep-alive, Authorization", id="authorization"),
        pytest.param(b"x-api-key", id="x-api-key"),
        pytest.param(b"host", id="host"),
    ],
)
async def test_connection_naming_a_checked_field_is_refused_before_connecting(
    serve: Serve, make_app: MakeApp, connection: bytes
) -> None:
    server = await serve()
    app = make_app(server.url())
    result = await drive(
        app,
        "POST",
        "/orders",
        headers=[
            (b"connection", connection),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer t"),
            (b"x-api-key", b"k"),
        ],
        body=b"{}",
    )
    error = result.error
    assert isinstance(error, BadRequestError)
    assert (error.status, error.code) == (400, "connection_header_invalid")
    assert server.connections == 0


@pytest.mark.parametrize(
    ("base", "location", "expected"),
    [
        pytest.param("", "{origin}/orders/8?x=1", "/orders/8?x=1", id="own-origin"),
        pytest.param("/api", "{origin}/api/orders/8", "/orders/8", id="base-path-stripped"),
        pytest.param("", "https://login.example.com/a", "https://login.example.com/a", id="other"),
        pytest.param("", "/orders/8", "/orders/8", id="relative"),
        pytest.param("", "http://localhost:1/x", "http://localhost:1/x", id="other-port"),
    ],
)
async def test_redirects_to_the_upstream_itself_stay_on_the_gateway(
    serve: Serve, make_app: MakeApp, base: str, location: str, expected: str
) -> None:
    origin = ""

    async def handler(conn: Connection) -> None:
        while await conn.read_request() is not None:
            await conn.respond(302, [("Location", location.format(origin=origin))], b"")

    server = await serve(handler)
    origin = server.url()
    app = make_app(server.url(path=base))
    result = await drive(app, "GET", "/")
    assert result.status == 302, result.error
    assert result.header("location") == expected


async def test_connection_protected_fields_can_be_added_per_app(serve: Serve) -> None:
    server = await serve()
    app = UpstreamApp(Upstream(url=server.url()), protected_fields=[" X-Tenant "])
    try:
        result = await drive(
            app, "GET", "/", headers=[(b"connection", b"x-tenant"), (b"x-tenant", b"acme")]
        )
    finally:
        await app.aclose()
    assert isinstance(result.error, BadRequestError)
    assert result.error.code == "connection_header_invalid"
