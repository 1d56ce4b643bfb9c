"""RFC 7662 introspection of opaque tokens against a loopback endpoint (AUTH 12, 35, 38)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apishield.errors import ConfigError, HTTPError
from apishield.identity.introspection import (
    IntrospectionVerifier,
    basic_credentials,
    resolve_secret,
)
from apishield.identity.settings import IntrospectionSettings
from apishield.identity.verifier import fingerprint
from tests.identity.idp import NOW, Clock, IdP, Reply, Seen, json_reply, running_idp

TOKEN = "opaque-2YotnFZFEjr1zCsicMWpAA"
SECRET = "s3cr:et+/with=odd&chars"


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    async with running_idp() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


@pytest.fixture
def log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("apishield.identity")
    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def active(**extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "active": True,
        "iss": "https://login.example.com",
        "sub": "user-7",
        "client_id": "mobile",
        "scope": "orders:read",
        "exp": int(NOW) + 600,
        "iat": int(NOW),
        "jti": "at-7",
        "token_type": "Bearer",
    }
    answer.update(extra)
    return {k: v for k, v in answer.items() if v is not None}


def make(
    idp: IdP, client: httpx.AsyncClient, clock: Clock | None = None, **settings: Any
) -> IntrospectionVerifier:
    fetch_timeout = settings.pop("fetch_timeout", 5.0)
    values: dict[str, Any] = {
        "endpoint": f"{idp.url}/introspect",
        "client_id": "gateway",
        "client_secret": "env:GATEWAY_SECRET",
        "cache_ttl": 60,
    }
    values.update(settings)
    return IntrospectionVerifier(
        IntrospectionSettings.model_validate(values),
        client=client,
        clock=clock or Clock(),
        environ={"GATEWAY_SECRET": SECRET},
        fetch_timeout=fetch_timeout,
    )


async def code_of(verifier: IntrospectionVerifier, token: str = TOKEN) -> str:
    try:
        return (await verifier.verify_bearer(token)).subject
    except HTTPError as exc:
        return exc.code


async def test_introspection_active(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-12: the gateway's own credentials, the token in the form; the answer → Principal."""
    idp.serve_json("/introspect", active())
    principal = await make(idp, client).verify_bearer(TOKEN)
    assert principal.issuer == "https://login.example.com"
    assert principal.subject == "user-7"
    assert principal.kind == "opaque"
    assert principal.scopes == {"orders:read"}
    assert principal.client_id == "mobile"
    assert principal.credential_id == "at-7"
    assert principal.expires_at == NOW + 600
    (seen,) = idp.seen
    assert seen.method == "POST"
    assert seen.form() == {"token": TOKEN, "token_type_hint": "access_token"}
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    scheme, _, value = seen.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    # RFC 6749 §2.3.1: id and secret form-urlencoded before Basic encoding.
    assert base64.b64decode(value).decode() == "gateway:s3cr%3Aet%2B%2Fwith%3Dodd%26chars"


async def test_introspection_issuer_defaults_to_endpoint(
    idp: IdP, client: httpx.AsyncClient
) -> None:
    idp.serve_json("/introspect", active(iss=None))
    principal = await make(idp, client).verify_bearer(TOKEN)
    assert principal.issuer == f"{idp.url}/introspect"


REFUSED = [
    pytest.param({"active": False}, "token_inactive", id="AUTH-12-inactive"),
    pytest.param(active(active="true"), "token_inactive", id="AUTH-12-active-not-boolean-true"),
    pytest.param({"sub": "user-7"}, "token_inactive", id="AUTH-12-active-missing"),
    pytest.param(active(exp=int(NOW) - 1), "token_expired", id="AUTH-12-active-but-expired"),
    pytest.param(active(exp="later"), "token_invalid", id="AUTH-12-exp-malformed"),
    pytest.param(active(sub=None), "token_invalid", id="AUTH-10-no-sub"),
    pytest.param(
        active(token_type="refresh_token"), "token_invalid", id="AUTH-35-refresh-token-type"
    ),
    pytest.param(active(typ="Refresh"), "token_invalid", id="AUTH-35-keycloak-refresh-token"),
    pytest.param(active(typ="ID", nonce="n"), "token_invalid", id="AUTH-35-id-token"),
]


