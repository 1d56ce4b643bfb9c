"""Authorization codes (AUTH 16) and PKCE at the token endpoint (AUTH 14): 256 random bits,
stored as keyed digests, single use with replay revoking the grant, 60 s, bound to client,
redirect URI and an S256 challenge; downgrade attempts refused. Both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from apishield.authserver import ServerConfig
from apishield.authserver.pkce import s256
from apishield.authserver.tokens import digest
from apishield.errors import ConfigError
from apishield.store.tables import authorization_codes
from tests.authserver.conftest import (
    API,
    ISSUER,
    REDIRECT,
    Client,
    Harness,
    error_of,
    new_verifier,
    revoked,
)

Scenario = Callable[[Harness], Awaitable[None]]


# -- AUTH 14, 16: codes and PKCE -------------------------------------------------------------


async def code_shape_and_storage(h: Harness) -> None:
    app = await h.client()
    await h.user()
    code, _ = await h.code(app)
    assert len(code) >= 43  # 256 random bits, base64url (AUTH 16 asks for at least 128)
    async with h.store.connect() as conn:
        rows = (await conn.execute(select(authorization_codes))).mappings().all()
    assert len(rows) == 1
    assert code not in json.dumps([dict(r) for r in rows], default=str)
    assert rows[0]["code_hash"] == digest(h.keys.refresh_token_pepper, code)
    assert (rows[0]["expires_at"] - rows[0]["created_at"]) <= timedelta(seconds=60)


async def code_single_use_replay_revokes(h: Harness) -> None:
    app = await h.client()
    await h.user()
    code, verifier = await h.code(app)
    first = await h.exchange(app, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert not await revoked(h, tokens["access_token"])
    again = await h.exchange(app, code, verifier)
    assert again.status_code == 400 and error_of(again) == "invalid_grant"
    assert await revoked(h, tokens["access_token"])
    refresh = await h.refresh(app, tokens["refresh_token"])
    assert refresh.status_code == 400 and error_of(refresh) == "invalid_grant"


async def code_concurrent_redemptions(h: Harness) -> None:
    app = await h.client()
    await h.user()
    code, verifier = await h.code(app)
    answers = await asyncio.gather(*(h.exchange(app, code, verifier) for _ in range(3)))
    issued = [a.json() for a in answers if a.status_code == 200]
    assert len(issued) <= 1
    assert sum(a.status_code == 400 for a in answers) >= 2
    for tokens in issued:  # a second redemption revoked what the first one got
        assert await revoked(h, tokens["access_token"])
        assert (await h.refresh(app, tokens["refresh_token"])).status_code == 400


async def code_expires_within_60s(h: Harness) -> None:
    app = await h.client()
    await h.user()
    code, verifier = await h.code(app)
    h.clock.advance(61)
    response = await h.exchange(app, code, verifier)
    assert response.status_code == 400 and error_of(response) == "invalid_grant"
    with pytest.raises(ConfigError):
        ServerConfig(issuer=ISSUER, code_ttl=61)


async def code_bound_to_client(h: Harness) -> None:
    app = await h.client()
    other = await h.client(name="Other app")
    await h.user()
    code, verifier = await h.code(app)
    stolen = await h.exchange(other, code, verifier)
    assert stolen.status_code == 400 and error_of(stolen) == "invalid_grant"
    # every presentation uses the code up: the rightful client must start again
    assert (await h.exchange(app, code, verifier)).status_code == 400


async def code_bound_to_redirect_uri(h: Harness) -> None:
    app = await h.client(redirect_uris=(REDIRECT, "https://app.example.com/other"))
    await h.user()
    code, verifier = await h.code(app)
    response = await h.token(
        app,
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": "https://app.example.com/other",
        },
    )
    assert response.status_code == 400 and error_of(response) == "invalid_grant"


async def unknown_code(h: Harness) -> None:
    app = await h.client()
    response = await h.exchange(app, "x" * 43, new_verifier())
    assert response.status_code == 400 and error_of(response) == "invalid_grant"


async def _plain_code(h: Harness, app: Client, verifier: str, method: str, challenge: str) -> str:
    user = await h.user()
    code = "c" * 43
    await h.store.codes.create(
        code_hash=digest(h.keys.refresh_token_pepper, code),
        client_id=app.id,
        user_id=user.id,
        redirect_uri=REDIRECT,
        code_challenge=challenge,
        code_challenge_method=method,
        scope=["orders:read"],
        resource=[API],
        expires_at=h.store.now() + timedelta(seconds=60),
    )
    return code


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param("no-verifier", id="AUTH-14-verifier-missing"),
        pytest.param("wrong-verifier", id="AUTH-14-verifier-wrong"),
        pytest.param("challenge-as-verifier", id="AUTH-14-challenge-as-verifier"),
        pytest.param("short-verifier", id="AUTH-14-verifier-too-short"),
        pytest.param("plain-code", id="AUTH-14-plain-challenge-refused"),
        pytest.param("verifier-without-challenge", id="AUTH-14-verifier-without-challenge"),
        pytest.param("verifier-on-client-credentials", id="AUTH-14-verifier-outside-code-grant"),
    ],
)
async def test_pkce_downgrade(harness: Harness, attack: str) -> None:
    h = harness
    if attack == "verifier-on-client-credentials":
        machine = await h.machine()
        response = await h.token(
            machine, {"grant_type": "client_credentials", "code_verifier": new_verifier()}
        )
        assert response.status_code == 400 and error_of(response) == "invalid_request"
        return
    app = await h.client()
    verifier = new_verifier()
    if attack == "plain-code":
        code = await _plain_code(h, app, verifier, "plain", verifier)
    elif attack == "verifier-without-challenge":
        code = await _plain_code(h, app, verifier, "S256", "")
    else:
        await h.user()
        code, verifier = await h.code(app)
    presented: str | None = {
        "no-verifier": None,
        "wrong-verifier": new_verifier(),
        "challenge-as-verifier": s256(verifier),
        "short-verifier": verifier[:42],
    }.get(attack, verifier)
    response = await h.exchange(app, code, presented)
    assert response.status_code == 400 and error_of(response) == "invalid_grant"


CODE_SCENARIOS = [
    pytest.param(code_shape_and_storage, id="AUTH-16-code-256-bits-stored-hashed"),
    pytest.param(code_single_use_replay_revokes, id="AUTH-16-replay-revokes-tokens"),
    pytest.param(code_concurrent_redemptions, id="AUTH-16-concurrent-redemptions"),
    pytest.param(code_expires_within_60s, id="AUTH-16-code-expires-60s"),
    pytest.param(code_bound_to_client, id="AUTH-16-code-bound-to-client"),
    pytest.param(code_bound_to_redirect_uri, id="AUTH-16-code-bound-to-redirect-uri"),
    pytest.param(unknown_code, id="AUTH-16-unknown-code"),
]


@pytest.mark.parametrize("scenario", CODE_SCENARIOS)
async def test_code(harness: Harness, scenario: Scenario) -> None:
    await scenario(harness)
