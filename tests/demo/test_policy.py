from __future__ import annotations

import datetime
from importlib import resources
from pathlib import Path

import httpx
import pytest

from apishield.demo.run import demo_policy
from apishield.errors import PolicyError
from apishield.identity.settings import BuiltinIssuer
from apishield.policy.load import load_policy
from apishield.policy.models import AllowRule, OwnerRule, Policy
from apishield.types import ASGIApp

PACKAGED = resources.files("apishield.demo").joinpath("policy.yaml")

EXPECTED_ROUTES = {
    ("GET", "/health"),
    ("GET", "/v2/customers"),
    ("GET", "/v2/customers/{customer_id}"),
    ("GET", "/v2/orders"),
    ("POST", "/v2/orders"),
    ("GET", "/v2/orders/{order_id}"),
    ("DELETE", "/v2/orders/{order_id}"),
    ("GET", "/v2/debug/crash"),
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/{customer_id}"),
}


def route_pairs(policy: Policy) -> set[tuple[str, str]]:
    return {(method, route.path) for route in policy.routes for method in route.methods}


@pytest.fixture
def packaged_policy() -> Policy:
    with resources.as_file(PACKAGED) as path:
        return load_policy(path)


SCOPES = {
    ("GET", "/v2/customers"): ["customers:read"],
    ("GET", "/v2/customers/{customer_id}"): ["customers:read"],
    ("GET", "/v2/orders"): ["orders:read"],
    ("POST", "/v2/orders"): ["orders:write"],
    ("GET", "/v2/orders/{order_id}"): ["orders:read"],
    ("DELETE", "/v2/orders/{order_id}"): ["orders:write"],
    ("GET", "/v2/debug/crash"): ["orders:read"],
    ("GET", "/v1/customers"): ["customers:read"],
    ("GET", "/v1/customers/{customer_id}"): ["customers:read"],
}


def test_packaged_policy_loads_with_every_route(packaged_policy: Policy) -> None:
    assert route_pairs(packaged_policy) == EXPECTED_ROUTES


def test_only_health_is_public_and_every_other_route_names_its_scopes(
    packaged_policy: Policy,
) -> None:
    public = [r.path for r in packaged_policy.routes if r.allow == "public"]
    assert public == ["/health"]
    for route in packaged_policy.routes:
        if route.path == "/health":
            continue
        assert isinstance(route.allow, AllowRule), route.path
        for method in route.methods:
            assert route.allow.scopes == SCOPES[(method, route.path)]
    owned = {r.path: r.owner for r in packaged_policy.routes if r.owner is not None}
    assert owned == {
        "/v2/customers/{customer_id}": OwnerRule(param="customer_id", claim="sub"),
        "/v1/customers/{customer_id}": OwnerRule(param="customer_id", claim="sub"),
    }


def test_identity_takes_api_keys_and_the_builtin_issuer(packaged_policy: Policy) -> None:
    identity = packaged_policy.identity
    assert identity is not None and identity.api_keys is not None
    assert (identity.api_keys.header, identity.api_keys.prefix) == ("X-API-Key", "ask_test")
    (issuer,) = identity.issuers
    assert isinstance(issuer, BuiltinIssuer)
    # a fixed audience: the clients registered on a first start still fit on another port
    assert issuer.issuer is None and issuer.audience == "https://demo-api.test"


def test_packaged_policy_settings(packaged_policy: Policy) -> None:
    assert packaged_policy.mode == "development"
    assert packaged_policy.listen.tls == "dev"
    assert packaged_policy.listen.address == "127.0.0.1:8443"
    assert packaged_policy.cors is not None
    assert packaged_policy.cors.origins == ["https://app.example.com"]
    assert packaged_policy.upstream is not None
    assert packaged_policy.upstream.stacktrace_guard


def test_only_order_creation_takes_a_body_and_only_16_kib_of_json(
    packaged_policy: Policy,
) -> None:
    (post,) = [r for r in packaged_policy.routes if "POST" in r.methods]
    assert post.path == "/v2/orders"
    assert post.methods == ["POST"]
    assert post.body_limit == 16 * 1024
    assert post.content_types == ["application/json"]


def test_v1_is_deprecated_and_v2_is_not(packaged_policy: Policy) -> None:
    v1, v2 = packaged_policy.versions
    assert v1.prefix == "/v1"
    assert v1.deprecated is not None
    assert v1.deprecated.since == datetime.date(2026, 1, 1)
    assert v1.deprecated.sunset == datetime.date(2027, 6, 30)
    assert v1.deprecated.link == "https://example.com/docs/migrate-to-v2"
    assert v2.prefix == "/v2"
    assert v2.deprecated is None
    assert not v2.retired


def test_demo_policy_points_at_the_running_pieces(tmp_path: Path) -> None:
    policy = demo_policy(upstream_url="http://127.0.0.1:41234/", state_dir=tmp_path, port=0)
    assert policy.upstream is not None
    assert policy.upstream.url == "http://127.0.0.1:41234"
    assert policy.listen.address == "127.0.0.1:0"
    assert policy.state.dir == tmp_path.resolve()
    assert route_pairs(policy) == EXPECTED_ROUTES


def test_demo_policy_makes_a_relative_state_dir_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    policy = demo_policy(upstream_url="http://127.0.0.1:1", state_dir=Path("state"))
    assert policy.state.dir == tmp_path.resolve() / "state"
    assert policy.listen.address == "127.0.0.1:8443"


@pytest.mark.parametrize(
    ("upstream_url", "port"),
    [
        pytest.param("ftp://127.0.0.1:21", 8443, id="not-http"),
        pytest.param("http://127.0.0.1:1", 70000, id="port-out-of-range"),
    ],
)
def test_demo_policy_refuses_bad_settings(tmp_path: Path, upstream_url: str, port: int) -> None:
    with pytest.raises(PolicyError) as caught:
        demo_policy(upstream_url=upstream_url, state_dir=tmp_path, port=port)
    assert "demo policy" in str(caught.value)


def concrete(path: str) -> str:
    return path.replace("{customer_id}", "1").replace("{order_id}", "1")


async def test_every_policy_route_exists_in_the_sample_api(
    packaged_policy: Policy, demo_api: ASGIApp
) -> None:
    transport = httpx.ASGITransport(app=demo_api)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as client:
        # DELETE last: the GET of the same order must still find it.
        for method, path in sorted(route_pairs(packaged_policy), key=lambda p: p[0] == "DELETE"):
            body = {"customer_id": 1, "item": "x", "quantity": 1} if method == "POST" else None
            response = await client.request(method, concrete(path), json=body)
            assert response.status_code in (200, 201, 204, 500), (method, path)
            if response.status_code == 500:
                assert path == "/v2/debug/crash"
