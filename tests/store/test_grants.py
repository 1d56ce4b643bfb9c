"""Codes (AUTH 16), refresh-token rotation with reuse detection (AUTH 24-25) and the
access-token denylist (AUTH 26), on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from apishield.store import ConflictError, Store, purge_expired
from apishield.store.records import ClientRecord, UserRecord
from tests.store.backends import Clock


@pytest.fixture
async def parties(store: Store) -> tuple[ClientRecord, UserRecord]:
    client, _ = await store.clients.register(
        name="app",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://app.example.com/cb"],
    )
    user = await store.users.create("ada", "correct horse battery")
    return client, user


async def new_code(store: Store, parties: tuple[ClientRecord, UserRecord], name: str) -> None:
    client, user = parties
    await store.codes.create(
        code_hash=name,
        client_id=client.id,
        user_id=user.id,
        redirect_uri="https://app.example.com/cb",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        scope=["orders:read"],
        resource=["https://api.example.com"],
        expires_at=store.now() + timedelta(seconds=60),
    )


async def new_family(
    store: Store, parties: tuple[ClientRecord, UserRecord], family: str, rt0: str, code: str | None
) -> None:
    client, user = parties
    await store.refresh_tokens.start_family(
        family_id=family,
        token_hash=rt0,
        client_id=client.id,
        user_id=user.id,
        scope=["orders:read"],
        resource=["https://api.example.com"],
        absolute_expires_at=store.now() + timedelta(days=30),
        code_hash=code,
    )
    await store.access_tokens.record(
        f"{family}-at",
        expires_at=store.now() + timedelta(minutes=10),
        client_id=client.id,
        user_id=user.id,
        family_id=family,
    )


async def test_code_is_bound_and_single_use(
    store: Store, parties: tuple[ClientRecord, UserRecord]
) -> None:
    """AUTH-16-single-use: the first redemption gets the bound record, the second is refused
    and revokes the tokens issued from the first."""
    await new_code(store, parties, "code-1")
    first = await store.codes.redeem("code-1")
    assert first.status == "ok" and first.code is not None
    assert first.code.client_id == parties[0].id and first.code.user_id == parties[1].id
    assert first.code.redirect_uri == "https://app.example.com/cb"
    assert first.code.code_challenge_method == "S256"
    assert first.code.resource == ("https://api.example.com",)
    await new_family(store, parties, "fam-1", "rt-1", code="code-1")

    second = await store.codes.redeem("code-1")

    assert second.status == "replayed"
    assert await store.access_tokens.is_revoked("fam-1-at")
    assert (await store.refresh_tokens.rotate("rt-1", "rt-2")).status == "revoked"
    family = await store.refresh_tokens.get_family("fam-1")
    assert family is not None and family.revoked_reason == "code_replay"


async def test_concurrent_redemptions_only_one_wins(
    store: Store, parties: tuple[ClientRecord, UserRecord]
) -> None:
    await new_code(store, parties, "code-race")
    results = await asyncio.gather(*(store.codes.redeem("code-race") for _ in range(4)))
    assert sorted(r.status for r in results) == ["ok", "replayed", "replayed", "replayed"]


async def test_code_expiry_and_unknown(
    store: Store, parties: tuple[ClientRecord, UserRecord], clock: Clock
) -> None:
    await new_code(store, parties, "code-old")
    clock.advance(61)
    assert (await store.codes.redeem("code-old")).status == "expired"
    assert (await store.codes.redeem("never-issued")).status == "unknown"


async def test_code_for_unknown_client(store: Store) -> None:
    with pytest.raises(ConflictError):
        await store.codes.create(
            code_hash="x",
            client_id="ghost",
            user_id="ghost",
            redirect_uri="https://app.example.com/cb",
            code_challenge="c",
            scope=[],
            resource=[],
            expires_at=store.now() + timedelta(seconds=60),
        )


async def test_refresh_rotation_and_reuse(
    store: Store, parties: tuple[ClientRecord, UserRecord]
) -> None:
    """AUTH-25-reuse: RT0→RT1; RT0 again → refused and RT1 is dead, with the grant's access
    tokens."""
    await new_family(store, parties, "fam", "rt0", code=None)

    rotated = await store.refresh_tokens.rotate("rt0", "rt1")
    assert rotated.status == "rotated" and rotated.token is not None
    assert rotated.token.family_id == "fam"

    reused = await store.refresh_tokens.rotate("rt0", "rt-attacker")
    assert reused.status == "reused"
    assert (await store.refresh_tokens.rotate("rt1", "rt2")).status == "revoked"
    assert await store.refresh_tokens.get("rt-attacker") is None
    assert await store.access_tokens.is_revoked("fam-at")
    family = await store.refresh_tokens.get_family("fam")
    assert family is not None and family.revoked_reason == "reuse"


async def test_refresh_never_widens_or_extends(
    store: Store, parties: tuple[ClientRecord, UserRecord], clock: Clock
) -> None:
    """AUTH-24: the new token keeps the grant's scope, resource and absolute expiry."""
    await new_family(store, parties, "fam", "rt0", code=None)
    first = await store.refresh_tokens.get("rt0")
    clock.advance(3600)
    rotated = await store.refresh_tokens.rotate("rt0", "rt1")
    assert rotated.token is not None and first is not None
    assert rotated.token.scope == first.scope == ("orders:read",)
    assert rotated.token.resource == first.resource
    assert rotated.token.expires_at == first.expires_at


