"""The API key table: digests only, rolling with grace, revocation, cheap last-use notes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apishield.store import ConflictError, NotFoundInStoreError, Store
from tests.store.backends import Clock


async def make(store: Store, key_id: str = "key_1", digest: str = "d" * 64) -> None:
    await store.api_keys.create(
        key_id=key_id,
        owner="billing",
        digest=digest,
        environment="live",
        display_prefix="ask_live_Ab12",
        last4="wxyz",
        scopes=["invoices:read"],
        ip_allowlist=["10.0.0.0/8"],
        expires_at=store.now() + timedelta(days=90),
        name="ci",
    )


async def test_create_and_find_by_digest(store: Store) -> None:
    await make(store)
    record = await store.api_keys.get_by_digest("d" * 64)
    assert record is not None and record.id == "key_1"
    assert record.masked == "ask_live_Ab12…wxyz"
    assert record.scopes == ("invoices:read",) and record.ip_allowlist == ("10.0.0.0/8",)
    assert "d" * 64 not in repr(record)
    assert await store.api_keys.get_by_digest("e" * 64) is None
    assert [k.id for k in await store.api_keys.all(owner="billing")] == ["key_1"]
    assert await store.api_keys.all(owner="nobody") == []


async def test_digest_is_unique(store: Store) -> None:
    await make(store)
    with pytest.raises(ConflictError):
        await make(store, key_id="key_2")


async def test_roll_gives_grace(store: Store, clock: Clock) -> None:
    await make(store)
    new = await store.api_keys.roll(
        "key_1",
        new_key_id="key_2",
        digest="e" * 64,
        display_prefix="p",
        last4="last",
        grace=timedelta(hours=1),
    )
    old = await store.api_keys.get("key_1")
    assert old is not None and old.replaced_by == "key_2"
    assert old.grace_expires_at == clock() + timedelta(hours=1)
    assert old.state(clock()) == "rolled"
    assert new.owner == old.owner and new.scopes == old.scopes
    assert new.expires_at == old.expires_at and new.ip_allowlist == old.ip_allowlist
    with pytest.raises(ConflictError, match="rolled"):
        await store.api_keys.roll(
            "key_1",
            new_key_id="key_3",
            digest="f" * 64,
            display_prefix="p",
            last4="last",
            grace=timedelta(hours=1),
        )
    clock.advance(3601)
    assert old.state(clock()) == "expired"


async def test_roll_without_grace_revokes(store: Store) -> None:
    await make(store)
    await store.api_keys.roll(
        "key_1",
        new_key_id="key_2",
        digest="e" * 64,
        display_prefix="p",
        last4="last",
        grace=timedelta(0),
    )
    old = await store.api_keys.get("key_1")
    assert old is not None and old.state(store.now()) == "revoked"


async def test_revoke(store: Store) -> None:
    await make(store)
    first = await store.api_keys.revoke("key_1")
    again = await store.api_keys.revoke("key_1")
    assert first.revoked_at is not None and again.revoked_at == first.revoked_at
    with pytest.raises(NotFoundInStoreError):
        await store.api_keys.revoke("key_nope")
    with pytest.raises(ConflictError, match="revoked"):
        await store.api_keys.roll(
            "key_1",
            new_key_id="key_2",
            digest="e" * 64,
            display_prefix="p",
            last4="last",
            grace=timedelta(0),
        )


async def test_touch_at_most_once_a_minute(store: Store, clock: Clock) -> None:
    """AUTH-31-last-used: written once per minute however often the key is used."""
    await make(store)
    assert await store.api_keys.touch("key_1")
    assert not await store.api_keys.touch("key_1")
    clock.advance(30)
    assert not await store.api_keys.touch("key_1")
    clock.advance(31)
    assert await store.api_keys.touch("key_1")
    record = await store.api_keys.get("key_1")
    assert record is not None and record.last_used_at == clock()
