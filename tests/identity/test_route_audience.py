"""AUTH 6 through the pipeline: a route's ``resource`` is what a bearer token's ``aud`` must
contain, for an external issuer (keys from a JWKS server on loopback) and for the built-in
authorization server (``resource`` requested at its token endpoint, RFC 8707)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apishield.errors import PolicyError
from apishield.pipeline.build import build_gateway, build_pipeline, policy_authentication
from apishield.policy import parse_policy
from apishield.policy.audit import audit_policy
from apishield.policy.load import resolve_paths
from apishield.store.engine import Store
from apishield.types import Receive, Scope, Send
from tests.identity.idp import IdP, claims, ec_key, jwks, running_idp, sign
from tests.proxy.upstreams import RawUpstream, echo
from tests.test_gateway_identity import lifespan

ORDERS = "https://api.example.com/orders"
BILLING = "https://api.example.com/billing"
KEY = ec_key("route-aud-1")
CHALLENGE = 'error="invalid_token"'


def routes() -> list[dict[str, Any]]:
    read = {"scopes": ["orders:read"]}
    return [
        {"path": "/orders", "methods": ["GET"], "allow": read, "resource": ORDERS},
        {"path": "/billing", "methods": ["GET"], "allow": read, "resource": BILLING},
        {"path": "/items", "methods": ["GET"], "allow": read},  # the issuer's audience
    ]


async def subject_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected app: answers with the subject the gateway verified."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = dict(scope["headers"])
    body = json.dumps({"sub": headers.get(b"x-authenticated-subject", b"").decode()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    async with running_idp() as server:
        server.serve_json("/certs", jwks(KEY))
        yield server


def outcome(response: httpx.Response) -> str:
    """``200 <sub>``, or ``<status> <code>`` of a refusal (checking its challenge)."""
    if response.status_code == 200:
        return f"200 {response.json()['sub']}"
    if response.status_code == 401:
        assert CHALLENGE in response.headers["www-authenticate"]
    body = response.json()
    assert set(body) >= {"code", "status"}
    return f"{response.status_code} {body['code']}"


MISMATCH = "401 token_audience_mismatch"
OK = "200 user-42"
EXTERNAL = [
    # (aud of the token, expected outcomes on /orders, /billing, /items)
    pytest.param(ORDERS, (OK, MISMATCH, MISMATCH), id="AUTH-6-external-string-aud"),
    pytest.param([ORDERS, BILLING], (OK, OK, MISMATCH), id="AUTH-6-external-array-aud"),
    pytest.param(
        ["orders-api", BILLING], (MISMATCH, OK, OK), id="AUTH-6-external-array-with-issuer-aud"
    ),
    pytest.param("orders-api", (MISMATCH, MISMATCH, OK), id="AUTH-6-external-issuer-aud-only"),
]


@pytest.mark.parametrize(("aud", "expected"), EXTERNAL)
async def test_route_resource_with_an_external_issuer(
    idp: IdP, tmp_path: Path, aud: Any, expected: tuple[str, str, str]
) -> None:
    policy = resolve_paths(
        parse_policy(
            {
                "apishield": 1,
                "listen": {"address": "127.0.0.1:8443"},
                "state": {"dir": str(tmp_path)},
                "identity": {
                    "issuers": [
                        {
                            "issuer": f"{idp.url}/realm",
                            "jwks_uri": f"{idp.url}/certs",
                            "algorithms": ["ES256"],
                            "audience": "orders-api",
                        }
                    ]
                },
                "routes": routes(),
            }
        ),
        tmp_path,
    )
    app = build_pipeline(policy, subject_app, authentication=policy_authentication(policy))
    token = sign(KEY, claims(f"{idp.url}/realm", time.time(), aud=aud))
    auth = {"authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="https://localhost:8443") as client,
    ):
        # Twice over: the second round is served by the cache of verified tokens, whose
        # entry is the same whatever route it was first verified for.
        seen = [
            outcome(await client.get(path, headers=auth))
            for _ in range(2)
            for path in ("/orders", "/billing", "/items")
        ]
    assert tuple(seen[:3]) == expected
    assert seen[3:] == seen[:3]
    assert idp.paths().count("/certs") == 1


async def test_route_resource_with_the_builtin_issuer(tmp_path: Path) -> None:
    """AUTH-6-builtin: a token requested with resource=ORDERS is accepted on the ORDERS
    route only; one requested with both resources on both routes; neither on a route that
    asks for the issuer's own audience."""
    upstream = RawUpstream(echo)
    await upstream.start()
    policy = resolve_paths(
        parse_policy(
            {
                "apishield": 1,
                "listen": {"address": "127.0.0.1:8443"},
                "state": {"dir": str(tmp_path)},
                "upstream": {"url": upstream.url()},
                "identity": {"issuers": [{"builtin": True}]},
                "routes": routes(),
            }
        ),
        tmp_path,
    )
    async with Store.from_policy(policy) as store:
        await store.migrate()
        _, secret = await store.clients.register(
            name="reports",
            grant_types=["client_credentials"],
            scopes=["orders:read"],
            client_id="reports",
            resources=[ORDERS, BILLING],
        )
    assert secret is not None
    basic = base64.b64encode(f"reports:{secret}".encode()).decode()
    app = build_gateway(policy)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    try:
        async with (
            lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="https://localhost:8443") as client,
        ):

            async def token(*resources: str) -> str:
                issued = await client.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials", "resource": list(resources)},
                    headers={"authorization": f"Basic {basic}"},
                )
                assert issued.status_code == 200, issued.text
                return str(issued.json()["access_token"])

            async def calls(value: str) -> list[str]:
                answers = []
                for path in ("/orders", "/billing", "/items"):
                    response = await client.get(path, headers={"authorization": f"Bearer {value}"})
                    if response.status_code == 200:
                        forwarded = dict(json.loads(response.text)["headers"])
                        answers.append(f"200 {forwarded['x-authenticated-subject']}")
                    else:
                        answers.append(outcome(response))
                return answers

            orders_only = await token(ORDERS)
            both = await token(ORDERS, BILLING)
            assert await calls(orders_only) == [
                "200 client:reports",
                "401 token_audience_mismatch",
                "401 token_audience_mismatch",
            ]
            assert await calls(both) == [
                "200 client:reports",
                "200 client:reports",
                "401 token_audience_mismatch",
            ]
    finally:
        await upstream.close()