@pytest.mark.parametrize(("answer", "code"), REFUSED)
async def test_introspection_refused(
    idp: IdP, client: httpx.AsyncClient, answer: dict[str, Any], code: str
) -> None:
    idp.serve_json("/introspect", answer)
    verifier = make(idp, client)
    with pytest.raises(HTTPError) as caught:
        await verifier.verify_bearer(TOKEN)
    assert (caught.value.status, caught.value.code) == (401, code)
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert len(verifier.cache) == 0


async def test_introspection_cache_bounded_by_ttl(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-12-cache-ttl: an answer is reused until cache_ttl, then asked again."""
    idp.serve_json("/introspect", active(exp=int(NOW) + 3600))
    clock = Clock()
    verifier = make(idp, client, clock, cache_ttl=60)
    for _ in range(3):
        assert await code_of(verifier) == "user-7"
    assert len(idp.seen) == 1
    clock.advance(59)
    assert await code_of(verifier) == "user-7"
    assert len(idp.seen) == 1
    clock.advance(1)
    idp.serve_json("/introspect", {"active": False})  # revoked at the server meanwhile
    assert await code_of(verifier) == "token_inactive"
    assert len(idp.seen) == 2


async def test_introspection_cache_bounded_by_exp(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-12-cache-exp: never cached past the token's exp, even with a longer cache_ttl."""
    idp.serve_json("/introspect", active(exp=int(NOW) + 10))
    clock = Clock()
    verifier = make(idp, client, clock, cache_ttl=300)
    assert await code_of(verifier) == "user-7"
    clock.advance(9)
    assert await code_of(verifier) == "user-7"
    assert len(idp.seen) == 1
    clock.advance(1)
    idp.serve_json("/introspect", {"active": False})
    assert await code_of(verifier) == "token_inactive"
    assert len(idp.seen) == 2


async def _hang(_: Seen) -> Reply:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


UNAVAILABLE = [
    pytest.param(lambda _: (500, {}, b"boom"), id="AUTH-12-server-error"),
    pytest.param(lambda _: (401, {}, b"bad client"), id="AUTH-12-gateway-credentials-refused"),
    pytest.param(lambda _: (200, {}, b"not json"), id="AUTH-12-not-json"),
    pytest.param(lambda _: json_reply(["active"]), id="AUTH-12-not-an-object"),
    pytest.param(lambda _: json_reply(active(pad="x" * 70_000)), id="AUTH-12-over-size-cap"),
    pytest.param(lambda _: (302, {"Location": "/elsewhere"}, b""), id="AUTH-12-redirect"),
    pytest.param(_hang, id="AUTH-12-timeout"),
]


@pytest.mark.parametrize("route", UNAVAILABLE)
async def test_introspection_unavailable_fails_closed(
    idp: IdP, client: httpx.AsyncClient, route: Any, log: list[logging.LogRecord]
) -> None:
    """AUTH-12: no usable answer → 503, never a pass; the log names the token by fingerprint."""
    idp.routes["/introspect"] = route
    idp.serve_json("/elsewhere", active())
    verifier = make(idp, client, fetch_timeout=0.2)
    with pytest.raises(HTTPError) as caught:
        await verifier.verify_bearer(TOKEN)
    assert (caught.value.status, caught.value.code) == (503, "introspection_unavailable")
    assert "/elsewhere" not in idp.paths()
    messages = [record.getMessage() for record in log]
    assert any(fingerprint(TOKEN) in message for message in messages)
    assert not any(TOKEN in message or SECRET in message for message in messages)  # AUTH 38


async def test_introspection_endpoint_down(client: httpx.AsyncClient) -> None:
    """AUTH-12-connection-refused: nothing listening → 503."""
    async with running_idp() as gone:
        url = gone.url
    verifier = IntrospectionVerifier(
        IntrospectionSettings(endpoint=f"{url}/introspect", client_id="g", client_secret="env:S"),
        client=client,
        environ={"S": "x"},
    )
    with pytest.raises(HTTPError) as caught:
        await verifier.verify_bearer(TOKEN)
    assert caught.value.code == "introspection_unavailable"


def test_resolve_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    assert resolve_secret(f"file:{secret_file}") == "from-a-file"
    assert resolve_secret("env:X", environ={"X": "from-env"}) == "from-env"
    for reference in ("env:MISSING", f"file:{tmp_path / 'missing'}", "inline"):
        with pytest.raises(ConfigError):
            resolve_secret(reference, environ={})


def test_missing_secret_refused_at_start_up(client: httpx.AsyncClient) -> None:
    settings = IntrospectionSettings(
        endpoint="https://login.example.com/introspect", client_id="g", client_secret="env:NONE"
    )
    with pytest.raises(ConfigError):
        IntrospectionVerifier(settings, client=client, environ={})


def test_basic_credentials_encoding() -> None:
    value = basic_credentials("id:1", "a b")
    assert base64.b64decode(value.removeprefix("Basic ")).decode() == "id%3A1:a+b"


ORDERS = "https://api.example.com/orders"
BILLING = "https://api.example.com/billing"


@pytest.mark.parametrize(
    ("aud", "outcomes"),
    [
        pytest.param(
            ORDERS, ["user-7", "token_audience_mismatch", "user-7"], id="AUTH-6-opaque-string"
        ),
        pytest.param([BILLING, ORDERS], ["user-7", "user-7", "user-7"], id="AUTH-6-opaque-array"),
        pytest.param(
            None,
            ["token_audience_mismatch", "token_audience_mismatch", "user-7"],
            id="AUTH-6-opaque-no-aud-fails-closed-on-resource-routes",
        ),
    ],
)
async def test_introspection_route_resource(
    idp: IdP, client: httpx.AsyncClient, aud: Any, outcomes: list[str]
) -> None:
    """AUTH-6 for opaque tokens: on a route with a resource the answer's `aud` must name it;
    a route without one asks nothing of `aud`. One introspection serves all three calls."""
    idp.serve_json("/introspect", active(aud=aud))
    verifier = make(idp, client)
    seen = []
    for resource in (ORDERS, BILLING, None):
        try:
            seen.append((await verifier.verify_bearer(TOKEN, resource=resource)).subject)
        except HTTPError as exc:
            assert exc.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            seen.append(exc.code)
    assert seen == outcomes
    assert verifier.requests == 1


@pytest.mark.parametrize(
    ("aud", "outcomes"),
    [
        pytest.param(ORDERS, ["user-7", "token_audience_mismatch"], id="AUTH-6-opaque-configured"),
        pytest.param(
            "https://other.example.com",
            ["token_audience_mismatch", "token_audience_mismatch"],
            id="AUTH-6-opaque-another-api",
        ),
        pytest.param(
            None,
            ["token_audience_mismatch", "token_audience_mismatch"],
            id="AUTH-6-opaque-no-aud-with-configured-audience",
        ),
    ],
)
async def test_introspection_configured_audience(
    idp: IdP, client: httpx.AsyncClient, aud: Any, outcomes: list[str]
) -> None:
    """AUTH-6 for opaque tokens with `audience` set: routes without a resource need the answer's
    `aud` to name the configured audience, so a token another API was issued is refused."""
    idp.serve_json("/introspect", active(aud=aud))
    verifier = make(idp, client, audience=[ORDERS])
    seen = []
    for resource in (None, BILLING):
        try:
            seen.append((await verifier.verify_bearer(TOKEN, resource=resource)).subject)
        except HTTPError as exc:
            seen.append(exc.code)
    assert seen == outcomes


@pytest.mark.parametrize("audience", ["", " ", []], ids=["empty", "blank", "empty-list"])
def test_blank_introspection_audience_refused(audience: Any) -> None:
    with pytest.raises(ValueError, match="non-blank audiences"):
        IntrospectionSettings.model_validate(
            {
                "endpoint": "https://idp.example.com/introspect",
                "client_id": "gateway",
                "client_secret": "env:S",
                "audience": audience,
            }
        )
