"""Revocation (RFC 7009, AUTH 26), introspection (RFC 7662, AUTH 27), and revoking every grant
of a disabled user or a deleted client (AUTH 28), through the endpoints, on both backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from apishield.authserver import ServerConfig
from apishield.identity.jwt import parse_jws
from apishield.store.tables import access_tokens
from tests.authserver.conftest import ISSUER, Client, Harness, basic, revoked

Scenario = Callable[[Harness], Awaitable[None]]
RESOURCE_SERVER = "resource-server"


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(issuer=ISSUER, introspectors=frozenset({RESOURCE_SERVER}))


async def revoke(h: Harness, client: Client, token: str, **extra: str) -> Any:
    headers = client.auth() if client.secret else {}
    data = {"token": token, **extra}
    if not client.secret:
        data["client_id"] = client.id
    return await h.post("/oauth2/revoke", data, headers=headers)


async def introspect(h: Harness, client: Client, token: str, **extra: str) -> dict[str, Any]:
    response = await h.post("/oauth2/introspect", {"token": token, **extra}, headers=client.auth())
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    document: dict[str, Any] = response.json()
    return document


async def resource_server(h: Harness) -> Client:
    record, secret = await h.store.clients.register(
        name="Orders API", grant_types=["client_credentials"], client_id=RESOURCE_SERVER
    )
    return Client(record, secret)


async def user_grant(h: Harness, app: Client | None = None) -> tuple[Client, dict[str, Any]]:
    app = app or await h.client()
    if await h.store.users.get_by_username("ada") is None:
        await h.user()
    return app, await h.tokens(app)


# -- AUTH 26 ---------------------------------------------------------------------------------


async def revocation_needs_client_auth(h: Harness) -> None:
    app, tokens = await user_grant(h)
    anonymous = await h.post("/oauth2/revoke", {"token": tokens["refresh_token"]})
    assert anonymous.status_code == 401 and anonymous.json() == {"error": "invalid_client"}
    wrong = await h.post(
        "/oauth2/revoke", {"token": tokens["refresh_token"]}, headers=basic(app.id, "x" * 43)
    )
    assert wrong.status_code == 401
    assert (await h.refresh(app, tokens["refresh_token"])).status_code == 200


async def unknown_token_200(h: Harness) -> None:
    app = await h.client()
    response = await revoke(h, app, "not-a-token-we-ever-issued")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["cache-control"] == "no-store"


async def refresh_revocation_kills_grant(h: Harness) -> None:
    app, tokens = await user_grant(h)
    rotated = (await h.refresh(app, tokens["refresh_token"])).json()
    response = await revoke(h, app, rotated["refresh_token"], token_type_hint="refresh_token")
    assert response.status_code == 200
    dead = await h.refresh(app, rotated["refresh_token"])
    assert dead.status_code == 400 and dead.json() == {"error": "invalid_grant"}
    assert await revoked(h, tokens["access_token"])
    assert await revoked(h, rotated["access_token"])


async def access_token_denylist(h: Harness) -> None:
    app, tokens = await user_grant(h)
    # a wrong hint is only a hint (RFC 7009 §2.1)
    response = await revoke(h, app, tokens["access_token"], token_type_hint="refresh_token")
    assert response.status_code == 200
    assert await revoked(h, tokens["access_token"])
    claims = parse_jws(tokens["access_token"]).claims  # type: ignore[union-attr]
    async with h.store.connect() as conn:
        row = (
            (await conn.execute(select(access_tokens).where(access_tokens.c.jti == claims["jti"])))
            .mappings()
            .one()
        )
    assert row["revoked_at"] is not None and int(row["expires_at"].timestamp()) == claims["exp"]
    # the grant itself lives on
    assert (await h.refresh(app, tokens["refresh_token"])).status_code == 200


async def other_clients_token(h: Harness) -> None:
    app, tokens = await user_grant(h)
    other = await h.client(name="Other")
    for token in (tokens["refresh_token"], tokens["access_token"]):
        response = await revoke(h, other, token)
        assert response.status_code == 400 and response.json() == {"error": "unauthorized_client"}
    assert not await revoked(h, tokens["access_token"])
    assert (await h.refresh(app, tokens["refresh_token"])).status_code == 200


async def public_client_revokes(h: Harness) -> None:
    app, tokens = await user_grant(h, await h.client(auth_method="none"))
    assert (await revoke(h, app, tokens["refresh_token"])).status_code == 200
    assert (await h.refresh(app, tokens["refresh_token"])).status_code == 400


# -- AUTH 27 ---------------------------------------------------------------------------------


async def introspection_needs_confidential_client(h: Harness) -> None:
    app, tokens = await user_grant(h, await h.client(auth_method="none"))
    public = await h.post(
        "/oauth2/introspect", {"token": tokens["access_token"], "client_id": app.id}
    )
    assert public.status_code == 401 and public.json() == {"error": "invalid_client"}
    anonymous = await h.post("/oauth2/introspect", {"token": tokens["access_token"]})
    assert anonymous.status_code == 401


async def introspect_active(h: Harness) -> None:
    app, tokens = await user_grant(h)
    user = await h.store.users.get_by_username("ada")
    assert user is not None
    access = await introspect(h, app, tokens["access_token"])
    assert access["active"] is True and access["client_id"] == app.id
    assert access["sub"] == user.id and access["iss"] == ISSUER and access["token_type"] == "Bearer"
    assert access["scope"] == "orders:read orders:write"
    refresh = await introspect(h, app, tokens["refresh_token"], token_type_hint="refresh_token")
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    assert refresh["sub"] == user.id and refresh["client_id"] == app.id


async def introspect_inactive(h: Harness) -> None:
    app, tokens = await user_grant(h)
    other = await h.client(name="Other")
    rotated = (await h.refresh(app, tokens["refresh_token"])).json()
    expired = (await h.tokens(app))["access_token"]
    revoked_at = rotated["access_token"]
    await revoke(h, app, revoked_at)
    cases = {
        "garbage": (app, "garbage"),
        "spent refresh token": (app, tokens["refresh_token"]),
        "revoked access token": (app, revoked_at),
        "another client's token": (other, rotated["refresh_token"]),
    }
    for name, (caller, token) in cases.items():
        assert await introspect(h, caller, token) == {"active": False}, name
    h.clock.advance(h.config.access_token_ttl + 1)
    assert await introspect(h, app, expired) == {"active": False}


async def introspector_sees_all(h: Harness) -> None:
    rs = await resource_server(h)
    app, tokens = await user_grant(h)
    answer = await introspect(h, rs, tokens["access_token"])
    assert answer["active"] is True and answer["client_id"] == app.id
    other = await h.client(name="Other")
    assert await introspect(h, other, tokens["access_token"]) == {"active": False}


# -- AUTH 28 ---------------------------------------------------------------------------------


async def disabling_user_revokes(h: Harness) -> None:
    rs = await resource_server(h)
    app, tokens = await user_grant(h)
    await h.store.users.disable("ada")
    assert await revoked(h, tokens["access_token"])
    assert (await h.refresh(app, tokens["refresh_token"])).json() == {"error": "invalid_grant"}
    assert await introspect(h, rs, tokens["access_token"]) == {"active": False}
    assert await introspect(h, rs, tokens["refresh_token"]) == {"active": False}
    answer = await h.sign_in(app)
    assert answer.headers["location"].endswith("&e=failed")


async def deleting_client_revokes(h: Harness) -> None:
    rs = await resource_server(h)
    app, tokens = await user_grant(h)
    machine = await h.machine()
    machine_token = (await h.token(machine, {"grant_type": "client_credentials"})).json()
    await h.store.clients.delete(app.id)
    await h.store.clients.delete(machine.id)
    assert await revoked(h, tokens["access_token"])
    assert await revoked(h, machine_token["access_token"])
    assert await introspect(h, rs, tokens["refresh_token"]) == {"active": False}
    refused = await h.refresh(app, tokens["refresh_token"])
    assert refused.status_code == 401 and refused.json() == {"error": "invalid_client"}


async def disabling_client_revokes(h: Harness) -> None:
    app, tokens = await user_grant(h)
    await h.store.clients.set_disabled(app.id, True)
    assert await revoked(h, tokens["access_token"])
    assert (await h.refresh(app, tokens["refresh_token"])).status_code == 401
    await h.store.clients.set_disabled(app.id, False)
    # enabling the client again does not bring the revoked grant back
    assert (await h.refresh(app, tokens["refresh_token"])).json() == {"error": "invalid_grant"}


SCENARIOS = [
    pytest.param(revocation_needs_client_auth, id="AUTH-26-client-authenticated"),
    pytest.param(unknown_token_200, id="AUTH-26-unknown-token-200"),
    pytest.param(refresh_revocation_kills_grant, id="AUTH-26-refresh-kills-family-and-ats"),
    pytest.param(access_token_denylist, id="AUTH-26-jti-denylist-until-exp"),
    pytest.param(other_clients_token, id="AUTH-26-other-clients-token-refused"),
    pytest.param(public_client_revokes, id="AUTH-26-public-client"),
    pytest.param(introspection_needs_confidential_client, id="AUTH-27-caller-authenticated"),
    pytest.param(introspect_active, id="AUTH-27-active"),
    pytest.param(introspect_inactive, id="AUTH-27-inactive-only-active-false"),
    pytest.param(introspector_sees_all, id="AUTH-27-resource-server"),
    pytest.param(disabling_user_revokes, id="AUTH-28-disable-user"),
    pytest.param(deleting_client_revokes, id="AUTH-28-delete-client"),
    pytest.param(disabling_client_revokes, id="AUTH-28-disable-client"),
]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_revocation(harness: Harness, scenario: Scenario) -> None:
    await scenario(harness)
