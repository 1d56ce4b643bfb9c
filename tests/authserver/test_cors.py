"""CORS on the server's endpoints, through the gateway's pipeline: a browser app (a public
client with PKCE) may call the token and revocation endpoints, the metadata and the JWK Set
from the policy's exact origins, never with credentials; the authorization endpoint, the
login page and introspection never answer another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apishield.authserver import mount_authserver, with_authserver
from apishield.authserver.pkce import s256
from apishield.pipeline.build import build_pipeline
from apishield.policy.models import Policy
from tests.authserver.conftest import (
    ISSUER,
    PASSWORD,
    REDIRECT,
    Harness,
    form_token,
    new_verifier,
)
from tests.authserver.test_gateway import fallback

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

APP = "https://app.example.com"
EVIL = "https://evil.example"


def preflight(origin: str, method: str = "POST", headers: str | None = None) -> dict[str, str]:
    out = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        out["access-control-request-headers"] = headers
    return out


async def through(harness: Harness, policy: dict[str, Any]) -> httpx.AsyncClient:
    loaded = with_authserver(Policy.model_validate({"apishield": 1, "routes": [], **policy}))
    app = build_pipeline(loaded, mount_authserver(fallback, harness.server))
    transport = httpx.ASGITransport(app=app, client=("192.0.2.30", 40000))
    return httpx.AsyncClient(transport=transport, base_url=ISSUER)


@pytest.fixture
async def gateway(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """The API allows the app's origin with credentials (cookies to the API): the server's
    endpoints take the origins, never the credentials."""
    cors = {"origins": [APP], "credentials": True, "max_age": 120}
    async with await through(harness, {"cors": cors}) as client:
        yield client


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/revoke"])
async def test_preflight_from_an_allowed_origin(gateway: httpx.AsyncClient, path: str) -> None:
    answer = await gateway.options(
        path, headers=preflight(APP, "POST", "authorization, content-type")
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["access-control-allow-methods"] == "POST"
    assert answer.headers["access-control-allow-headers"] == "authorization, content-type"
    assert answer.headers["access-control-max-age"] == "120"
    assert "access-control-allow-credentials" not in answer.headers


@pytest.mark.parametrize(
    ("path", "origin", "method", "headers", "code"),
    [
        pytest.param("/oauth2/token", EVIL, "POST", None, "cors_origin_not_allowed", id="origin"),
        pytest.param("/oauth2/token", "null", "POST", None, "cors_origin_not_allowed", id="null"),
        pytest.param(
            "/oauth2/token", APP, "PUT", None, "cors_method_not_allowed", id="token-method"
        ),
        pytest.param(
            "/oauth2/token", APP, "POST", "x-custom", "cors_header_not_allowed", id="token-header"
        ),
        pytest.param(
            "/oauth2/authorize", APP, "GET", None, "cors_origin_not_allowed", id="authorize"
        ),
        pytest.param("/oauth2/login", APP, "POST", None, "cors_origin_not_allowed", id="login"),
        pytest.param(
            "/oauth2/introspect", APP, "POST", None, "cors_origin_not_allowed", id="introspect"
        ),
    ],
)
async def test_preflight_refused(
    gateway: httpx.AsyncClient,
    path: str,
    origin: str,
    method: str,
    headers: str | None,
    code: str,
) -> None:
    answer = await gateway.options(path, headers=preflight(origin, method, headers))
    assert answer.status_code == 403
    assert answer.json()["code"] == code
    assert "access-control-allow-origin" not in answer.headers


async def test_token_request_from_a_browser_app(
    harness: Harness, gateway: httpx.AsyncClient
) -> None:
    """A public client's code exchange and revocation, cross-origin, as fetch() sends them."""
    app = await harness.client(auth_method="none")
    await harness.user()
    code, verifier = await harness.code(app)
    exchanged = await gateway.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": app.id,
        },
        headers={"origin": APP},
    )
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.headers["access-control-allow-origin"] == APP
    assert "origin" in exchanged.headers["vary"].lower()
    assert "access-control-allow-credentials" not in exchanged.headers
    assert exchanged.headers["cache-control"] == "no-store"
    tokens = exchanged.json()
    assert (await harness.verify(tokens["access_token"])).subject

    revoked = await gateway.post(
        "/oauth2/revoke",
        data={"token": tokens["refresh_token"], "client_id": app.id},
        headers={"origin": APP},
    )
    assert revoked.status_code == 200
    assert revoked.headers["access-control-allow-origin"] == APP
    assert "access-control-allow-credentials" not in revoked.headers

    metadata = await gateway.get("/.well-known/oauth-authorization-server", headers={"origin": APP})
    assert metadata.status_code == 200
    assert metadata.headers["access-control-allow-origin"] == APP
    jwks = await gateway.get("/oauth2/jwks", headers={"origin": APP})
    assert jwks.headers["access-control-allow-origin"] == APP


@pytest.mark.parametrize("origin", [EVIL, "null", "http://app.example.com"])
async def test_token_request_from_another_origin_is_refused(
    harness: Harness, gateway: httpx.AsyncClient, origin: str
) -> None:
    machine = await harness.machine()
    answer = await gateway.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={**machine.auth(), "origin": origin},
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "cors_origin_not_allowed"
    assert "access_token" not in answer.text


async def test_no_cors_section_no_cross_origin_token_requests(harness: Harness) -> None:
    machine = await harness.machine()
    async with await through(harness, {}) as client:
        refused = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={**machine.auth(), "origin": APP},
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "cors_origin_not_allowed"
        same_origin = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={**machine.auth(), "origin": ISSUER},
        )
        assert same_origin.status_code == 200
        assert "access-control-allow-origin" not in same_origin.headers


async def test_a_wildcard_is_not_inherited(harness: Harness) -> None:
    async with await through(harness, {"cors": {"origins": ["*"]}}) as client:
        refused = await client.options("/oauth2/token", headers=preflight(APP))
        assert refused.status_code == 403
        assert refused.json()["code"] == "cors_origin_not_allowed"


async def test_login_page_is_not_readable_cross_origin_but_signs_in(
    harness: Harness, gateway: httpx.AsyncClient
) -> None:
    """The login form posts from a page with `Referrer-Policy: no-referrer`, so the browser
    sends `Origin: null` with `Sec-Fetch-Site: same-origin`: a same-origin navigation."""
    app = await harness.client()
    await harness.user()
    params = {
        "response_type": "code",
        "client_id": app.id,
        "redirect_uri": REDIRECT,
        "code_challenge": s256(new_verifier()),
        "code_challenge_method": "S256",
    }
    page = await gateway.get("/oauth2/authorize", params=params)  # a navigation: no Origin
    assert page.status_code == 200
    assert "access-control-allow-origin" not in page.headers
    read = await gateway.get("/oauth2/authorize", params=params, headers={"origin": APP})
    assert read.status_code == 403  # fetch() from the app's origin cannot read the page
    assert "access-control-allow-origin" not in read.headers
    form = {"txn": form_token(page.text), "username": "ada", "password": "wrong"}
    cross = await gateway.post(
        "/oauth2/login", data=form, headers={"origin": "null", "sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403 and cross.json()["code"] == "cors_origin_not_allowed"
    signed_in = await gateway.post(
        "/oauth2/login",
        data={**form, "password": PASSWORD},
        headers={"origin": "null", "sec-fetch-site": "same-origin"},
    )
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"].startswith(REDIRECT + "?code=")
    assert "access-control-allow-origin" not in signed_in.headers
