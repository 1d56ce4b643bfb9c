"""build_bearer_verifier and the dispatch of a bearer token to its verifier (AUTH 1, 8, 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from apishield.errors import ConfigError, HTTPError
from apishield.identity.bearer import BearerDispatcher, build_bearer_verifier
from apishield.identity.jwks import StaticKeys
from apishield.identity.jwt import MAX_TOKEN_BYTES, JWTVerifier
from apishield.identity.settings import IdentitySettings
from tests.identity.idp import NOW, Clock, IdP, claims, ec_key, json_reply, jwks, running_idp, sign

KEY_A = ec_key("a-1")
KEY_B = ec_key("b-1")
BUILTIN_KEY = ec_key("builtin-1")
OPAQUE = "8xLOxBtZp8"


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    async with running_idp() as server:
        server.serve_json("/a/certs", jwks(KEY_A))
        server.serve_json("/b/certs", jwks(KEY_B))
        server.routes["/introspect"] = lambda request: json_reply(
            {"active": True, "sub": "svc-1", "exp": int(NOW) + 300}
            if request.form().get("token") == OPAQUE
            else {"active": False}
        )
        yield server


def identity(idp: IdP, *, introspection: bool = True, **extra: Any) -> IdentitySettings:
    issuers: list[dict[str, Any]] = [
        {
            "issuer": f"{idp.url}/{name}",
            "jwks_uri": f"{idp.url}/{name}/certs",
            "algorithms": ["ES256"],
            "audience": "orders-api",
        }
        for name in ("a", "b")
    ]
    values: dict[str, Any] = {"issuers": issuers, **extra}
    if introspection:
        values["introspection"] = {
            "endpoint": f"{idp.url}/introspect",
            "client_id": "gateway",
            "client_secret": "env:APISHIELD_TEST_INTROSPECTION_SECRET",
        }
    return IdentitySettings.model_validate(values)


@pytest.fixture
async def dispatcher(idp: IdP, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BearerDispatcher]:
    monkeypatch.setenv("APISHIELD_TEST_INTROSPECTION_SECRET", "s3cret")
    verifier = build_bearer_verifier(identity(idp), clock=Clock())
    assert verifier is not None
    try:
        yield verifier
    finally:
        await verifier.aclose()


async def outcome(verifier: BearerDispatcher, token: str) -> str:
    """``issuer|subject`` of the principal, or the refusal code."""
    try:
        return (await verifier.verify_bearer(token)).key
    except HTTPError as exc:
        return exc.code


async def test_dispatch_by_issuer(idp: IdP, dispatcher: BearerDispatcher) -> None:
    """AUTH-1: each JWT goes to the verifier of its own (exact) issuer."""
    a, b = f"{idp.url}/a", f"{idp.url}/b"
    assert await outcome(dispatcher, sign(KEY_A, claims(a))) == f"{a}|user-42"
    assert await outcome(dispatcher, sign(KEY_B, claims(b))) == f"{b}|user-42"


DISPATCH_REFUSALS = [
    pytest.param(
        lambda url: sign(KEY_A, claims("https://evil.example")),
        "token_issuer_unknown",
        id="AUTH-1-unknown-issuer",
    ),
    pytest.param(
        lambda url: sign(KEY_A, claims(f"{url}/a/")),
        "token_issuer_unknown",
        id="AUTH-1-issuer-not-exact",
    ),
    pytest.param(
        lambda url: sign(KEY_A, claims("", iss=None)), "token_issuer_unknown", id="AUTH-1-no-iss"
    ),
    pytest.param(
        lambda url: sign(KEY_A, claims("", iss=["x"])),
        "token_issuer_unknown",
        id="AUTH-1-iss-not-string",
    ),
    pytest.param(
        lambda url: sign(KEY_B, claims(f"{url}/a")),
        "token_invalid",
        id="AUTH-1-issuer-a-signed-with-issuer-b-key",
    ),
    pytest.param(
        lambda url: "x" * (MAX_TOKEN_BYTES + 1), "token_too_large", id="AUTH-8-opaque-over-8KiB"
    ),
    pytest.param(
        lambda url: sign(KEY_A, claims(f"{url}/a", pad="x" * MAX_TOKEN_BYTES)),
        "token_too_large",
        id="AUTH-8-jwt-over-8KiB",
    ),
    pytest.param(lambda url: "not-active", "token_inactive", id="AUTH-12-opaque-inactive"),
]


@pytest.mark.parametrize(("make_token", "code"), DISPATCH_REFUSALS)
async def test_dispatch_refused(
    idp: IdP, dispatcher: BearerDispatcher, make_token: Any, code: str
) -> None:
    assert await outcome(dispatcher, make_token(idp.url)) == code
    if code in ("token_issuer_unknown", "token_too_large"):
        assert idp.seen == []  # refused before any fetch or introspection


async def test_dispatch_opaque_to_introspection(idp: IdP, dispatcher: BearerDispatcher) -> None:
    """AUTH-12: what is not a JWS goes to introspection."""
    assert await outcome(dispatcher, OPAQUE) == f"{idp.url}/introspect|svc-1"
    assert idp.paths() == ["/introspect"]


async def test_opaque_without_introspection(idp: IdP) -> None:
    verifier = build_bearer_verifier(identity(idp, introspection=False), clock=Clock())
    assert verifier is not None
    try:
        assert await outcome(verifier, OPAQUE) == "token_invalid"
        assert idp.seen == []
    finally:
        await verifier.aclose()


def test_nothing_to_verify() -> None:
    assert build_bearer_verifier(None) is None
    assert build_bearer_verifier(IdentitySettings()) is None
    assert build_bearer_verifier(IdentitySettings.model_validate({"api_keys": {}})) is None
    builtin_only = IdentitySettings.model_validate({"issuers": [{"builtin": True}]})
    assert build_bearer_verifier(builtin_only) is None


def builtin_verifier(issuer: str = "https://gateway.example.com/oauth2") -> JWTVerifier:
    return JWTVerifier(
        issuer=issuer,
        keys=StaticKeys([BUILTIN_KEY]),
        algorithms=["ES256", "EdDSA"],
        audience="orders-api",
        clock=Clock(),
    )


async def test_builtin_issuer_seam(idp: IdP) -> None:
    """The built-in server's verifier plugs in for `builtin: true`, beside external issuers."""
    settings = IdentitySettings.model_validate(
        {"issuers": [{"builtin": True}, identity(idp, introspection=False).issuers[0]]}
    )
    verifier = build_bearer_verifier(settings, builtin=builtin_verifier(), clock=Clock())
    assert verifier is not None
    try:
        token = sign(BUILTIN_KEY, claims("https://gateway.example.com/oauth2"))
        assert await outcome(verifier, token) == "https://gateway.example.com/oauth2|user-42"
        assert await outcome(verifier, sign(KEY_A, claims(f"{idp.url}/a"))) == (
            f"{idp.url}/a|user-42"
        )
    finally:
        await verifier.aclose()


async def test_builtin_verifier_ignored_without_builtin_entry(idp: IdP) -> None:
    settings = identity(idp, introspection=False)
    verifier = build_bearer_verifier(settings, builtin=builtin_verifier(), clock=Clock())
    assert verifier is not None
    try:
        token = sign(BUILTIN_KEY, claims("https://gateway.example.com/oauth2"))
        assert await outcome(verifier, token) == "token_issuer_unknown"
    finally:
        await verifier.aclose()


def test_issuer_configured_twice() -> None:
    with pytest.raises(ConfigError):
        BearerDispatcher([builtin_verifier(), builtin_verifier()])


async def test_missing_introspection_secret_is_a_config_error(
    idp: IdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APISHIELD_TEST_INTROSPECTION_SECRET", raising=False)
    with pytest.raises(ConfigError):
        build_bearer_verifier(identity(idp))
