"""Deny by default, scopes and roles, and object-level rules as a user-A/user-B matrix."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from apishield.identity.principal import Principal
from apishield.pipeline.build import build_pipeline
from apishield.pipeline.context import get_context
from apishield.policy import parse_policy
from apishield.types import ASGIApp, Receive, Scope, Send
from tests.pipeline.conftest import echo_app

USERS = {
    "alice": Principal(
        issuer="https://idp.test",
        subject="alice",
        kind="jwt",
        scopes=frozenset({"customers:read", "orders:write"}),
        claims={"tenant": "t1", "org": {"id": 7}},
    ),
    "bob": Principal(
        issuer="https://idp.test",
        subject="bob",
        kind="jwt",
        scopes=frozenset({"customers:read"}),
        roles=frozenset({"support"}),
        claims={"tenant": "t2", "org": {"id": 8}},
    ),
}

POLICY: dict[str, Any] = {
    "apishield": 1,
    "routes": [
        {
            "path": "/customers/{customer_id}",
            "methods": ["GET"],
            "allow": {"scopes": ["customers:read"]},
            "owner": {"param": "customer_id", "claim": "sub"},
        },
        {
            "path": "/reports",
            "methods": ["GET"],
            "allow": {"scopes": ["customers:read"]},
            "owner": {"query": "tenant", "claim": "tenant"},
        },
        {
            "path": "/orders",
            "methods": ["POST"],
            "allow": {"scopes": ["orders:write"]},
            "owner": [{"body": "org.id", "claim": "org.id"}, {"body": "tenant", "claim": "tenant"}],
        },
        {"path": "/support", "methods": ["GET"], "allow": {"roles": ["support"]}},
    ],
}


def fake_authentication(app: ASGIApp) -> ASGIApp:
    """Stage 7 stand-in for these tests: the principal named by a test header."""

    async def stage(scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"x-test-user":
                get_context(scope).principal = USERS[value.decode()]
        await app(scope, receive, send)

    return stage


@pytest.fixture
async def client() -> Any:
    app = build_pipeline(parse_policy(POLICY), echo_app, authentication=fake_authentication)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://api.test"
    ) as c:
        yield c


MATRIX = [
    pytest.param("alice", "GET", "/customers/alice", None, 200, id="AUTH-34-A-reads-A"),
    pytest.param("alice", "GET", "/customers/bob", None, 403, id="AUTH-34-A-reads-B"),
    pytest.param("bob", "GET", "/customers/bob", None, 200, id="AUTH-34-B-reads-B"),
    pytest.param("bob", "GET", "/customers/alice", None, 403, id="AUTH-34-B-reads-A"),
    pytest.param(None, "GET", "/customers/alice", None, 401, id="AUTH-33-anonymous"),
    pytest.param("alice", "GET", "/reports?tenant=t1", None, 200, id="AUTH-34-query-own"),
    pytest.param("alice", "GET", "/reports?tenant=t2", None, 403, id="AUTH-34-query-other"),
    pytest.param(
        "alice", "GET", "/reports?tenant=t1&tenant=t2", None, 403, id="AUTH-34-query-pollution"
    ),
    pytest.param("alice", "GET", "/reports", None, 403, id="AUTH-34-query-missing"),
    pytest.param(
        "alice", "POST", "/orders", {"org": {"id": 7}, "tenant": "t1"}, 200, id="AUTH-34-body-own"
    ),
    pytest.param(
        "alice",
        "POST",
        "/orders",
        {"org": {"id": 8}, "tenant": "t1"},
        403,
        id="AUTH-34-body-other-org",
    ),
    pytest.param(
        "alice",
        "POST",
        "/orders",
        {"org": {"id": "7"}, "tenant": ["t1"]},
        403,
        id="AUTH-34-body-array-trick",
    ),
    pytest.param("alice", "POST", "/orders", {"tenant": "t1"}, 403, id="AUTH-34-body-missing"),
    pytest.param(
        "bob",
        "POST",
        "/orders",
        {"org": {"id": 8}, "tenant": "t2"},
        403,
        id="AUTH-33-scope-missing",
    ),
    pytest.param("bob", "GET", "/support", None, 200, id="AUTH-33-role"),
    pytest.param("alice", "GET", "/support", None, 403, id="AUTH-33-role-missing"),
]


@pytest.mark.parametrize(("user", "method", "path", "body", "status"), MATRIX)
async def test_access_matrix(
    client: httpx.AsyncClient,
    user: str | None,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    headers = {"x-test-user": user} if user else {}
    response = await client.request(method, path, headers=headers, json=body)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["code"] in {"object_access_denied", "scope_missing"}


def test_owner_rule_needs_known_param() -> None:
    from apishield.errors import PolicyError

    bad = copy.deepcopy(POLICY)
    bad["routes"][0]["owner"] = {"param": "id", "claim": "sub"}
    with pytest.raises(PolicyError, match="owner.param 'id' is not a parameter"):
        parse_policy(bad)


def test_owner_rule_needs_allow() -> None:
    from apishield.errors import PolicyError

    bad = copy.deepcopy(POLICY)
    bad["routes"][0]["allow"] = "public"
    with pytest.raises(PolicyError, match="an owner rule needs an 'allow' rule"):
        parse_policy(bad)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("tenant=t1&TENANT=t2", id="AUTH-34-query-case"),
        pytest.param("tenant=t1&%74enant=t2", id="AUTH-34-query-encoded-key"),
        pytest.param("tenant=t1&tenant[]=t2", id="AUTH-34-query-array"),
        pytest.param("tenant=t1;tenant=t2", id="AUTH-34-query-semicolon"),
        pytest.param("tenant=t1&tenant=", id="AUTH-34-query-blank-second"),
    ],
)
async def test_owner_query_pollution(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/reports?{query}", headers={"x-test-user": "alice"})
    assert response.status_code == 403