async def test_concurrent_rotations_only_one_wins(
    store: Store, parties: tuple[ClientRecord, UserRecord]
) -> None:
    """AUTH-25-atomic: two uses of one token at once never both get a new token."""
    await new_family(store, parties, "fam", "rt0", code=None)
    results = await asyncio.gather(
        store.refresh_tokens.rotate("rt0", "rt-a"), store.refresh_tokens.rotate("rt0", "rt-b")
    )
    assert sorted(r.status for r in results) == ["reused", "rotated"]
    # the loser's use counts as reuse: the winner's new token dies with the family
    winner = next(r.token for r in results if r.status == "rotated")
    assert winner is not None
    assert (await store.refresh_tokens.rotate(winner.token_hash, "rt-c")).status == "revoked"


async def test_refresh_expiry(
    store: Store, parties: tuple[ClientRecord, UserRecord], clock: Clock
) -> None:
    await new_family(store, parties, "fam", "rt0", code=None)
    clock.advance(31 * 86400)
    assert (await store.refresh_tokens.rotate("rt0", "rt1")).status == "expired"
    assert (await store.refresh_tokens.rotate("never", "rt1")).status == "unknown"


async def test_revoking_a_refresh_token_kills_its_access_tokens(
    store: Store, parties: tuple[ClientRecord, UserRecord]
) -> None:
    """AUTH-26: RFC 7009 revocation of a refresh token revokes the grant's access tokens."""
    await new_family(store, parties, "fam", "rt0", code=None)
    assert await store.refresh_tokens.revoke("rt0")
    assert await store.access_tokens.is_revoked("fam-at")
    assert (await store.refresh_tokens.rotate("rt0", "rt1")).status == "revoked"
    assert not await store.refresh_tokens.revoke("unknown-token")


async def test_access_token_denylist_until_exp(store: Store, clock: Clock) -> None:
    """AUTH-26-denylist: a revoked jti stays denied until its exp, recorded or not."""
    exp = clock() + timedelta(minutes=10)
    await store.access_tokens.record("jti-1", expires_at=exp, client_id="c")
    assert not await store.access_tokens.is_revoked("jti-1")
    since = clock()
    clock.advance(1)
    await store.access_tokens.revoke("jti-1", expires_at=exp)
    await store.access_tokens.revoke("jti-1", expires_at=exp)  # idempotent
    await store.access_tokens.revoke("jti-never-recorded", expires_at=exp)
    assert await store.access_tokens.is_revoked("jti-1")
    assert await store.access_tokens.is_revoked("jti-never-recorded")
    assert sorted(j for j, _ in await store.access_tokens.revoked_since(since)) == [
        "jti-1",
        "jti-never-recorded",
    ]
    clock.advance(601)
    assert not await store.access_tokens.is_revoked("jti-1")


async def test_purge_expired(
    store: Store, parties: tuple[ClientRecord, UserRecord], clock: Clock
) -> None:
    await new_family(store, parties, "fam", "rt0", code=None)
    await new_code(store, parties, "code")
    clock.advance(2 * 86400)
    assert await purge_expired(store) == 2  # the access token and the code
    clock.advance(30 * 86400)
    assert await purge_expired(store) == 2  # the refresh token and its family
    assert await store.refresh_tokens.get_family("fam") is None
