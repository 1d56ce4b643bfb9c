"""Refresh tokens (AUTH 24, 25): opaque, keyed digests, bound to the client, never widening,
absolute expiry, rotated on every use, reuse revoking the whole family. Both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from apishield.authserver.tokens import digest
from apishield.store.tables import refresh_tokens
from tests.authserver.conftest import (
    Harness,
    error_of,
    revoked,
)

Scenario = Callable[[Harness], Awaitable[None]]


# -- AUTH 24, 25: refresh tokens -------------------------------------------------------------


async def refresh_token_shape(h: Harness) -> None:
    app = await h.client()
    await h.user()
    tokens = await h.tokens(app)
    rt = tokens["refresh_token"]
    assert len(rt) >= 43 and "." not in rt  # opaque, 256 bits
    async with h.store.connect() as conn:
        stored = (await conn.execute(select(refresh_tokens))).mappings().all()
    assert [r["token_hash"] for r in stored] == [digest(h.keys.refresh_token_pepper, rt)]
    assert rt not in json.dumps([dict(r) for r in stored], default=str)


async def reuse_revokes_family(h: Harness) -> None:
    app = await h.client()
    await h.user()
    rt0 = (await h.tokens(app))["refresh_token"]
    first = await h.refresh(app, rt0)
    assert first.status_code == 200
    rt1, at1 = first.json()["refresh_token"], first.json()["access_token"]
    assert rt1 != rt0
    again = await h.refresh(app, rt0)
    assert again.status_code == 400 and error_of(again) == "invalid_grant"
    dead = await h.refresh(app, rt1)
    assert dead.status_code == 400 and error_of(dead) == "invalid_grant"
    assert await revoked(h, at1)


async def rotation_on_every_use(h: Harness) -> None:
    app = await h.client()
    await h.user()
    rt = (await h.tokens(app))["refresh_token"]
    seen = {rt}
    for _ in range(3):
        response = await h.refresh(app, rt)
        assert response.status_code == 200
        rt = response.json()["refresh_token"]
        assert rt not in seen
        seen.add(rt)


async def concurrent_refresh(h: Harness) -> None:
    app = await h.client()
    await h.user()
    rt0 = (await h.tokens(app))["refresh_token"]
    answers = await asyncio.gather(h.refresh(app, rt0), h.refresh(app, rt0))
    assert sorted(a.status_code for a in answers) in ([200, 400], [400, 400])
    # The loser presented a spent token: the family is revoked, the winner's tokens with it
    # (when the revocation lands before the winner answers, the winner gets nothing at all).
    for winner in (a.json() for a in answers if a.status_code == 200):
        assert (await h.refresh(app, winner["refresh_token"])).status_code == 400
        assert await revoked(h, winner["access_token"])


async def refresh_bound_to_client(h: Harness) -> None:
    app = await h.client()
    other = await h.client(name="Other")
    await h.user()
    rt = (await h.tokens(app))["refresh_token"]
    stolen = await h.refresh(other, rt)
    assert stolen.status_code == 400 and error_of(stolen) == "invalid_grant"
    assert (await h.refresh(app, rt)).status_code == 200  # not spent by the thief


async def refresh_never_widens(h: Harness) -> None:
    app = await h.client(scopes=("orders:read", "orders:write", "admin"))
    await h.user()
    code, verifier = await h.code(app, scope="orders:read orders:write")
    tokens = (await h.exchange(app, code, verifier)).json()
    wider = await h.refresh(app, tokens["refresh_token"], scope="orders:read admin")
    assert wider.status_code == 400 and error_of(wider) == "invalid_scope"
    narrower = await h.refresh(app, tokens["refresh_token"], scope="orders:read")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "orders:read"
    # the grant keeps its scope: the next refresh may ask for all of it again, not more
    full = await h.refresh(app, narrower.json()["refresh_token"])
    assert full.status_code == 200 and full.json()["scope"] == "orders:read orders:write"


async def refresh_absolute_expiry(h: Harness) -> None:
    app = await h.client()
    await h.user()
    rt = (await h.tokens(app))["refresh_token"]
    step = h.config.refresh_token_ttl / 3
    for _ in range(2):
        h.clock.advance(step)
        response = await h.refresh(app, rt)
        assert response.status_code == 200
        rt = response.json()["refresh_token"]
    h.clock.advance(step + 1)  # rotation never moved the grant's absolute expiry
    expired = await h.refresh(app, rt)
    assert expired.status_code == 400 and error_of(expired) == "invalid_grant"


REFRESH_SCENARIOS = [
    pytest.param(refresh_token_shape, id="AUTH-24-opaque-keyed-digest"),
    pytest.param(refresh_bound_to_client, id="AUTH-24-bound-to-client"),
    pytest.param(refresh_never_widens, id="AUTH-24-never-widens"),
    pytest.param(refresh_absolute_expiry, id="AUTH-24-absolute-expiry"),
    pytest.param(reuse_revokes_family, id="AUTH-25-reuse-revokes-family"),
    pytest.param(rotation_on_every_use, id="AUTH-25-rotation-on-every-use"),
    pytest.param(concurrent_refresh, id="AUTH-25-concurrent-rotation"),
]


@pytest.mark.parametrize("scenario", REFRESH_SCENARIOS)
async def test_refresh(harness: Harness, scenario: Scenario) -> None:
    await scenario(harness)
