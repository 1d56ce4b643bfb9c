"""JWTVerifier: every check of a bearer JWT, as the refusal a client would get (AUTH 1–11, 35).

Keys come from ``StaticKeys`` here; fetching them is ``test_jwks.py``'s subject. The clock is
fixed, so ``exp``/``nbf``/``iat`` cases do not depend on when the tests run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import Key

from apishield.errors import ConfigError, HTTPError, UnauthorizedError
from apishield.identity.jwks import KeyProvider, StaticKeys
from apishield.identity.jwt import MAX_TOKEN_BYTES, JWTVerifier, parse_jws
from apishield.pipeline.problem import render_problem
from tests.identity.idp import NOW, Clock, claims, ec_key, ed_key, rsa_key, sign, sign_raw

ISSUER = "https://login.example.com/realms/main"
CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

EC = ec_key("ec-1")
EC2 = ec_key("ec-2")
EC384 = ec_key("ec-384", "P-384", "ES384")
ED = ed_key("ed-1")
RSA = rsa_key("rsa-1", "RS256")
RSA_NO_ALG = rsa_key("rsa-any", None)
RSA512 = rsa_key("rsa-512", "RS512")  # published for RS512 only
ATTACKER = ec_key("ec-1")  # same kid as the issuer's key, different key pair
ATTACKER_OWN = ec_key("evil")
RSA_PUBLIC_PEM = RSA.public_key.public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
ALGORITHMS = ["ES256", "ES384", "RS256", "RS512", "PS256", "EdDSA"]


class CountingKeys(KeyProvider):
    """StaticKeys that records every lookup, to show a refusal came before any key work."""

    def __init__(self, *keys: Key) -> None:
        self.inner = StaticKeys(keys)
        self.calls: list[tuple[str | None, str]] = []

    async def get_key(self, kid: str | None, alg: str) -> Key | None:
        self.calls.append((kid, alg))
        return await self.inner.get_key(kid, alg)


def make_verifier(
    keys: KeyProvider | None = None, clock: Callable[[], float] | None = None, **options: Any
) -> JWTVerifier:
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "keys": keys or CountingKeys(EC, EC2, EC384, ED, RSA, RSA_NO_ALG, RSA512),
        "algorithms": ALGORITHMS,
        "audience": "orders-api",
        "clock": clock or Clock(),
    }
    settings.update(options)
    return JWTVerifier(**settings)


def good(**extra: Any) -> dict[str, Any]:
    return claims(ISSUER, **extra)


def oversized() -> str:
    return sign(EC, good(padding="x" * MAX_TOKEN_BYTES))


def tampered() -> str:
    header, payload, signature = sign(EC, good()).split(".")
    other = sign(EC, good(scope="admin")).split(".")[1]
    return f"{header}.{other}.{signature}"


# (token, verifier options, code). Every id names the AUTH line it checks.
REFUSED = [
    pytest.param(
        lambda: sign_raw(None, {"alg": "none", "typ": "at+jwt"}, good()),
        {},
        "token_invalid",
        id="AUTH-2-alg-none",
    ),
    pytest.param(
        lambda: sign_raw(None, {"alg": "None", "typ": "at+jwt"}, good()),
        {},
        "token_invalid",
        id="AUTH-2-alg-None-capitalised",
    ),
    pytest.param(
        lambda: sign_raw(RSA_PUBLIC_PEM, {"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}, good()),
        {},
        "token_invalid",
        id="AUTH-2-hs256-signed-with-rsa-public-key",
    ),
    pytest.param(
        lambda: sign(RSA, good(), alg="PS384"),
        {},
        "token_invalid",
        id="AUTH-2-alg-not-in-issuer-list",
    ),
    pytest.param(
        lambda: sign(ATTACKER, good(), jwk=ATTACKER.as_dict(private=False)),
        {},
        "token_invalid",
        id="AUTH-1-jwk-header-carries-attacker-key",
    ),
    pytest.param(
        lambda: sign(ATTACKER_OWN, good(), jku="https://evil.example/jwks.json"),
        {},
        "token_invalid",
        id="AUTH-1-jku-header-points-to-attacker-set",
    ),
    pytest.param(
        lambda: sign(ATTACKER_OWN, good(), x5u="https://evil.example/cert.pem"),
        {},
        "token_invalid",
        id="AUTH-1-x5u-header",
    ),
    pytest.param(
        lambda: sign(ATTACKER, good(), x5c=["MIIBszCCAVmgAwIBAgIUBogus"]),
        {},
        "token_invalid",
        id="AUTH-1-x5c-header",
    ),
    pytest.param(
        lambda: sign(EC, claims("https://evil.example/realms/main")),
        {},
        "token_invalid",
        id="AUTH-1-wrong-iss",
    ),
    pytest.param(
        lambda: sign(EC, claims(ISSUER + "/")),
        {},
        "token_invalid",
        id="AUTH-1-iss-not-exact",
    ),
    pytest.param(lambda: sign(EC, good(iss=None)), {}, "token_invalid", id="AUTH-1-no-iss"),
    pytest.param(
        lambda: sign(EC, good(), kid="nope"), {}, "token_invalid", id="AUTH-3-unknown-kid"
    ),
    pytest.param(
        lambda: sign(EC, good(), kid="rsa-1"),
        {},
        "token_invalid",
        id="AUTH-3-kid-of-key-of-other-type",
    ),
    pytest.param(
        lambda: sign(RSA512, good(), alg="RS256"),
        {},
        "token_invalid",
        id="AUTH-3-jwk-alg-differs-from-header",
    ),
    pytest.param(
        lambda: sign(EC384, good(), alg="ES256"),
        {},
        "token_invalid",
        id="AUTH-3-curve-does-not-fit-alg",
    ),
    pytest.param(
        lambda: sign(EC, good(), kid=None), {}, "token_invalid", id="AUTH-3-no-kid-several-keys"
    ),
    pytest.param(tampered, {}, "token_invalid", id="AUTH-3-payload-tampered"),
    pytest.param(
        lambda: sign(ATTACKER, good()), {}, "token_invalid", id="AUTH-3-signed-by-other-key"
    ),
    pytest.param(
        lambda: sign_raw(
            EC, {"alg": "ES256", "typ": "at+jwt", "kid": "ec-1", "crit": ["exp"], "exp": 1}, good()
        ),
        {},
        "token_invalid",
        id="AUTH-4-crit-unknown-extension",
    ),
    pytest.param(
        lambda: sign_raw(
            EC,
            {"alg": "ES256", "typ": "at+jwt", "kid": "ec-1", "crit": ["b64"], "b64": False},
            good(),
        ),
        {},
        "token_invalid",
        id="AUTH-4-crit-b64-unencoded-payload",
    ),
    pytest.param(
        lambda: sign(EC, good(iat=int(NOW) - 3600, exp=int(NOW) - 3000)),
        {},
        "token_expired",
        id="AUTH-5-expired",
    ),
    pytest.param(
        lambda: sign(EC, good(iat=int(NOW) - 600, exp=int(NOW) - 61)),
        {},
        "token_expired",
        id="AUTH-5-expired-beyond-leeway",
    ),
    pytest.param(
        lambda: sign(EC, good(iat=int(NOW) - 600, exp=int(NOW) - 1)),
        {"leeway": 0},
        "token_expired",
        id="AUTH-5-leeway-configurable",
    ),
    pytest.param(lambda: sign(EC, good(exp=None)), {}, "token_invalid", id="AUTH-5-no-exp"),
    pytest.param(
        lambda: sign(EC, good(exp=str(int(NOW) + 600))), {}, "token_invalid", id="AUTH-5-exp-string"
    ),
    pytest.param(
        lambda: sign(EC, good(nbf=int(NOW) + 120)), {}, "token_invalid", id="AUTH-5-nbf-in-future"
    ),
    pytest.param(
        lambda: sign(EC, good(iat=int(NOW) + 120, exp=int(NOW) + 700)),
        {},
        "token_invalid",
        id="AUTH-5-iat-in-future",
    ),
    pytest.param(lambda: sign(EC, good(iat=None)), {}, "token_invalid", id="AUTH-5-no-iat"),
    pytest.param(
        lambda: sign(EC, good(lifetime=3601)), {}, "token_invalid", id="AUTH-5-lifetime-over-1h"
    ),
    pytest.param(
        lambda: sign(EC, good(lifetime=900)),
        {"max_lifetime": 600},
        "token_invalid",
        id="AUTH-5-lifetime-over-configured-max",
    ),
    pytest.param(
        lambda: sign(EC, good(aud="billing-api")),
        {},
        "token_audience_mismatch",
        id="AUTH-6-wrong-aud",
    ),
    pytest.param(
        lambda: sign(EC, good(aud=["billing-api", "account"])),
        {},
        "token_audience_mismatch",
        id="AUTH-6-aud-array-without-ours",
    ),
    pytest.param(lambda: sign(EC, good(aud=None)), {}, "token_invalid", id="AUTH-6-no-aud"),
    pytest.param(lambda: sign(EC, good(aud=[])), {}, "token_invalid", id="AUTH-6-empty-aud"),
    pytest.param(lambda: sign(EC, good(aud=7)), {}, "token_invalid", id="AUTH-6-aud-not-a-string"),
    pytest.param(
        lambda: sign(EC, good(aud=["orders-api", 7])),
        {},
        "token_invalid",
        id="AUTH-6-aud-array-with-a-number",
    ),
    pytest.param(
        lambda: sign(EC, good(), typ="JWT"),
        {},
        "token_invalid",
        id="AUTH-7-typ-JWT-refused-by-default",
    ),
    pytest.param(lambda: sign(EC, good(), typ=None), {}, "token_invalid", id="AUTH-7-typ-missing"),
    pytest.param(
        lambda: sign(EC, good(), typ="dpop+jwt"),
        {"typ": "not-id-token"},
        "token_invalid",
        id="AUTH-7-not-id-token-mode-refuses-other-types",
    ),
    pytest.param(
        lambda: sign(EC, good(nonce="n-0S6_WzA2Mj"), typ="JWT"),
        {"typ": "not-id-token"},
        "token_invalid",
        id="AUTH-35-id-token-with-nonce",
    ),
    pytest.param(
        lambda: sign(EC, good(at_hash="77QmUPtjPfzWtF2AnpK9RQ"), typ="JWT"),
        {"typ": "not-id-token"},
        "token_invalid",
        id="AUTH-35-id-token-with-at_hash",
    ),
    pytest.param(
        lambda: sign(
            EC, good(aud="orders-api", azp="orders-api", scope=None, client_id=None), typ="JWT"
        ),
        {"typ": "not-id-token"},
        "token_invalid",
        id="AUTH-35-id-token-audience-is-its-client",
    ),
    pytest.param(
        lambda: sign(EC, good(typ="ID"), typ="JWT"),
        {"typ": "not-id-token"},
        "token_invalid",
        id="AUTH-35-keycloak-id-token",
    ),
    pytest.param(
        lambda: sign(EC, good(typ="Refresh"), typ="JWT"),
        {"typ": "not-id-token"},
        "token_invalid",
        id="AUTH-35-keycloak-refresh-token",
    ),
    pytest.param(
        lambda: sign(EC, good(typ="Offline"), typ="JWT"),
        {"typ": "not-id-token"},
        "token_invalid",
        id="AUTH-35-keycloak-offline-token",
    ),
    pytest.param(
        lambda: sign(EC, good(token_use="id")),
        {},
        "token_invalid",
        id="AUTH-35-cognito-id-token",
    ),
    pytest.param(
        lambda: sign(EC, good(nonce="abc"), typ="JWT"),
        {},
        "token_invalid",
        id="AUTH-35-id-token-under-at+jwt-policy",
    ),
    pytest.param(oversized, {}, "token_too_large", id="AUTH-8-over-8KiB"),
    pytest.param(lambda: sign(EC, good(sub=None)), {}, "token_invalid", id="AUTH-10-no-sub"),
    pytest.param(lambda: sign(EC, good(sub="")), {}, "token_invalid", id="AUTH-10-empty-sub"),
    pytest.param(
        lambda: sign(EC, good(scope=42)), {}, "token_invalid", id="AUTH-10-scope-malformed"
    ),
    pytest.param(
        lambda: sign(EC, good(realm_access={"roles": {"admin": True}})),
        {"roles_claim": "realm_access.roles"},
        "token_invalid",
        id="AUTH-10-roles-malformed",
    ),
    pytest.param(lambda: "opaque-token-value", {}, "token_invalid", id="AUTH-11-not-a-jws"),
    pytest.param(lambda: "a.b.c", {}, "token_invalid", id="AUTH-11-segments-not-json"),
    pytest.param(
        lambda: sign_raw(EC, '{"alg":"ES256","typ":"at+jwt","kid":"ec-1","alg":"none"}', good()),
        {},
        "token_invalid",
        id="AUTH-11-duplicate-header-member",
    ),
    pytest.param(lambda: sign(EC, good()) + "é", {}, "token_invalid", id="AUTH-11-not-ascii"),
    pytest.param(lambda: sign(EC, good()) + "=", {}, "token_invalid", id="AUTH-11-padding"),
]


@pytest.mark.parametrize(("make_token", "options", "code"), REFUSED)
async def test_jwt_refused(
    make_token: Callable[[], str], options: dict[str, Any], code: str
) -> None:
    verifier = make_verifier(**options)
    with pytest.raises(UnauthorizedError) as caught:
        await verifier.verify_bearer(make_token())
    error = caught.value
    assert (error.status, error.code) == (401, code)
    assert error.headers == CHALLENGE  # AUTH 11: RFC 6750 §3.1 challenge
    assert error.detail is None  # nothing beyond the code
    assert error.__cause__ is None or not isinstance(error.__cause__, HTTPError)


# Refusals decided on the header alone: no key is ever looked up.
BEFORE_KEY_WORK = [
    pytest.param(
        lambda: sign_raw(None, {"alg": "none", "typ": "at+jwt"}, good()), id="AUTH-2-alg-none"
    ),
    pytest.param(
        lambda: sign_raw(RSA_PUBLIC_PEM, {"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}, good()),
        id="AUTH-2-hs256-signed-with-rsa-public-key",
    ),
    pytest.param(
        lambda: sign_raw(
            EC, {"alg": "ES256", "typ": "at+jwt", "kid": "ec-1", "crit": ["x"], "x": 1}, good()
        ),
        id="AUTH-4-crit",
    ),
    pytest.param(lambda: sign(EC, good(), typ="JWT"), id="AUTH-7-typ-JWT"),
    pytest.param(oversized, id="AUTH-8-over-8KiB"),
]


@pytest.mark.parametrize("make_token", BEFORE_KEY_WORK)
async def test_jwt_header_refused_before_key_lookup(make_token: Callable[[], str]) -> None:
    keys = CountingKeys(EC, RSA)
    with pytest.raises(UnauthorizedError):
        await make_verifier(keys).verify_bearer(make_token())
    assert keys.calls == []


async def test_jwt_principal_from_claims() -> None:
    """AUTH 10: (iss, sub), scopes from `scope`, roles from the claim path, client, jti, exp."""
    token = sign(
        EC,
        good(resource_access={"orders": {"roles": ["clerk", "auditor"]}}, client_id="web-app"),
    )
    principal = await make_verifier(roles_claim="resource_access.orders.roles").verify_bearer(token)
    assert principal.issuer == ISSUER
    assert principal.subject == "user-42"
    assert principal.key == f"{ISSUER}|user-42"
    assert principal.kind == "jwt"
    assert principal.scopes == {"orders:read", "orders:write"}
    assert principal.roles == {"clerk", "auditor"}
    assert principal.client_id == "web-app"
    assert principal.credential_id == "jti-1"
    assert principal.expires_at == NOW + 600
    assert principal.claims["sub"] == "user-42"


@pytest.mark.parametrize(
    ("extra", "scopes", "client_id"),
    [
        pytest.param(
            {"scope": None, "scp": ["a", "b"]}, {"a", "b"}, "web-app", id="AUTH-10-scp-array"
        ),
        pytest.param({"scope": None, "scp": "a b"}, {"a", "b"}, "web-app", id="AUTH-10-scp-string"),
        pytest.param({"scope": None}, set(), "web-app", id="AUTH-10-no-scope"),
        pytest.param(
            {"client_id": None, "azp": "spa"},
            {"orders:read", "orders:write"},
            "spa",
            id="AUTH-10-azp",
        ),
    ],
)
async def test_jwt_principal_variants(
    extra: dict[str, Any], scopes: set[str], client_id: str
) -> None:
    principal = await make_verifier().verify_bearer(sign(EC, good(**extra)))
    assert principal.scopes == scopes
    assert principal.client_id == client_id


async def test_jwt_roles_absent_means_none() -> None:
    principal = await make_verifier(roles_claim="realm_access.roles").verify_bearer(
        sign(EC, good())
    )
    assert principal.roles == frozenset()


ACCEPTED = [
    pytest.param(lambda: sign(EC, good()), {}, id="AUTH-3-ES256"),
    pytest.param(lambda: sign(EC384, good()), {}, id="AUTH-3-ES384"),
    pytest.param(lambda: sign(RSA, good()), {}, id="AUTH-3-RS256"),
    pytest.param(
        lambda: sign(RSA_NO_ALG, good(), alg="PS256"), {}, id="AUTH-3-PS256-key-without-alg"
    ),
    pytest.param(lambda: sign(RSA512, good()), {}, id="AUTH-3-RS512"),
    pytest.param(lambda: sign(ED, good()), {}, id="AUTH-3-EdDSA"),
    pytest.param(
        lambda: sign(EC, good(iat=int(NOW) - 600, exp=int(NOW) - 30)),
        {},
        id="AUTH-5-exp-within-leeway",
    ),
    pytest.param(
        lambda: sign(EC, good(nbf=int(NOW) + 30, iat=int(NOW) + 30, exp=int(NOW) + 600)),
        {},
        id="AUTH-5-nbf-iat-within-leeway",
    ),
    pytest.param(lambda: sign(EC, good(lifetime=3600)), {}, id="AUTH-5-lifetime-exactly-max"),
    pytest.param(lambda: sign(EC, good(aud=["account", "orders-api"])), {}, id="AUTH-6-aud-array"),
    pytest.param(
        lambda: sign(EC, good(aud="inventory-api")),
        {"audience": ["orders-api", "inventory-api"]},
        id="AUTH-6-one-of-configured-audiences",
    ),
    pytest.param(
        lambda: sign(EC, good(), typ="application/at+jwt"), {}, id="AUTH-7-application-at+jwt"
    ),
    pytest.param(lambda: sign(EC, good(), typ="AT+JWT"), {}, id="AUTH-7-typ-case-insensitive"),
    pytest.param(
        lambda: sign(
            EC,
            good(typ="Bearer", azp="web-app", aud=["orders-api", "account"], client_id=None),
            typ="JWT",
        ),
        {"typ": "not-id-token"},
        id="AUTH-7-not-id-token-accepts-keycloak-access-token",
    ),
    pytest.param(
        lambda: sign(EC, good(), typ=None),
        {"typ": "not-id-token"},
        id="AUTH-7-not-id-token-typ-absent",
    ),
    pytest.param(
        lambda: sign(
            EC, good(), jku="https://evil.example/jwks.json", x5u="https://evil.example/c"
        ),
        {},
        id="AUTH-1-header-key-urls-ignored",
    ),
    pytest.param(lambda: sign(EC, good(), vendor="x"), {}, id="AUTH-4-unknown-header-without-crit"),
    pytest.param(
        lambda: sign(EC, good(), kid=None),
        {"keys": StaticKeys([EC, RSA])},
        id="AUTH-3-no-kid-one-fitting-key",
    ),
]


@pytest.mark.parametrize(("make_token", "options"), ACCEPTED)
async def test_jwt_accepted(make_token: Callable[[], str], options: dict[str, Any]) -> None:
    principal = await make_verifier(**options).verify_bearer(make_token())
    assert principal.subject == "user-42"


def test_jwt_config_refuses_symmetric_algorithms() -> None:
    """AUTH 2: an external issuer's list may hold asymmetric algorithms only."""
    for algorithms in (["HS256"], ["RS256", "none"], []):
        with pytest.raises(ConfigError):
            make_verifier(algorithms=algorithms)
    with pytest.raises(ConfigError):
        make_verifier(audience=[])


