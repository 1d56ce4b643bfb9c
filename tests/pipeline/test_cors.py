"""The CORS preflight matrix and the headers on actual cross-origin responses."""

from __future__ import annotations

import copy

import pytest

from tests.pipeline.conftest import BASE_POLICY, ClientFactory

ALLOWED = "https://app.example.com"


def preflight(origin: str, method: str, headers: str | None = None) -> dict[str, str]:
    out = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        out["access-control-request-headers"] = headers
    return out


PREFLIGHTS = [
    pytest.param(ALLOWED, "POST", "content-type", "/v2/items", 204, None, id="allowed"),
    pytest.param(ALLOWED, "PUT", None, "/v2/items/3", 204, None, id="allowed-param-route"),
    pytest.param(
        "https://evil.example",
        "POST",
        None,
        "/v2/items",
        403,
        "cors_origin_not_allowed",
        id="unknown-origin",
    ),
    pytest.param(
        "https://app.example.com.evil.example",
        "GET",
        None,
        "/v2/items",
        403,
        "cors_origin_not_allowed",
        id="suffix-origin",
    ),
    pytest.param(
        "http://app.example.com",
        "GET",
        None,
        "/v2/items",
        403,
        "cors_origin_not_allowed",
        id="scheme-downgrade",
    ),
    pytest.param("null", "GET", None, "/v2/items", 403, "cors_origin_not_allowed", id="null"),
    pytest.param(
        ALLOWED,
        "DELETE",
        None,
        "/v2/items",
        403,
        "cors_method_not_allowed",
        id="method-not-on-route",
    ),
    pytest.param(
        ALLOWED,
        "POST",
        "content-type, x-secret",
        "/v2/items",
        403,
        "cors_header_not_allowed",
        id="header-not-allowed",
    ),
    pytest.param(ALLOWED, "GET", None, "/nowhere", 404, "route_not_found", id="unknown-route"),
]


@pytest.mark.parametrize(("origin", "method", "headers", "path", "status", "code"), PREFLIGHTS)
async def test_preflight(
    make_client: ClientFactory,
    origin: str,
    method: str,
    headers: str | None,
    path: str,
    status: int,
    code: str | None,
) -> None:
    client = make_client()
    response = await client.options(path, headers=preflight(origin, method, headers))
    assert response.status_code == status
    if code is None:
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        assert method in response.headers["access-control-allow-methods"]
        assert response.headers["access-control-max-age"] == "600"
        assert "Origin" in response.headers["vary"]
        if headers:
            assert response.headers["access-control-allow-headers"] == headers
        assert response.content == b""
    else:
        assert response.json()["code"] == code
        assert "access-control-allow-origin" not in response.headers


async def test_actual_request_gets_cors_headers(make_client: ClientFactory) -> None:
    client = make_client()
    response = await client.get("/v2/items", headers={"origin": ALLOWED})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin"


async def test_refusal_to_allowed_origin_is_readable(make_client: ClientFactory) -> None:
    client = make_client()
    response = await client.post(
        "/v2/items", headers={"origin": ALLOWED, "content-type": "text/plain"}, content=b"x"
    )
    assert response.status_code == 415
    assert response.headers["access-control-allow-origin"] == ALLOWED


async def test_same_origin_is_not_cors(make_client: ClientFactory) -> None:
    client = make_client()
    response = await client.post("/v2/items", headers={"origin": "https://api.test"}, json={})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_no_cors_setting_means_no_cross_origin(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    del policy["cors"]
    client = make_client(policy)
    response = await client.options("/v2/items", headers=preflight(ALLOWED, "GET"))
    assert response.status_code == 403


async def test_route_cors_overrides_policy(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    policy["routes"][0]["cors"] = {"origins": ["https://other.example.com"]}
    client = make_client(policy)
    assert (await client.get("/v2/items", headers={"origin": ALLOWED})).status_code == 403
    response = await client.get("/v2/items", headers={"origin": "https://other.example.com"})
    assert response.status_code == 200
    assert "access-control-allow-credentials" not in response.headers


async def test_wildcard_without_credentials(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    policy["cors"] = {"origins": ["*"]}
    client = make_client(policy)
    response = await client.get("/v2/items", headers={"origin": "https://anyone.example"})
    assert response.headers["access-control-allow-origin"] == "*"


async def test_preflight_on_path_split_over_routes(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    policy["routes"].append({"path": "/v2/split", "methods": ["GET"], "allow": "public"})
    policy["routes"].append({"path": "/v2/split", "methods": ["POST"], "allow": "public"})
    client = make_client(policy)
    response = await client.options("/v2/split", headers=preflight(ALLOWED, "POST"))
    assert response.status_code == 204
    assert response.headers["access-control-allow-methods"] == "GET, HEAD, POST"
