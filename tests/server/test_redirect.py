"""The plain listener: GET/HEAD redirected to HTTPS, everything else refused, Host checked."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from apishield.server import GatewayServer, HttpsRedirectApp
from apishield.server.redirect import parse_host
from apishield.types import Message


async def _call(
    app: HttpsRedirectApp,
    *,
    method: str = "GET",
    host: bytes | list[bytes] | None = b"api.example.com",
    raw_path: bytes = b"/orders",
    query: bytes = b"",
) -> tuple[int, dict[bytes, bytes], bytes]:
    hosts = [] if host is None else host if isinstance(host, list) else [host]
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": [(b"host", h) for h in hosts] + [(b"accept", b"*/*")],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    return start["status"], dict(start["headers"]), body["body"]


@pytest.mark.parametrize(
    ("https_port", "host", "raw_path", "query", "location"),
    [
        pytest.param(
            443,
            b"api.example.com",
            b"/orders",
            b"",
            b"https://api.example.com/orders",
            id="443-no-port",
        ),
        pytest.param(
            8443,
            b"api.example.com",
            b"/orders",
            b"",
            b"https://api.example.com:8443/orders",
            id="other-port",
        ),
        pytest.param(
            443,
            b"api.example.com:80",
            b"/",
            b"",
            b"https://api.example.com/",
            id="plain-port-dropped",
        ),
        pytest.param(
            8443,
            b"API.Example.COM:8080",
            b"/a",
            b"",
            b"https://api.example.com:8443/a",
            id="lowercased",
        ),
        pytest.param(
            443,
            b"api.example.com",
            b"/s",
            b"q=1&r=%20x",
            b"https://api.example.com/s?q=1&r=%20x",
            id="query-kept",
        ),
        pytest.param(443, b"127.0.0.1:8080", b"/", b"", b"https://127.0.0.1/", id="ipv4"),
        pytest.param(8443, b"[::1]:8080", b"/", b"", b"https://[::1]:8443/", id="ipv6"),
        pytest.param(8443, b"[0:0::1]", b"/", b"", b"https://[::1]:8443/", id="ipv6-normalised"),
        pytest.param(443, b"localhost.", b"/", b"", b"https://localhost/", id="trailing-dot"),
        pytest.param(
            443,
            b"a.example",
            b"/caf%C3%A9/x",
            b"",
            b"https://a.example/caf%C3%A9/x",
            id="escapes-kept",
        ),
        pytest.param(
            443,
            b"a.example",
            b'/a"<s>\xff',
            b"x=<y>",
            b"https://a.example/a%22%3Cs%3E%FF?x=%3Cy%3E",
            id="unsafe-escaped",
        ),
        pytest.param(
            443,
            b"a.example",
            b"//evil.example/x",
            b"",
            b"https://a.example//evil.example/x",
            id="double-slash-stays-a-path",
        ),
        pytest.param(443, b"a.example", b"*", b"", b"https://a.example/", id="asterisk-form"),
    ],
)
async def test_get_redirects(
    https_port: int, host: bytes, raw_path: bytes, query: bytes, location: bytes
) -> None:
    app = HttpsRedirectApp(https_port=https_port)
    status, headers, body = await _call(app, host=host, raw_path=raw_path, query=query)
    assert status == 301
    assert headers[b"location"] == location
    assert body == b""
    assert b"strict-transport-security" not in headers  # RFC 6797 §7.2


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_refused(method: str) -> None:
    status, headers, body = await _call(HttpsRedirectApp(https_port=8443), method=method)
    assert status == 403
    assert headers[b"content-type"] == b"application/problem+json"
    assert b"location" not in headers
    assert json.loads(body) == {
        "type": "urn:apishield:problem:https_required",
        "title": "Forbidden",
        "status": 403,
        "code": "https_required",
        "detail": "This API accepts requests over HTTPS only.",
    }


@pytest.mark.parametrize(
    "host",
    [
        pytest.param(b"evil.com/\r\nx", id="crlf-injection"),
        pytest.param(b"evil.com/", id="slash"),
        pytest.param(b"a@b", id="userinfo"),
        pytest.param(b"a" * 300, id="very-long"),
        pytest.param(b"a" * 64 + b".example", id="label-too-long"),
        pytest.param(b"", id="empty"),
        pytest.param(b"exa mple.com", id="space"),
        pytest.param(b"-bad.example", id="leading-hyphen"),
        pytest.param(b"ex%41mple.com", id="percent"),
        pytest.param(b"example.com:80:80", id="two-ports"),
        pytest.param(b"example.com:abc", id="port-not-digits"),
        pytest.param(b"example.com:123456", id="port-too-long"),
        pytest.param(b"[::1", id="unclosed-bracket"),
        pytest.param(b"[fe80::1%25eth0]", id="ipv6-zone"),
        pytest.param(b"[::1]x", id="junk-after-bracket"),
        pytest.param(b"[evil.com]", id="name-in-brackets"),
        pytest.param(b"999.1.1.1", id="bad-ipv4"),
        pytest.param(b"1.2.3", id="short-ipv4"),
        pytest.param(b"\xc3\xa9vil.example", id="non-ascii"),
        pytest.param(b"<script>", id="markup"),
        pytest.param([b"a.example", b"b.example"], id="two-host-headers"),
        pytest.param(None, id="missing"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_invalid_host_is_400_and_not_echoed(
    host: bytes | list[bytes] | None, method: str
) -> None:
    status, headers, body = await _call(HttpsRedirectApp(https_port=8443), method=method, host=host)
    assert status == 400
    assert b"location" not in headers
    problem = json.loads(body)
    assert problem["code"] == "invalid_host"
    assert problem["type"] == "urn:apishield:problem:invalid_host"
    for value in host if isinstance(host, list) else [host or b""]:
        if len(value) > 3:
            assert value not in body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Example.COM", "example.com", id="name"),
        pytest.param("example.com:8080", "example.com", id="name-port"),
        pytest.param("10.0.0.1", "10.0.0.1", id="ipv4"),
        pytest.param("[2001:db8::1]:443", "[2001:db8::1]", id="ipv6"),
        pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="punycode"),
        pytest.param("a..b", None, id="empty-label"),
        pytest.param(".", None, id="dot"),
        pytest.param("example.com-", None, id="trailing-hyphen"),
    ],
)
def test_parse_host(value: str, expected: str | None) -> None:
    assert parse_host(value) == expected


async def test_head_redirects_without_body() -> None:
    status, headers, body = await _call(HttpsRedirectApp(https_port=443), method="HEAD")
    assert status == 301 and body == b""


async def test_lifespan_answered() -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await HttpsRedirectApp(https_port=443)({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_https_port_must_be_a_port(port: int) -> None:
    with pytest.raises(ValueError, match="https_port"):
        HttpsRedirectApp(https_port=port)


# --- on the wire ---------------------------------------------------------------------------


def test_wire_get_redirects_to_the_https_listener(threaded_server: GatewayServer) -> None:
    assert threaded_server.redirect_port is not None
    url = f"http://127.0.0.1:{threaded_server.redirect_port}/v1/items?page=2&sort=name"
    with httpx.Client() as client:
        response = client.get(url, headers={"Host": "localhost:8080"})
    assert response.status_code == 301
    assert response.headers["location"] == (
        f"https://localhost:{threaded_server.bound_port}/v1/items?page=2&sort=name"
    )
    assert "strict-transport-security" not in response.headers
    assert "server" not in response.headers


def test_wire_post_refused(threaded_server: GatewayServer) -> None:
    assert threaded_server.redirect_port is not None
    with httpx.Client() as client:
        response = client.post(
            f"http://127.0.0.1:{threaded_server.redirect_port}/login",
            json={"password": "hunter2"},
        )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "https_required"
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "host",
    [
        pytest.param(b"evil.com/", id="slash"),
        pytest.param(b"a@b", id="userinfo"),
        pytest.param(b"x" * 4000, id="very-long"),
        pytest.param(b"evil.com\tx", id="tab"),
    ],
)
def test_wire_hostile_host_is_400_without_echo(threaded_server: GatewayServer, host: bytes) -> None:
    assert threaded_server.redirect_port is not None
    request = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", threaded_server.redirect_port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"location:" not in head.lower()
    assert host not in answer