async def test_jwt_expiry_follows_the_clock() -> None:
    """AUTH 5: the same token passes, then fails once the clock passes exp + leeway."""
    clock = Clock()
    verifier = make_verifier(clock=clock)
    token = sign(EC, good(lifetime=300))
    await verifier.verify_bearer(token)
    clock.advance(300 + 60)
    with pytest.raises(UnauthorizedError) as caught:
        await verifier.verify_bearer(token)
    assert caught.value.code == "token_expired"


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        pytest.param(
            lambda: sign(EC, good(iat=int(NOW) - 4000, exp=int(NOW) - 3400)),
            "token_expired",
            id="AUTH-11-expired",
        ),
        pytest.param(lambda: sign(ATTACKER, good()), "token_invalid", id="AUTH-11-bad-signature"),
    ],
)
async def test_jwt_refusal_as_the_client_sees_it(make_token: Callable[[], str], code: str) -> None:
    """AUTH 11: the problem response says the code and nothing else; no library message."""
    token = make_token()
    with pytest.raises(UnauthorizedError) as caught:
        await make_verifier().verify_bearer(token)
    status, headers, body = render_problem(caught.value, "req-1")
    document = json.loads(body)
    assert status == 401
    assert (b"www-authenticate", b'Bearer error="invalid_token"') in headers
    assert document == {
        "type": f"urn:apishield:problem:{code}",
        "title": "Unauthorized",
        "status": 401,
        "code": code,
        "request_id": "req-1",
    }
    assert token not in body.decode()


