"""Stage 7, in-process: credentials in the URL (AUTH 37), the one API key header (AUTH 32),
RFC 6750 bearer syntax and errors (AUTH 8, 11), deny by default (AUTH 31), identity headers
for the upstream (AUTH 36), fail closed when the store is down, one log line per refusal."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from apishield.errors import PROBLEM_TYPE_BASE, UnauthorizedError
from apishield.identity.apikeys import (
    ApiKeyManager,
    ApiKeyRefusal,
    StoreApiKeyVerifier,
    generate_api_key,
)
from apishield.identity.principal import Principal
from apishield.identity.secretkey import SecretKeys
from apishield.identity.verifier import ApiKeyVerifier, BearerVerifier, fingerprint
from apishield.pipeline.access import AccessMiddleware
from apishield.pipeline.audit import AuditMiddleware
from apishield.pipeline.authentication import (
    MAX_TOKEN_BYTES,
    AuthenticationMiddleware,
    build_authentication_stage,
)
from apishield.pipeline.content import ContentMiddleware
from apishield.pipeline.errors import ErrorsMiddleware
from apishield.pipeline.response import ResponseMiddleware
from apishield.pipeline.router import Router
from apishield.pipeline.routing import RoutingMiddleware
from apishield.pipeline.transport import TransportMiddleware
from apishield.policy import parse_policy
from apishield.policy.load import resolve_paths
from apishield.policy.models import Policy
from apishield.store import Store
from apishield.types import ASGIApp, Receive, Scope, Send
from tests.pipeline.conftest import echo_app
from tests.store import backends

clock = backends.clock
postgres_session_url = backends.postgres_session_url
sqlite_template = backends.sqlite_template
store = backends.store
store_url = backends.store_url

PREFIX = "ask_live"
POLICY: dict[str, Any] = {
    "apishield": 1,
    "identity": {"api_keys": {"header": "X-API-Key", "prefix": PREFIX}},
    "routes": [
        {"path": "/public", "methods": ["GET"], "allow": "public"},
        {"path": "/items/{item_id}", "methods": ["GET"], "allow": "public"},
        {"path": "/invoices", "methods": ["GET"], "allow": {"scopes": ["invoices:read"]}},
        {"path": "/anyone", "methods": ["GET"], "allow": {}},
        {
            "path": "/orders",
            "methods": ["GET"],
            "allow": {"scopes": ["invoices:read"]},
            "resource": "https://api.example.com/orders",
        },
    ],
}
USER = Principal(
    issuer="https://idp.example.com",
    subject="user-1",
    kind="jwt",
    scopes=frozenset({"invoices:read", "profile"}),
    roles=frozenset({"admin"}),
    client_id="web-app",
)
ODD = Principal(issuer="https://idp.example.com", subject="évil\r\nX-Injected: 1", kind="jwt")


class StubBearer(BearerVerifier):
    """Accepts two known tokens; everything else is an invalid token."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.resources: list[str | None] = []

    async def verify_bearer(self, token: str, *, resource: str | None = None) -> Principal:
        self.calls.append(token)
        self.resources.append(resource)
        if token == "good-token":
            return USER
        if token == "odd-subject":
            return ODD
        raise UnauthorizedError(code="token_invalid")


def compose(
    policy: Policy, *, api_keys: ApiKeyVerifier | None, bearer: BearerVerifier | None
) -> ASGIApp:
    """The pipeline's stages in DESIGN order, with authentication at its place (7)."""
    router = Router(policy)
    inner: ASGIApp = ResponseMiddleware(echo_app, policy=policy)
    inner = AccessMiddleware(inner)
    inner = AuthenticationMiddleware(
        inner, api_keys=api_keys, api_key_header="X-API-Key", bearer=bearer, api_key_prefix=PREFIX
    )
    inner = ContentMiddleware(inner, policy=policy, type_base=PROBLEM_TYPE_BASE)
    inner = RoutingMiddleware(inner, router=router)
    inner = TransportMiddleware(inner, trusted_proxies=[], hsts=policy.listen.hsts)
    inner = AuditMiddleware(inner)
    return ErrorsMiddleware(inner, type_base=PROBLEM_TYPE_BASE)


@pytest.fixture
def secret_keys() -> SecretKeys:
    return SecretKeys.from_master(os.urandom(32))


@pytest.fixture
def bearer() -> StubBearer:
    return StubBearer()


