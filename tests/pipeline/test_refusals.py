"""Every refusal of the foundation stages, as the client sees it: status, code, headers."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.conftest import ClientFactory

JSON = {"content-type": "application/json"}

REFUSALS = [
    pytest.param("GET", "/nope", {}, b"", 404, "route_not_found", {}, id="unknown-path"),
    pytest.param("GET", "/v2/items/", {}, b"", 404, "route_not_found", {}, id="trailing-slash"),
    pytest.param("GET", "/v2/items/1/2", {}, b"", 404, "route_not_found", {}, id="extra-segment"),
    pytest.param(
        "PATCH",
        "/v2/items/1",
        {},
        b"",
        405,
        "method_not_allowed",
        {"allow": "DELETE, GET, HEAD, PUT"},
        id="wrong-method",
    ),
    pytest.param(
        "GET",
        "/v0/items",
        {},
        b"",
        410,
        "version_retired",
        {"link": '<https://docs.example.com/v2>; rel="successor-version"'},
        id="retired-version",
    ),
    pytest.param(
        "GET", "/v2/items/..%2Fadmin", {}, b"", 400, "path_not_canonical", {}, id="encoded-slash"
    ),
    pytest.param(
        "GET", "/v2/items/%252e%252e", {}, b"", 400, "path_not_canonical", {}, id="double-encoded"
    ),
    pytest.param("GET", "/v2//items", {}, b"", 400, "path_not_canonical", {}, id="empty-segment"),
    pytest.param(
        "GET", "/v2/items/%2e%2e/secret", {}, b"", 400, "path_not_canonical", {}, id="dot-dot"
    ),
    pytest.param(
        "POST",
        "/v2/items",
        {"content-type": "text/plain"},
        b"hello",
        415,
        "unsupported_media_type",
        {"accept-post": "application/json"},
        id="wrong-media-type",
    ),
    pytest.param(
        "POST",
        "/v2/items",
        {},
        b'{"a":1}',
        415,
        "unsupported_media_type",
        {},
        id="missing-media-type",
    ),
    pytest.param(
        "POST",
        "/v2/items",
        {"content-type": "application/json; charset=latin-1"},
        b"{}",
        415,
        "charset_not_utf8",
        {},
        id="json-not-utf8",
    ),
    pytest.param(
        "POST",
        "/v2/small",
        JSON,
        b'{"a":"' + b"x" * 100 + b'"}',
        413,
        "body_too_large",
        {},
        id="content-length-over-limit",
    ),
    pytest.param(
        "POST",
        "/v2/items",
        JSON,
        b'{"a":1,"a":2}',
        400,
        "json_duplicate_key",
        {},
        id="json-duplicate-key",
    ),
    pytest.param(
        "POST", "/v2/items", JSON, b'{"a":NaN}', 400, "json_non_finite", {}, id="json-nan"
    ),
    pytest.param(
        "POST",
        "/v2/items",
        JSON,
        b'{"a":-Infinity}',
        400,
        "json_non_finite",
        {},
        id="json-infinity",
    ),
    pytest.param("POST", "/v2/items", JSON, b'{"a":', 400, "json_invalid", {}, id="json-truncated"),
    pytest.param(
        "POST", "/v2/items", JSON, b'{"a":"\xff"}', 400, "json_invalid", {}, id="json-not-utf8"
    ),
    pytest.param(
        "POST",
        "/v2/shallow",
        JSON,
        b'{"a":{"b":{"c":{"d":1}}}}',
        400,
        "json_too_deep",
        {},
        id="json-too-deep",
    ),
    pytest.param(
        "POST",
        "/v2/items",
        JSON,
        b"[" * 600_000 + b"]" * 600_000,
        413,
        "body_too_large",
        {},
        id="json-deep-and-large",
    ),
    pytest.param(
        "POST",
        "/v2/items",
        JSON,
        b"[" * 5000 + b"]" * 5000,
        400,
        "json_too_deep",
        {},
        id="json-recursion-bomb",
    ),
    pytest.param(
        "GET",
        "/v2/private",
        {},
        b"",
        401,
        "authentication_required",
        {"www-authenticate": 'Bearer realm="apishield"'},
        id="needs-credentials",
    ),
    pytest.param("GET", "/v2/closed", {}, b"", 403, "route_not_allowed", {}, id="no-allow-rule"),
    pytest.param(
        "GET",
        "/v2/items",
        {"origin": "https://evil.example"},
        b"",
        403,
        "cors_origin_not_allowed",
        {},
        id="foreign-origin",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code", "expect"), REFUSALS
)
async def test_refusal(
    make_client: ClientFactory,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
    expect: dict[str, str],
) -> None:
    client = make_client()
    response = await client.request(method, path, headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"] == f"urn:apishield:problem:{code}"
    assert len(problem["request_id"]) >= 16
    assert problem["request_id"] == response.headers.get("x-request-id", problem["request_id"])
    assert "hint" not in problem and "guide" not in problem  # production says no more
    for name, value in expect.items():
        assert response.headers[name] == value
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_development_mode_explains(make_client: ClientFactory) -> None:
    from tests.pipeline.conftest import BASE_POLICY

    client = make_client({**BASE_POLICY, "mode": "development"})
    problem = (await client.get("/v2/items/1", headers={"origin": "https://evil.example"})).json()
    assert problem["code"] == "cors_origin_not_allowed"
    assert "cors.origins" in problem["hint"]
    assert problem["guide"] == "docs/refusals/cors_origin_not_allowed.md"
    assert problem["explain"] == "apishield explain cors_origin_not_allowed"


async def test_allowed_request_passes_and_is_cleaned(make_client: ClientFactory) -> None:
    client = make_client()
    response = await client.post("/v2/items?q=1", json={"name": "O'Brien"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/v2/items" and seen["query"] == "q=1"
    assert seen["body_length"] == len(json.dumps({"name": "O'Brien"}, separators=(",", ":")))
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert (
        response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_route_cache_control_and_literal_wins(make_client: ClientFactory) -> None:
    client = make_client()
    assert (await client.get("/v2/cached")).headers["cache-control"] == "max-age=60"
    assert (await client.get("/v2/items/latest")).json()["path"] == "/v2/items/latest"
    assert (await client.head("/v2/items/7")).status_code == 200


async def test_deprecated_version_headers(make_client: ClientFactory) -> None:
    client = make_client()
    response = await client.get("/v1/items")
    assert response.status_code == 200
    assert response.headers["deprecation"] == "@1767225600"  # 2026-01-01T00:00:00Z
    assert response.headers["sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT"
    assert (
        response.headers["link"]
        == '<https://docs.example.com/v2>; rel="deprecation"; type="text/html"'
    )
    assert "deprecation" not in (await client.get("/v2/items")).headers


async def test_chunked_body_cut_at_limit(make_client: ClientFactory) -> None:
    client = make_client()

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 512

    response = await client.post(
        "/v2/uploads", content=chunks(), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


async def test_chunked_body_under_limit(make_client: ClientFactory) -> None:
    client = make_client()

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(2):
            yield b"x" * 100

    response = await client.post(
        "/v2/uploads", content=chunks(), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 200
    assert response.json()["body_length"] == 200


async def test_report_mode_refuses_nothing(make_client: ClientFactory) -> None:
    from tests.pipeline.conftest import BASE_POLICY

    client = make_client({**BASE_POLICY, "content": {"mode": "report"}})
    response = await client.post("/v2/items", content=b"hi", headers={"content-type": "text/plain"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"content-length": "5", "transfer-encoding": "chunked"}, id="cl-and-te"),
        pytest.param({"transfer-encoding": "gzip, chunked"}, id="te-not-chunked"),
    ],
)
async def test_smuggling_refused_even_in_report_mode(
    make_client: ClientFactory, headers: dict[str, str]
) -> None:
    from apishield.pipeline.content import ContentMiddleware
    from apishield.policy import parse_policy
    from tests.pipeline.conftest import BASE_POLICY, echo_app

    policy = parse_policy({**BASE_POLICY, "content": {"mode": "report"}})
    stage = ContentMiddleware(echo_app, policy=policy, type_base="urn:x:")
    from apishield.errors import BadRequestError
    from apishield.pipeline.context import RequestContext
    from apishield.pipeline.router import Router

    ctx = RequestContext(request_id="r" * 24)
    ctx.route = Router(policy).match("POST", "/v2/items", None, None)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/items",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-type", b"application/json")],
        "apishield": ctx,
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: object) -> None:
        raise AssertionError("nothing may be sent")

    with pytest.raises(BadRequestError) as info:
        await stage(scope, receive, send)
    assert info.value.code == "request_smuggling"


async def test_duplicate_content_length_refused(make_client: ClientFactory) -> None:
    from apishield import protect
    from tests.pipeline.conftest import BASE_POLICY, echo_app

    app = protect(echo_app, BASE_POLICY)
    sent: list[dict[str, object]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "https",
        "method": "POST",
        "path": "/v2/items",
        "raw_path": b"/v2/items",
        "query_string": b"",
        "client": ("127.0.0.1", 5),
        "server": ("127.0.0.1", 443),
        "headers": [
            (b"host", b"api.test"),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"content-length", b"20"),
        ],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b'"code":"request_smuggling"' in sent[1]["body"]  # type: ignore[operator]