def test_parse_jws_reads_without_verifying() -> None:
    token = sign(EC, good())
    parsed = parse_jws(token)
    assert parsed is not None
    assert parsed.header["kid"] == "ec-1"
    assert parsed.claims["iss"] == ISSUER
    assert parse_jws("opaque") is None
    assert parse_jws(token + ".x") is None


ORDERS = "https://api.example.com/orders"
BILLING = "https://api.example.com/billing"

# (aud claim, the route's resource identifier or None, accepted?). A route's `resource`
# replaces the issuer's audience: it must be in `aud`, and the issuer's audience alone does not do.
ROUTE_AUDIENCE = [
    pytest.param(ORDERS, ORDERS, True, id="AUTH-6-route-audience-string"),
    pytest.param([BILLING, ORDERS], ORDERS, True, id="AUTH-6-route-audience-in-array"),
    pytest.param(BILLING, ORDERS, False, id="AUTH-6-route-audience-other-resource"),
    pytest.param([BILLING, "orders-api"], ORDERS, False, id="AUTH-6-route-audience-array-without"),
    pytest.param("orders-api", ORDERS, False, id="AUTH-6-route-audience-issuer-default-not-enough"),
    pytest.param(ORDERS + "/", ORDERS, False, id="AUTH-6-route-audience-exact-match"),
    pytest.param(ORDERS, None, False, id="AUTH-6-route-without-resource-needs-issuer-audience"),
    pytest.param([ORDERS, "orders-api"], None, True, id="AUTH-6-route-without-resource-default"),
]


@pytest.mark.parametrize(("aud", "resource", "accepted"), ROUTE_AUDIENCE)
async def test_jwt_route_audience(aud: Any, resource: str | None, accepted: bool) -> None:
    verifier = make_verifier()
    token = sign(EC, good(aud=aud))
    if accepted:
        assert (await verifier.verify_bearer(token, resource=resource)).subject == "user-42"
        return
    with pytest.raises(UnauthorizedError) as caught:
        await verifier.verify_bearer(token, resource=resource)
    error = caught.value
    assert (error.status, error.code) == (401, "token_audience_mismatch")
    assert error.headers == CHALLENGE
    assert error.detail is None  # AUTH 11: which audience was expected is not told


@pytest.mark.parametrize(
    "audience",
    [
        pytest.param("", id="AUTH-6-blank-audience"),
        pytest.param([""], id="AUTH-6-blank-audience-in-list"),
        pytest.param(["orders-api", " "], id="AUTH-6-space-audience-in-list"),
    ],
)
def test_jwt_config_refuses_a_blank_audience(audience: Any) -> None:
    # With a blank audience configured, a token with `aud: [""]` would be accepted.
    with pytest.raises(ConfigError, match="audience cannot be blank"):
        make_verifier(audience=audience)