@pytest.fixture
def manager(store: Store, secret_keys: SecretKeys) -> ApiKeyManager:
    return ApiKeyManager(store, pepper=secret_keys.api_key_pepper, prefix=PREFIX)


Factory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def connect() -> AsyncIterator[Factory]:
    clients: list[httpx.AsyncClient] = []

    def factory(app: ASGIApp, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
        opened = httpx.AsyncClient(transport=transport, base_url="https://api.test")
        clients.append(opened)
        return opened

    yield factory
    for opened in clients:
        await opened.aclose()


@pytest.fixture
def client(
    store: Store, secret_keys: SecretKeys, bearer: StubBearer, connect: Factory
) -> httpx.AsyncClient:
    verifier = StoreApiKeyVerifier(store, pepper=secret_keys.api_key_pepper, prefix=PREFIX)
    return connect(compose(parse_policy(POLICY), api_keys=verifier, bearer=bearer))


@pytest.fixture
def stub_client(bearer: StubBearer, connect: Factory) -> httpx.AsyncClient:
    """The stage with a bearer verifier only: for tests that need no store."""
    return connect(compose(parse_policy(POLICY), api_keys=None, bearer=bearer))


def upstream_headers(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    headers: dict[str, str] = response.json()["headers"]
    return headers


def code_of(response: httpx.Response) -> str:
    code: str = response.json()["code"]
    return code


# -- AUTH 37: no credentials in the query string ------------------------------------------------

QUERY_CREDENTIALS = [
    pytest.param("access_token=abc", id="AUTH-37-access_token"),
    pytest.param("api_key=abc", id="AUTH-37-api_key"),
    pytest.param("apikey=abc", id="AUTH-37-apikey"),
    pytest.param("key=abc", id="AUTH-37-key"),
    pytest.param("token=abc", id="AUTH-37-token"),
    pytest.param("id_token=abc", id="AUTH-37-id_token"),
    pytest.param("refresh_token=abc", id="AUTH-37-refresh_token"),
    pytest.param("client_secret=abc", id="AUTH-37-client_secret"),
    pytest.param("code_verifier=abc", id="AUTH-37-code_verifier"),
    pytest.param("password=abc", id="AUTH-37-password"),
    pytest.param("page=2&ACCESS_TOKEN=abc", id="AUTH-37-upper-case"),
    pytest.param("access%5Ftoken=abc", id="AUTH-37-percent-encoded-name"),
    pytest.param("api-key=abc", id="AUTH-37-dash"),
    pytest.param("x-api-key=abc", id="AUTH-37-configured-header-name"),
    pytest.param("token", id="AUTH-37-no-value"),
]


@pytest.mark.parametrize("query", QUERY_CREDENTIALS)
async def test_authentication(
    stub_client: httpx.AsyncClient, query: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="apishield.authentication"):
        response = await stub_client.get(f"/public?{query}")
    assert response.status_code == 400
    assert code_of(response) == "credentials_in_query"
    assert "headers" not in response.json()  # the upstream never saw it
    refusals = [r for r in caplog.records if r.name == "apishield.authentication"]
    assert len(refusals) == 1 and "code=credentials_in_query" in refusals[0].getMessage()


async def test_innocent_query_passes(stub_client: httpx.AsyncClient) -> None:
    response = await stub_client.get("/public?page=2&sort=name&keyword=x&tokens_left=3")
    assert response.status_code == 200


async def test_api_key_anywhere_in_the_url_is_refused(
    client: httpx.AsyncClient, manager: ApiKeyManager
) -> None:
    """AUTH-32-not-in-url: a real key is recognised by its checksum in any parameter or path."""
    key = (await manager.create("billing")).key
    for url in (f"/public?q={key}", f"/items/{key}", f"/public?filter=owner%3D{key}"):
        response = await client.get(url)
        assert (response.status_code, code_of(response)) == (400, "credentials_in_query"), url


# -- AUTH 32: API keys in the configured header only --------------------------------------------


async def test_api_key_in_the_configured_header(
    client: httpx.AsyncClient, manager: ApiKeyManager
) -> None:
    """AUTH-32-header: accepted in X-API-Key, consumed (not forwarded), identity set."""
    key = (await manager.create("billing", scopes=["invoices:read"])).key
    headers = upstream_headers(await client.get("/invoices", headers={"X-API-Key": key}))
    assert "x-api-key" not in headers
    assert headers["x-authenticated-issuer"] == "apikey"
    assert headers["x-authenticated-subject"] == "billing"
    assert headers["x-authenticated-scopes"] == "invoices:read"
    assert headers["x-authenticated-roles"] == ""
    assert "x-authenticated-client" not in headers
    assert key not in json.dumps(headers)


@pytest.mark.parametrize(
    ("where", "status", "code"),
    [
        pytest.param("other-header", 401, "authentication_required", id="AUTH-32-other-header"),
        pytest.param("cookie", 401, "authentication_required", id="AUTH-32-cookie"),
        pytest.param("bearer", 401, "token_invalid", id="AUTH-32-not-a-bearer-token"),
    ],
)
async def test_api_key_elsewhere_is_not_accepted(
    client: httpx.AsyncClient, manager: ApiKeyManager, where: str, status: int, code: str
) -> None:
    key = (await manager.create("billing", scopes=["invoices:read"])).key
    headers = {
        "other-header": {"X-Api-Token": key},
        "cookie": {"Cookie": f"api_key={key}"},
        "bearer": {"Authorization": f"Bearer {key}"},
    }[where]
    response = await client.get("/invoices", headers=headers)
    assert (response.status_code, code_of(response)) == (status, code)


async def test_api_key_deny_by_default(client: httpx.AsyncClient, manager: ApiKeyManager) -> None:
    """AUTH-31-deny-by-default: a key without scopes passes only routes that ask for none."""
    key = (await manager.create("someone")).key
    refused = await client.get("/invoices", headers={"X-API-Key": key})
    assert (refused.status_code, code_of(refused)) == (403, "scope_missing")
    assert upstream_headers(await client.get("/anyone", headers={"X-API-Key": key}))


@pytest.mark.parametrize(
    ("key", "code"),
    [
        pytest.param("ask_live_nope", "api_key_invalid", id="AUTH-30-malformed"),
        pytest.param(generate_api_key(PREFIX), "api_key_invalid", id="AUTH-30-unknown"),
        pytest.param(generate_api_key(PREFIX)[:-1] + "!", "api_key_invalid", id="bad-checksum"),
    ],
)
async def test_bad_api_keys(
    client: httpx.AsyncClient, key: str, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="apishield.authentication"):
        response = await client.get("/public", headers={"X-API-Key": key})
    assert (response.status_code, code_of(response)) == (401, code)
    assert response.headers["www-authenticate"] == 'ApiKey realm="apishield"'
    lines = [r.getMessage() for r in caplog.records if r.name == "apishield.authentication"]
    assert len(lines) == 1
    assert f"credential={fingerprint(key)}" in lines[0] and key not in lines[0]


async def test_expired_and_fenced_keys(
    client: httpx.AsyncClient, manager: ApiKeyManager, clock: backends.Clock
) -> None:
    """AUTH-31-expiry, AUTH-31-ip-allowlist through the stage."""
    fenced = (await manager.create("billing", ip_allowlist=["10.0.0.0/8"])).key
    response = await client.get("/anyone", headers={"X-API-Key": fenced})
    assert (response.status_code, code_of(response)) == (403, "api_key_ip_not_allowed")
    expiring = (await manager.create("billing", expires_at=clock() + timedelta(hours=1))).key
    assert upstream_headers(await client.get("/anyone", headers={"X-API-Key": expiring}))
    clock.advance(3600)
    response = await client.get("/anyone", headers={"X-API-Key": expiring})
    assert (response.status_code, code_of(response)) == (401, "api_key_expired")
    assert response.headers["www-authenticate"] == 'ApiKey realm="apishield"'


async def test_two_credentials_at_once(
    client: httpx.AsyncClient, manager: ApiKeyManager, bearer: StubBearer
) -> None:
    key = (await manager.create("billing")).key
    response = await client.get(
        "/anyone", headers={"X-API-Key": key, "Authorization": "Bearer good-token"}
    )
    assert (response.status_code, code_of(response)) == (401, "credentials_ambiguous")
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert bearer.calls == []


# -- AUTH 8, 11: bearer tokens ------------------------------------------------------------------


MALFORMED = [
    pytest.param([("Authorization", "Bearer")], "authorization_malformed", id="AUTH-11-no-token"),
    pytest.param([("Authorization", "Bearer ")], "authorization_malformed", id="AUTH-11-blank"),
    pytest.param([("Authorization", "Bearer a b")], "authorization_malformed", id="AUTH-11-space"),
    pytest.param(
        [("Authorization", "Bearer a,Bearer b")], "authorization_malformed", id="AUTH-11-comma"
    ),
    pytest.param([("Authorization", "Bearer a=b")], "authorization_malformed", id="AUTH-11-eq"),
    pytest.param(
        [("Authorization", "Basic dXNlcjpwYXNz")],
        "authorization_scheme_unsupported",
        id="AUTH-11-basic",
    ),
    pytest.param(
        [("Authorization", "DPoP abc")], "authorization_scheme_unsupported", id="AUTH-11-dpop"
    ),
    pytest.param(
        [("Authorization", "Bearer good-token"), ("Authorization", "Bearer good-token")],
        "credentials_ambiguous",
        id="AUTH-11-two-headers",
    ),
    pytest.param(
        [("X-API-Key", "a"), ("X-API-Key", "b")], "credentials_ambiguous", id="two-api-keys"
    ),
    pytest.param([("X-API-Key", " ")], "authorization_malformed", id="empty-api-key"),
]


@pytest.mark.parametrize(("headers", "code"), MALFORMED)
async def test_malformed_credentials(
    client: httpx.AsyncClient, bearer: StubBearer, headers: list[tuple[str, str]], code: str
) -> None:
    response = await client.get("/public", headers=headers)
    assert (response.status_code, code_of(response)) == (401, code)
    assert response.headers["www-authenticate"] == (
        'Bearer realm="apishield", error="invalid_request"'
    )
    assert bearer.calls == []


async def test_bearer_token(stub_client: httpx.AsyncClient) -> None:
    headers = upstream_headers(
        await stub_client.get("/invoices", headers={"Authorization": "bearer good-token"})
    )
    assert headers["x-authenticated-issuer"] == "https://idp.example.com"
    assert headers["x-authenticated-subject"] == "user-1"
    assert headers["x-authenticated-client"] == "web-app"
    assert headers["x-authenticated-scopes"] == "invoices:read profile"
    assert headers["x-authenticated-roles"] == "admin"


async def test_bearer_verified_for_the_matched_routes_resource(
    stub_client: httpx.AsyncClient, bearer: StubBearer
) -> None:
    """AUTH-6-route-resource-reaches-verifier: routing ran first, so the verifier is asked
    for the matched route's resource identifier (None: the issuer's audience applies)."""
    auth = {"Authorization": "Bearer good-token"}
    assert (await stub_client.get("/orders", headers=auth)).status_code == 200
    assert (await stub_client.get("/invoices", headers=auth)).status_code == 200
    assert bearer.resources == ["https://api.example.com/orders", None]


async def test_invalid_token(stub_client: httpx.AsyncClient) -> None:
    """AUTH-11-invalid-token: 401 with error="invalid_token" and nothing beyond the code."""
    response = await stub_client.get("/public", headers={"Authorization": "Bearer forged"})
    assert (response.status_code, code_of(response)) == (401, "token_invalid")
    assert response.headers["www-authenticate"] == 'Bearer realm="apishield", error="invalid_token"'
    assert set(response.json()) <= {"type", "title", "status", "code", "request_id"}


@pytest.mark.parametrize(
    ("size", "reaches_verifier"),
    [
        pytest.param(MAX_TOKEN_BYTES - len("Bearer "), True, id="AUTH-8-at-limit"),
        pytest.param(MAX_TOKEN_BYTES + 1, False, id="AUTH-8-over-limit"),
    ],
)
async def test_token_size_limit(
    stub_client: httpx.AsyncClient, bearer: StubBearer, size: int, reaches_verifier: bool
) -> None:
    response = await stub_client.get("/public", headers={"Authorization": "Bearer " + "a" * size})
    assert response.status_code == 401
    assert code_of(response) == ("token_invalid" if reaches_verifier else "token_too_large")
    assert bool(bearer.calls) is reaches_verifier


# -- no credentials -----------------------------------------------------------------------------


async def test_anonymous(stub_client: httpx.AsyncClient) -> None:
    assert upstream_headers(await stub_client.get("/public"))
    response = await stub_client.get("/invoices")
    assert (response.status_code, code_of(response)) == (401, "authentication_required")


# -- AUTH 36: identity headers ------------------------------------------------------------------

FORGED = {
    "X-Authenticated-Subject": "admin",
    "X-Authenticated-Scopes": "invoices:read",
    "x-authenticated-roles": "admin",
    "X-Authenticated-Anything": "1",
}


async def test_forged_identity_headers_are_removed(stub_client: httpx.AsyncClient) -> None:
    """AUTH-36-strip: a client cannot claim an identity, with or without credentials."""
    anonymous = upstream_headers(await stub_client.get("/public", headers=FORGED))
    assert not [h for h in anonymous if h.startswith("x-authenticated-")]
    verified = upstream_headers(
        await stub_client.get("/invoices", headers={**FORGED, "Authorization": "Bearer good-token"})
    )
    assert verified["x-authenticated-subject"] == "user-1"
    assert "x-authenticated-anything" not in verified
    forged_only = await stub_client.get("/invoices", headers=FORGED)
    assert forged_only.status_code == 401


async def test_identity_header_values_are_encoded(stub_client: httpx.AsyncClient) -> None:
    """AUTH-36-encoding: a subject cannot inject a header into the upstream request."""
    headers = upstream_headers(
        await stub_client.get("/anyone", headers={"Authorization": "Bearer odd-subject"})
    )
    assert headers["x-authenticated-subject"] == "%C3%A9vil%0D%0AX-Injected:%201"
    assert "x-injected" not in headers


# -- fail closed, plumbing ----------------------------------------------------------------------


async def test_store_down_fails_closed(
    connect: Factory, secret_keys: SecretKeys, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Store("postgresql://root@127.0.0.1:1/test", auto_migrate=False, connect_timeout=1)
    verifier = StoreApiKeyVerifier(dead, pepper=secret_keys.api_key_pepper, prefix=PREFIX)
    client = connect(compose(parse_policy(POLICY), api_keys=verifier, bearer=None))
    key = generate_api_key(PREFIX)
    try:
        with caplog.at_level(logging.INFO, logger="apishield"):
            response = await client.get("/public", headers={"X-API-Key": key})
    finally:
        await dead.aclose()
    assert (response.status_code, code_of(response)) == (503, "store_unavailable")
    assert response.headers["retry-after"] == "5"
    assert "code=store_unavailable" in caplog.text and key not in caplog.text


async def test_other_scopes_pass_through(bearer: StubBearer) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    stage = AuthenticationMiddleware(app, api_keys=None, bearer=bearer)
    await stage({"type": "lifespan"}, _never, _ignore)
    assert seen == ["lifespan"]


async def _never() -> dict[str, Any]:
    raise AssertionError("not read")


async def _ignore(message: Any) -> None:
    return None


async def test_build_authentication_stage(
    store: Store, secret_keys: SecretKeys, manager: ApiKeyManager, connect: Factory
) -> None:
    policy = parse_policy(POLICY)
    stage = build_authentication_stage(
        AccessMiddleware(echo_app), policy, store=store, secret_keys=secret_keys
    )
    assert isinstance(stage.api_keys, StoreApiKeyVerifier) and stage.bearer is None
    await stage.aclose()  # it opened nothing: the given store stays open
    key = (await manager.create("billing")).key
    assert await stage.api_keys.verify_api_key(key, client_ip="127.0.0.1")


async def test_lifespan_shutdown_closes_what_the_stage_owns(bearer: StubBearer) -> None:
    closed: list[str] = []

    class Owned:
        async def aclose(self) -> None:
            closed.append("owned")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        assert closed == []
        await send({"type": "lifespan.shutdown.complete"})

    stage = AuthenticationMiddleware(app, api_keys=None, bearer=bearer, owned=[Owned()])
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await stage({"type": "lifespan"}, receive, send)
    assert closed == ["owned"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await stage.aclose()
    assert closed == ["owned"]  # closed once


async def test_build_authentication_stage_opens_the_policy_store(tmp_path: Path) -> None:
    policy = resolve_paths(parse_policy({**POLICY, "state": {"dir": "state"}}), tmp_path)
    stage = build_authentication_stage(AccessMiddleware(echo_app), policy)
    try:
        assert isinstance(stage.api_keys, StoreApiKeyVerifier)
        assert (tmp_path / "state" / "secret.key").exists()
        with pytest.raises(ApiKeyRefusal):
            await stage.api_keys.verify_api_key(generate_api_key(PREFIX), client_ip="::1")
        assert (tmp_path / "state" / "apishield.db").exists()
    finally:
        await stage.aclose()


def test_without_identity_settings() -> None:
    policy = parse_policy({k: v for k, v in POLICY.items() if k != "identity"})
    stage = build_authentication_stage(AccessMiddleware(echo_app), policy)
    assert stage.api_keys is None and stage.api_key_header is None
