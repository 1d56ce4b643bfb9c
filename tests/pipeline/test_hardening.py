"""Attacks found in review: each was a bypass or a cost before it was fixed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from apishield import PolicyError, protect
from apishield.policy import load_policy, parse_policy
from apishield.types import Message, Receive, Scope, Send
from tests.pipeline.conftest import BASE_POLICY, ClientFactory, echo_app


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/v2/items/..;/admin", id="dotdot-semicolon"),
        pytest.param("/v2/items/7;jsessionid=abc", id="path-parameter"),
        pytest.param("/v2/items/%C0%AE%C0%AE", id="overlong-dot"),
        pytest.param("/v2/items/%ff", id="invalid-utf8"),
        pytest.param("/v2/items/%EF%BC%8E%EF%BC%8E", id="fullwidth-dots"),
        pytest.param("/v2/items/a%E2%88%95b", id="division-slash"),
    ],
)
async def test_path_confusion_refused(make_client: ClientFactory, path: str) -> None:
    response = await make_client().get(path)
    assert response.status_code == 400
    assert response.json()["code"] == "path_not_canonical"


async def raw_call(
    app: Any, scope_extra: dict[str, Any], body_chunks: list[bytes]
) -> list[Message]:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "https",
        "method": "GET",
        "path": "/v2/items",
        "raw_path": b"/v2/items",
        "query_string": b"",
        "client": ("127.0.0.1", 5),
        "server": ("127.0.0.1", 443),
        "headers": [(b"host", b"api.test")],
        **scope_extra,
    }
    chunks = list(body_chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def status_code(sent: list[Message]) -> tuple[int, bytes]:
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param([(b"host", b"a.test"), (b"host", b"b.test")], "invalid_host", id="two-hosts"),
        pytest.param([], "invalid_host", id="no-host"),
        pytest.param([(b"host", b"evil.test/\r\n")], "invalid_host", id="bad-host"),
    ],
)
async def test_host_must_be_single_and_valid(headers: list[tuple[bytes, bytes]], code: str) -> None:
    app = protect(echo_app, BASE_POLICY)
    status, body = status_code(await raw_call(app, {"headers": headers}, []))
    assert status == 400
    assert f'"code":"{code}"'.encode() in body


async def test_host_allowlist(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    policy["listen"] = {"hosts": ["api.example.com"]}
    client = make_client(policy, base_url="https://api.example.com")
    assert (await client.get("/health")).status_code == 200
    other = await client.get("/health", headers={"host": "evil.example:443"})
    assert other.status_code == 400 and other.json()["code"] == "invalid_host"


async def test_closed_route_refused_without_reading_body() -> None:
    app = protect(echo_app, BASE_POLICY)
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"[" * 1000, "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "scheme": "https",
        "method": "GET",
        "path": "/v2/closed",
        "raw_path": b"/v2/closed",
        "query_string": b"",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 443),
        "headers": [
            (b"host", b"api.test"),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000000"),
        ],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 403 and reads == 0


@pytest.mark.parametrize(
    ("method", "path", "headers", "chunks", "status", "code"),
    [
        pytest.param(
            "POST",
            "/v2/small",
            [(b"content-type", b"application/json")],
            [b'{"a":"' + b"x" * 100 + b'"}'],
            413,
            "body_too_large",
            id="h2-json-over-limit",
        ),
        pytest.param(
            "POST",
            "/v2/uploads",
            [(b"content-type", b"application/x-evil")],
            [b"x" * 10],
            415,
            "unsupported_media_type",
            id="h2-undeclared-type",
        ),
        pytest.param(
            "POST",
            "/v2/items",
            [(b"content-type", b"application/json")],
            [b'{"a":', b"NaN}"],
            400,
            "json_non_finite",
            id="h2-strict-json",
        ),
    ],
)
async def test_http2_bodies_without_length_are_checked(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    status: int,
    code: str,
) -> None:
    app = protect(echo_app, BASE_POLICY)
    sent = await raw_call(
        app,
        {
            "http_version": "2",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "headers": [(b"host", b"api.test"), *headers],
        },
        chunks,
    )
    got, body = status_code(sent)
    assert got == status and f'"code":"{code}"'.encode() in body


async def test_http2_without_body_passes() -> None:
    app = protect(echo_app, BASE_POLICY)
    got, _ = status_code(await raw_call(app, {"http_version": "2"}, []))
    assert got == 200


async def test_compressed_request_body_refused(make_client: ClientFactory) -> None:
    response = await make_client().post(
        "/v2/items",
        content=b"\x1f\x8b...",
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 415
    assert response.json()["code"] == "content_encoding_not_allowed"


async def test_report_mode_does_not_buffer_past_the_limit(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    policy["content"] = {"mode": "report"}

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(64):
            yield b"x" * 1024

    response = await make_client(policy).post(
        "/v2/small", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["body_length"] == 64 * 1024


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b'{"customer_id":"a","CUSTOMER_ID":"b"}', "json_duplicate_key", id="case"),
        pytest.param(
            '{"customer_id":"a","cuſtomer_id":"b"}'.encode(), "json_duplicate_key", id="long-s"
        ),
        pytest.param(b'{"n":1e400}', "json_non_finite", id="overflow-to-infinity"),
        pytest.param(b'{"s":"\\ud800"}', "json_invalid", id="lone-surrogate"),
    ],
)
async def test_json_ambiguities_refused(make_client: ClientFactory, body: bytes, code: str) -> None:
    response = await make_client().post(
        "/v2/items", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == code


async def test_plain_http_redirect_is_not_cached(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    policy["trusted_proxies"] = ["10.0.0.0/8"]
    client = make_client(policy, base_url="http://api.test", client=("10.0.0.2", 1))
    response = await client.get("/health", headers={"x-forwarded-for": "198.51.100.7"})
    assert response.status_code == 301
    assert response.headers["cache-control"] == "no-store"


async def test_upstream_cors_headers_removed() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-allow-credentials", b"true"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    wrapped = protect(app, BASE_POLICY)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=wrapped), base_url="https://api.test"
    ) as client:
        response = await client.get("/health", headers={"origin": "https://evil.example"})
        assert response.status_code == 403
        response = await client.get("/health")
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "apishield: 1\nbase: &b {allow: public}\n"
            "routes:\n  - {path: /a, methods: [GET], <<: *b}\n",
            id="merge-key",
        ),
        pytest.param(
            "apishield: 1\nx: &a [1]\ny: &b [*a, *a, *a]\nz: [*b, *b, *b]\n", id="alias-bomb"
        ),
        pytest.param("apishield: 1\na: &a [*a]\n", id="recursive-alias"),
    ],
)
def test_yaml_aliases_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert "anchors and aliases" in str(info.value) or "merge keys" in str(info.value)


@pytest.mark.parametrize("header", ["Host", "Authorization", "X Request", "Transfer-Encoding"])
def test_request_id_header_must_be_harmless(header: str) -> None:
    with pytest.raises(PolicyError, match="cannot carry request ids"):
        parse_policy({"apishield": 1, "request_id": {"header": header}})