def route_policy(identity: dict[str, Any] | None, resource: str) -> Any:
    data: dict[str, Any] = {
        "apishield": 1,
        "listen": {"address": "127.0.0.1:8443"},
        "routes": [
            {
                "path": "/orders",
                "methods": ["GET"],
                "allow": {"scopes": ["orders:read"]},
                "resource": resource,
            }
        ],
    }
    if identity is not None:
        data["identity"] = identity
    return parse_policy(data, file="policy.yaml")


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param("orders-api", id="AUTH-6-resource-not-absolute"),
        pytest.param("https://api.example.com/orders#x", id="AUTH-6-resource-fragment"),
        pytest.param("/orders", id="AUTH-6-resource-relative"),
    ],
)
def test_route_resource_must_be_an_absolute_uri(resource: str) -> None:
    """RFC 8707 §2: what the built-in server can issue as `aud`."""
    with pytest.raises(PolicyError) as caught:
        route_policy({"issuers": [{"builtin": True}]}, resource)
    assert str(caught.value) == (
        f"policy.yaml: routes[0].resource: {resource!r} must be an absolute URI without a fragment"
    )


@pytest.mark.parametrize(
    ("identity", "flagged"),
    [
        pytest.param(None, True, id="AUTH-6-check-no-identity"),
        pytest.param({"api_keys": {"header": "X-API-Key"}}, True, id="AUTH-6-check-keys-only"),
        pytest.param({"issuers": [{"builtin": True}]}, False, id="AUTH-6-check-builtin"),
    ],
)
def test_check_flags_a_resource_no_issuer_can_name(
    identity: dict[str, Any] | None, flagged: bool
) -> None:
    findings = audit_policy(route_policy(identity, ORDERS))
    mine = [f for f in findings if f.code == "resource_without_issuer"]
    if not flagged:
        assert mine == []
        return
    (finding,) = mine
    assert (finding.severity, finding.field) == ("medium", ("routes", 0, "resource"))
    assert ORDERS in finding.message
