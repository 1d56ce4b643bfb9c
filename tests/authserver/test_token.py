"""The token endpoint: grants (AUTH 13), client authentication (AUTH 17), scope and resource
(AUTH 18), access tokens and responses (AUTH 19-21), on SQLite and PostgreSQL. Codes and PKCE
are in ``test_codes.py``, refresh tokens in ``test_refresh.py``."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from apishield.authserver import ServerConfig
from apishield.errors import ConfigError, HTTPError
from apishield.identity.jwt import parse_jws
from apishield.identity.settings import BuiltinIssuer
from apishield.store.tables import users
from tests.authserver.conftest import (
    API,
    ISSUER,
    OTHER_API,
    PASSWORD,
    Client,
    Harness,
    basic,
    error_of,
)

Scenario = Callable[[Harness], Awaitable[None]]


# -- AUTH 13, 20: grants ---------------------------------------------------------------------


async def client_credentials(h: Harness) -> None:
    machine = await h.machine()
    response = await h.token(machine, {"grant_type": "client_credentials"})
    assert response.status_code == 200
    document = response.json()
    assert document["token_type"] == "Bearer"
    assert "refresh_token" not in document  # RFC 6749 §4.4.3
    principal = await h.verify(document["access_token"])
    assert principal.subject == f"client:{machine.id}"
    assert principal.scopes == {"orders:read", "orders:write"}


async def cc_subject_cannot_collide(h: Harness) -> None:
    machine = await h.machine()
    user = await h.user()
    app = await h.client()
    machine_sub = (
        await h.verify(
            (await h.token(machine, {"grant_type": "client_credentials"})).json()["access_token"]
        )
    ).subject
    user_sub = (await h.verify((await h.tokens(app))["access_token"])).subject
    assert user_sub == user.id and re.fullmatch(r"[0-9a-f]+", user_sub)
    assert machine_sub.startswith("client:") and ":" not in user_sub


async def code_and_refresh(h: Harness) -> None:
    app = await h.client()
    await h.user()
    tokens = await h.tokens(app)
    assert {"access_token", "refresh_token", "expires_in", "scope"} <= set(tokens)
    renewed = await h.refresh(app, tokens["refresh_token"])
    assert renewed.status_code == 200


async def code_client_without_refresh_grant(h: Harness) -> None:
    app = await h.client(grant_types=("authorization_code",))
    await h.user()
    assert "refresh_token" not in await h.tokens(app)


async def grant_not_registered(h: Harness) -> None:
    app = await h.client()
    response = await h.token(app, {"grant_type": "client_credentials"})
    assert response.status_code == 400 and error_of(response) == "unauthorized_client"


@pytest.mark.parametrize(
    ("grant", "error"),
    [
        pytest.param("password", "unsupported_grant_type", id="AUTH-13-no-password-grant"),
        pytest.param("implicit", "unsupported_grant_type", id="AUTH-13-no-implicit-grant"),
        pytest.param(
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "unsupported_grant_type",
            id="AUTH-13-no-jwt-bearer-grant",
        ),
        pytest.param(None, "invalid_request", id="AUTH-13-grant-type-missing"),
    ],
)
async def test_grant_refused(harness: Harness, grant: str | None, error: str) -> None:
    app = await harness.client(grant_types=("client_credentials",))
    data = {"username": "ada", "password": PASSWORD}
    if grant is not None:
        data["grant_type"] = grant
    response = await harness.token(app, data)
    assert response.status_code == 400 and error_of(response) == error


# -- AUTH 17: client authentication ----------------------------------------------------------


async def secret_strength_and_storage(h: Harness) -> None:
    machine = await h.machine()
    assert machine.secret is not None and len(machine.secret) >= 22  # ≥ 128 bits
    stored = (await h.store.clients.get(machine.id)).secret_hash  # type: ignore[union-attr]
    assert stored is not None and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert machine.secret not in stored


async def client_secret_post(h: Harness) -> None:
    machine = await h.machine()
    response = await h.post(
        "/oauth2/token",
        {
            "grant_type": "client_credentials",
            "client_id": machine.id,
            "client_secret": machine.secret,
        },
    )
    assert response.status_code == 200


async def client_secret_wrong(h: Harness) -> None:
    machine = await h.machine()
    for headers in (basic(machine.id, "wrong" * 9), basic("nobody", machine.secret or "")):
        response = await h.post(
            "/oauth2/token", {"grant_type": "client_credentials"}, headers=headers
        )
        assert response.status_code == 401 and error_of(response) == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic ")


async def two_client_methods(h: Harness) -> None:
    machine = await h.machine()
    response = await h.post(
        "/oauth2/token",
        {"grant_type": "client_credentials", "client_secret": machine.secret},
        headers=machine.auth(),
    )
    assert response.status_code == 400 and error_of(response) == "invalid_request"


async def no_client_authentication(h: Harness) -> None:
    response = await h.post("/oauth2/token", {"grant_type": "client_credentials"})
    assert response.status_code == 401 and error_of(response) == "invalid_client"


async def public_client_code_flow(h: Harness) -> None:
    app = await h.client(auth_method="none")
    assert app.secret is None
    await h.user()
    tokens = await h.tokens(app)
    assert (await h.refresh(app, tokens["refresh_token"])).status_code == 200


def assertion(key: ECKey, client_id: str, now: float, **claims: Any) -> str:
    body = {"iss": client_id, "sub": client_id, "aud": ISSUER, "exp": int(now) + 60}
    body["jti"] = f"j-{now}-{id(claims)}"
    body.update(claims)
    return jose_jwt.encode({"alg": "ES256", "kid": "k1"}, body, key, algorithms=["ES256"])


async def _jwt_client(h: Harness) -> tuple[Client, ECKey]:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    machine = await h.machine(
        auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]}
    )
    return machine, key


def jwt_form(value: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": value,
        **extra,
    }


async def private_key_jwt(h: Harness) -> None:
    machine, key = await _jwt_client(h)
    signed = assertion(key, machine.id, h.unix())
    h.secrets_seen.append(signed)
    first = await h.post("/oauth2/token", jwt_form(signed))
    assert first.status_code == 200, first.text
    replay = await h.post("/oauth2/token", jwt_form(signed))  # RFC 7523 §3 item 7
    assert replay.status_code == 401 and error_of(replay) == "invalid_client"
    endpoint_aud = assertion(key, machine.id, h.unix(), aud=f"{ISSUER}/oauth2/token", jti="e")
    assert (await h.post("/oauth2/token", jwt_form(endpoint_aud))).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "https://elsewhere.example"}, id="AUTH-17-assertion-wrong-aud"),
        pytest.param({"exp": 1}, id="AUTH-17-assertion-expired"),
        pytest.param({"exp": 4_000_000_000}, id="AUTH-17-assertion-too-long"),
        pytest.param({"iss": "someone-else"}, id="AUTH-17-assertion-iss-not-client"),
        pytest.param({"jti": None}, id="AUTH-17-assertion-without-jti"),
        pytest.param({"foreign_key": True}, id="AUTH-17-assertion-unregistered-key"),
    ],
)
async def test_private_key_jwt_refused(harness: Harness, claims: dict[str, Any]) -> None:
    claims = dict(claims)  # the table is shared by both backends' runs
    machine, key = await _jwt_client(harness)
    if claims.pop("foreign_key", False):
        key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    if claims.get("jti", "") is None:
        body = {
            "iss": machine.id,
            "sub": machine.id,
            "aud": ISSUER,
            "exp": int(harness.unix()) + 60,
        }
        signed = jose_jwt.encode({"alg": "ES256", "kid": "k1"}, body, key, algorithms=["ES256"])
    else:
        signed = assertion(key, machine.id, harness.unix(), **claims)
    response = await harness.post("/oauth2/token", jwt_form(signed))
    assert response.status_code == 401 and error_of(response) == "invalid_client"


async def password_rehash_on_login(h: Harness) -> None:
    from argon2 import PasswordHasher, Type

    user = await h.user()
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    async with h.store.begin() as conn:
        await conn.execute(users.update().where(users.c.id == user.id).values(password_hash=weak))
    app = await h.client()
    await h.code(app)
    again = await h.store.users.get(user.id)
    assert again is not None and again.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


# -- AUTH 18: scopes and resources -----------------------------------------------------------


async def scope_subset(h: Harness) -> None:
    machine = await h.machine()
    narrow = await h.token(machine, {"grant_type": "client_credentials", "scope": "orders:read"})
    assert narrow.status_code == 200 and narrow.json()["scope"] == "orders:read"
    wide = await h.token(
        machine, {"grant_type": "client_credentials", "scope": "orders:read admin"}
    )
    assert wide.status_code == 400 and error_of(wide) == "invalid_scope"


async def resource_becomes_aud(h: Harness) -> None:
    machine = await h.machine(resources=(API, OTHER_API))
    one = await h.token(machine, {"grant_type": "client_credentials", "resource": API})
    claims = parse_jws(one.json()["access_token"]).claims  # type: ignore[union-attr]
    assert claims["aud"] == API
    both = await h.token(machine, {"grant_type": "client_credentials"})
    assert parse_jws(both.json()["access_token"]).claims["aud"] == [API, OTHER_API]  # type: ignore[union-attr]
    unknown = await h.token(
        machine, {"grant_type": "client_credentials", "resource": "https://evil.example.com"}
    )
    assert unknown.status_code == 400 and error_of(unknown) == "invalid_target"


async def resource_required(h: Harness) -> None:
    machine = await h.machine(resources=())
    response = await h.token(machine, {"grant_type": "client_credentials"})
    assert response.status_code == 400 and error_of(response) == "invalid_target"


# -- AUTH 19, 21: access tokens and responses ------------------------------------------------


async def access_token_profile(h: Harness) -> None:
    app = await h.client()
    user = await h.user(roles=("support",))
    token = (await h.tokens(app))["access_token"]
    parsed = parse_jws(token)
    assert parsed is not None
    assert parsed.header["typ"] == "at+jwt" and parsed.header["alg"] == "ES256"
    assert isinstance(parsed.header["kid"], str)
    claims = parsed.claims
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "roles"}
    assert claims["iss"] == ISSUER and claims["sub"] == user.id and claims["aud"] == API
    assert claims["exp"] - claims["iat"] == 600 and claims["client_id"] == app.id
    principal = await h.verify(token)
    assert principal.roles == {"support"} and principal.scopes == {"orders:read", "orders:write"}


async def access_token_lifetime(h: Harness) -> None:
    config = ServerConfig.from_settings(BuiltinIssuer(builtin=True, access_token_ttl=1800), ISSUER)
    assert config.access_token_ttl == 1800
    with pytest.raises(ConfigError):
        ServerConfig(issuer=ISSUER, access_token_ttl=3601)
    machine = await h.machine()
    token = (await h.token(machine, {"grant_type": "client_credentials"})).json()["access_token"]
    await h.verify(token)
    h.clock.advance(600 + 60 + 1)  # the lifetime, and the verifiers' leeway
    with pytest.raises(HTTPError) as caught:
        await h.verify(token)
    assert caught.value.code == "token_expired"


async def no_store_headers(h: Harness) -> None:
    machine = await h.machine()
    ok = await h.token(machine, {"grant_type": "client_credentials"})
    refused = await h.token(machine, {"grant_type": "password"})
    for response in (ok, refused):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


async def form_encoded_only(h: Harness) -> None:
    machine = await h.machine()
    response = await h.http.post(
        "/oauth2/token", json={"grant_type": "client_credentials"}, headers=machine.auth()
    )
    assert response.status_code == 415
    assert (await h.http.get("/oauth2/token")).status_code == 405
    repeated = await h.http.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials&scope=orders:read&scope=orders:write",
        headers={**machine.auth(), "content-type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400 and error_of(repeated) == "invalid_request"


SCENARIOS = [
    pytest.param(client_credentials, id="AUTH-13-client-credentials"),
    pytest.param(code_and_refresh, id="AUTH-13-code-and-refresh"),
    pytest.param(grant_not_registered, id="AUTH-13-grant-not-registered"),
    pytest.param(code_client_without_refresh_grant, id="AUTH-13-no-refresh-unless-registered"),
    pytest.param(secret_strength_and_storage, id="AUTH-17-secret-argon2id"),
    pytest.param(client_secret_post, id="AUTH-17-client-secret-post"),
    pytest.param(client_secret_wrong, id="AUTH-17-wrong-secret-or-client"),
    pytest.param(two_client_methods, id="AUTH-17-one-method-per-request"),
    pytest.param(no_client_authentication, id="AUTH-17-no-credentials"),
    pytest.param(public_client_code_flow, id="AUTH-17-public-client-pkce"),
    pytest.param(private_key_jwt, id="AUTH-17-private-key-jwt-and-replay"),
    pytest.param(password_rehash_on_login, id="AUTH-17-password-rehash"),
    pytest.param(scope_subset, id="AUTH-18-scope-subset"),
    pytest.param(resource_becomes_aud, id="AUTH-18-resource-becomes-aud"),
    pytest.param(resource_required, id="AUTH-18-no-resource-no-token"),
    pytest.param(access_token_profile, id="AUTH-19-at-jwt-es256-claims"),
    pytest.param(access_token_lifetime, id="AUTH-19-lifetime"),
    pytest.param(client_credentials, id="AUTH-20-no-refresh-token"),
    pytest.param(cc_subject_cannot_collide, id="AUTH-20-sub-cannot-collide"),
    pytest.param(no_store_headers, id="AUTH-21-no-store"),
    pytest.param(form_encoded_only, id="AUTH-21-form-encoded-only"),
]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_token(harness: Harness, scenario: Scenario) -> None:
    await scenario(harness)
