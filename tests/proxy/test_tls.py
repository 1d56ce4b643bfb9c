"""https:// upstreams: certificates are verified, connections are kept alive."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import pytest
import trustme

from apishield.errors import UpstreamError
from apishield.proxy import UpstreamApp
from tests.proxy.upstreams import Connection, RawUpstream, drive

Serve = Callable[..., Awaitable[RawUpstream]]
MakeApp = Callable[..., UpstreamApp]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_upstream_with_a_trusted_certificate(
    serve: Serve, make_app: MakeApp, ca: trustme.CA
) -> None:
    server = await serve(ssl=server_context(ca, "127.0.0.1"))
    app = make_app(server.url("https"), ssl_context=trusting(ca))
    for _ in range(3):
        result = await drive(app, "GET", "/secure")
        assert result.status == 200, result.error
        assert result.json()["target"] == "/secure"
    assert server.connections == 1


async def test_unknown_certificate_authority_is_502(
    serve: Serve, make_app: MakeApp, ca: trustme.CA
) -> None:
    server = await serve(ssl=server_context(ca, "127.0.0.1"))
    app = make_app(server.url("https"))  # the default context does not know the test CA
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert (result.error.status, result.error.code) == (502, "upstream_unavailable")
    assert isinstance(result.error.__cause__, ssl.SSLCertVerificationError)
    assert "certificate" not in (result.error.detail or "").lower()


async def test_certificate_for_another_name_is_502(
    serve: Serve, make_app: MakeApp, ca: trustme.CA
) -> None:
    server = await serve(ssl=server_context(ca, "orders.internal"))
    app = make_app(server.url("https"), ssl_context=trusting(ca))
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert isinstance(result.error.__cause__, ssl.SSLCertVerificationError)


async def test_plain_http_server_behind_an_https_url_is_502(
    serve: Serve, make_app: MakeApp, ca: trustme.CA
) -> None:
    async def plain(conn: Connection) -> None:
        await conn.reader.read(1)  # the ClientHello
        await conn.send_raw(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    server = await serve(plain)
    app = make_app(server.url("https"), ssl_context=trusting(ca))
    result = await drive(app, "GET", "/")
    assert isinstance(result.error, UpstreamError)
    assert (result.error.status, result.error.code) == (502, "upstream_unavailable")
    assert isinstance(result.error.__cause__, ssl.SSLError)
