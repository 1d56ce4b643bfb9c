"""The server's place in the gateway: metadata (AUTH 21), the JWK Set, the policy routes it
needs, and the token endpoint answering through the whole pipeline."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apishield.authserver import authserver_routes, mount_authserver, with_authserver
from apishield.authserver.pkce import s256
from apishield.pipeline.build import build_pipeline
from apishield.policy.models import Policy, Route
from apishield.types import Receive, Scope, Send
from tests.authserver.conftest import ISSUER, PASSWORD, Harness, form_token, new_verifier

sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@sqlite_only
@pytest.mark.parametrize("case", [pytest.param("metadata", id="AUTH-21-metadata")])
async def test_metadata(harness: Harness, case: str) -> None:
    response = await harness.http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200, case
    assert response.headers["cache-control"] == "public, max-age=300"
    document = response.json()
    assert document["issuer"] == ISSUER  # RFC 8414 §3.3: identical to the issuer
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    assert set(document["grant_types_supported"]) == {
        "authorization_code",
        "client_credentials",
        "refresh_token",
    }
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        document["token_endpoint_auth_methods_supported"]
    )
    for name, path in (
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("jwks_uri", "/oauth2/jwks"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("introspection_endpoint", "/oauth2/introspect"),
    ):
        assert document[name] == ISSUER + path
    assert document["authorization_response_iss_parameter_supported"] is True
    assert "none" not in document["introspection_endpoint_auth_methods_supported"]


@sqlite_only
async def test_unknown_paths_and_methods(harness: Harness) -> None:
    assert (await harness.http.get("/oauth2/nothing")).status_code == 404
    refused = await harness.http.delete("/oauth2/token")
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await harness.http.post("/oauth2/jwks")).headers["allow"] == "GET, HEAD"
    head = await harness.http.head("/.well-known/oauth-authorization-server")
    get = await harness.http.get("/.well-known/oauth-authorization-server")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))


def test_routes_are_valid_policy_routes() -> None:
    routes = [Route.model_validate(r) for r in authserver_routes()]
    by_path = {r.path: r for r in routes}
    assert set(by_path) == {
        "/.well-known/oauth-authorization-server",
        "/oauth2/jwks",
        "/oauth2/authorize",
        "/oauth2/login",
        "/oauth2/token",
        "/oauth2/revoke",
        "/oauth2/introspect",
    }
    for route in routes:
        assert route.allow == "public"
        if "POST" in route.methods:
            assert route.content_types == ["application/x-www-form-urlencoded"]
    assert by_path["/oauth2/token"].methods == ["POST"]
    Policy.model_validate({"apishield": 1, "routes": authserver_routes()})


async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"upstream"})


@pytest.fixture
async def gateway(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    routes: list[dict[str, Any]] = [{"path": "/v2/items", "methods": ["GET"], "allow": "public"}]
    policy = with_authserver(Policy.model_validate({"apishield": 1, "routes": routes}))
    app = build_pipeline(policy, mount_authserver(fallback, harness.server))
    transport = httpx.ASGITransport(app=app, client=("192.0.2.20", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


@sqlite_only
async def test_through_the_pipeline(
    harness: Harness, gateway: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="apishield.audit")
    machine = await harness.machine()
    ok = await gateway.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=machine.auth()
    )
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
    assert ok.headers["pragma"] == "no-cache" and "x-request-id" in ok.headers
    assert await harness.verify(ok.json()["access_token"])
    refused = await gateway.post("/oauth2/token", data={"grant_type": "client_credentials"})
    # OAuth clients read RFC 6749 JSON errors, also behind the gateway
    assert refused.status_code == 401 and refused.json() == {"error": "invalid_client"}
    as_json = await gateway.post(
        "/oauth2/token", json={"grant_type": "client_credentials"}, headers=machine.auth()
    )
    assert as_json.status_code == 415  # the content stage: form bodies only
    assert (await gateway.get("/v2/items")).text == "upstream"
    assert (await gateway.get("/oauth2/jwks")).status_code == 200
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.audit"]
    codes = [(e["route"], e["status"], e.get("code")) for e in events]
    assert ("/oauth2/token", 401, "invalid_client") in codes
    assert ("/oauth2/token", 200, None) in codes


def test_with_authserver_keeps_declared_routes() -> None:
    declared = {"path": "/oauth2/jwks", "methods": ["GET"], "allow": "public"}
    policy = with_authserver(Policy.model_validate({"apishield": 1, "routes": [declared]}))
    jwks = [r for r in policy.routes if r.path == "/oauth2/jwks"]
    assert len(jwks) == 1 and jwks[0].cache_control is None
    assert len(policy.routes) == len(authserver_routes())
    fields = {(e.route, e.field) for e in policy.inspection.exclude}
    assert ("/oauth2/login", "body.password") in fields
    assert ("/oauth2/token", "body.client_secret") in fields
    assert ("/oauth2/login", "body.username") not in fields  # still inspected


@sqlite_only
@pytest.mark.parametrize(
    "password",
    [
        pytest.param("it's <b>or</b> 1=1; --", id="AUTH-22-password-with-sql-and-markup"),
        pytest.param("../../{{7*7}} | rm", id="AUTH-22-password-with-traversal-and-template"),
    ],
)
async def test_any_password_can_sign_in_through_the_gateway(
    harness: Harness, gateway: httpx.AsyncClient, password: str
) -> None:
    """Passwords are opaque: the inspection stage leaves them alone on the login route."""
    app = await harness.client()
    user = await harness.user()
    await harness.store.users.set_password(user.id, password + PASSWORD)
    page = await gateway.get(
        "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": app.id,
            "redirect_uri": "https://app.example.com/cb",
            "code_challenge": s256(new_verifier()),
            "code_challenge_method": "S256",
        },
    )
    assert page.status_code == 200
    answer = await gateway.post(
        "/oauth2/login",
        data={"txn": form_token(page.text), "username": "ada", "password": password + PASSWORD},
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("https://app.example.com/cb?code=")
