"""Signing keys (AUTH 19, 23): ES256, unique kids, sealed at rest, published before they
sign, kept until their last token expires, replaced at once in an emergency. Time moves by
the injectable clock, never by sleeping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from joserfc.jwk import ECKey

from apishield.authserver import rotate_signing_keys
from apishield.authserver.signing import create_signing_key
from apishield.errors import HTTPError
from apishield.identity.jwt import parse_jws
from apishield.identity.secretkey import SecretKeyError
from tests.authserver.conftest import Harness

Scenario = Callable[[Harness], Awaitable[None]]
LEAD = 120.0


async def issue(h: Harness) -> tuple[str, str]:
    """A client-credentials token and the kid that signed it."""
    machine = await h.machine()
    token = (await h.token(machine, {"grant_type": "client_credentials"})).json()["access_token"]
    parsed = parse_jws(token)
    assert parsed is not None
    return token, str(parsed.header["kid"])


async def published(h: Harness) -> set[str]:
    response = await h.http.get("/oauth2/jwks")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    keys = response.json()["keys"]
    for key in keys:
        assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
        assert key["use"] == "sig" and "d" not in key
    return {key["kid"] for key in keys}


async def verify_code(h: Harness, token: str) -> str | None:
    try:
        await h.verify(token)
    except HTTPError as exc:
        return exc.code
    return None


async def rotate(h: Harness, *, emergency: bool = False) -> str:
    result = await rotate_signing_keys(
        h.store, h.keys, emergency=emergency, publish_lead=LEAD, access_token_ttl=600
    )
    assert result.pending is not None
    return result.pending.kid


async def unique_kid_sealed(h: Harness) -> None:
    records = [
        await create_signing_key(h.store, h.keys, state="next", not_before=h.store.now())
        for _ in range(3)
    ]
    assert len({r.kid for r in records}) == 3
    for record in records:
        assert record.alg == "ES256" and record.public_jwk["alg"] == "ES256"
        assert record.public_jwk["kid"] == record.kid
        der = h.keys.unseal(record.private_key, associated=record.kid.encode())
        key = ECKey.import_key(der)
        assert key.thumbprint() == record.kid  # the kid is the RFC 7638 thumbprint
        assert der not in record.private_key  # sealed, not stored in clear
        with pytest.raises(SecretKeyError):  # bound to its kid
            h.keys.unseal(record.private_key, associated=records[0].kid.encode() + b"x")


async def next_key_published_before_it_signs(h: Harness) -> None:
    t1, k1 = await issue(h)
    k2 = await rotate(h)
    assert k2 != k1
    assert await published(h) == {k1, k2}
    h.clock.advance(60)
    t2, signer = await issue(h)
    assert signer == k1  # published, not signing yet
    h.clock.advance(LEAD - 60 + 1)
    t3, signer = await issue(h)
    assert signer == k2
    states = {k.kid: k.state for k in await h.store.signing_keys.all()}
    assert states == {k1: "retiring", k2: "active"}
    # the old key stays published while a token it signed can still be valid
    h.clock.advance(600 - LEAD - 1 + 50)  # t2 issued at +60: expires at +660
    assert await published(h) == {k1, k2}
    assert await verify_code(h, t2) is None
    assert await verify_code(h, t3) is None
    h.clock.advance(75)  # +725: t2, k1's last token, is past its exp and the leeway...
    assert await verify_code(h, t2) == "token_expired"
    assert await published(h) == {k1, k2}  # ...while k1 is still published
    h.clock.advance(57)  # +782: past the retire delay (switch + 600 s lifetime + 60 s leeway)
    assert await published(h) == {k2}
    assert await verify_code(h, t1) == "token_invalid"  # no key left for it
    _, signer = await issue(h)
    assert signer == k2
    assert {k.kid: k.state for k in await h.store.signing_keys.all()} == {
        k1: "retired",
        k2: "active",
    }


async def rotation_is_idempotent_while_pending(h: Harness) -> None:
    await issue(h)
    first = await rotate_signing_keys(h.store, h.keys, publish_lead=LEAD)
    second = await rotate_signing_keys(h.store, h.keys, publish_lead=LEAD)
    assert first.created is not None and second.created is None
    assert second.pending is not None and second.pending.kid == first.created.kid


async def emergency_rotation(h: Harness) -> None:
    t1, k1 = await issue(h)
    pending = await rotate(h)  # a normal rotation under way is superseded too
    k3 = await rotate(h, emergency=True)
    assert k3 not in (k1, pending)
    assert await published(h) == {k3}  # gone from the JWK Set at once
    h.clock.advance(31)  # verifiers reload the keys within their refresh interval
    assert await verify_code(h, t1) == "token_invalid"
    t2, signer = await issue(h)
    assert signer == k3 and await verify_code(h, t2) is None


async def first_key_on_demand(h: Harness) -> None:
    assert await published(h) == set()
    _, kid = await issue(h)
    assert await published(h) == {kid}


SCENARIOS = [
    pytest.param(unique_kid_sealed, id="AUTH-23-unique-kid-sealed-es256"),
    pytest.param(next_key_published_before_it_signs, id="AUTH-23-rotation-old-token-valid-to-exp"),
    pytest.param(rotation_is_idempotent_while_pending, id="AUTH-23-rotation-pending"),
    pytest.param(emergency_rotation, id="AUTH-23-emergency-rotation"),
    pytest.param(first_key_on_demand, id="AUTH-19-first-key-es256"),
]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_signing(harness: Harness, scenario: Scenario) -> None:
    await scenario(harness)
