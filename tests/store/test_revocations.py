"""The in-memory mirror of the jti denylist: fresh within its refresh interval (AUTH 26)."""

from __future__ import annotations

from datetime import timedelta

from apishield.store import Store
from apishield.store.revocations import RevocationList
from tests.store.backends import Clock


class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_revocations_are_seen_within_the_refresh_interval(store: Store, clock: Clock) -> None:
    """AUTH-26-denylist-cache: another instance's revocation is seen within 5 s."""
    ticker = Ticker()
    denylist = RevocationList(store, refresh_every=5, monotonic=ticker)
    exp = clock() + timedelta(minutes=10)
    await store.access_tokens.revoke("jti-old", expires_at=exp)
    assert await denylist.is_revoked("jti-old")  # the first look loads every revocation
    assert not await denylist.is_revoked("jti-new")

    clock.advance(1)
    await store.access_tokens.revoke("jti-new", expires_at=exp)  # elsewhere
    ticker.now += 4.9
    assert not await denylist.is_revoked("jti-new")  # not looked again yet
    ticker.now += 0.1
    assert await denylist.is_revoked("jti-new")

    clock.advance(600)
    ticker.now += 5
    assert not await denylist.is_revoked("jti-old")  # expired tokens need no denying
    assert denylist._revoked == {}


async def test_late_commits_are_caught_by_the_overlap(store: Store, clock: Clock) -> None:
    ticker = Ticker()
    denylist = RevocationList(store, refresh_every=5, monotonic=ticker)
    assert not await denylist.is_revoked("jti-late")
    # a revocation stamped before our last look but committed after it
    clock.advance(-30)
    await store.access_tokens.revoke("jti-late", expires_at=clock() + timedelta(minutes=10))
    clock.advance(30)
    ticker.now += 5
    assert await denylist.is_revoked("jti-late")


async def test_note_denies_at_once(store: Store, clock: Clock) -> None:
    denylist = RevocationList(store)
    assert not await denylist.is_revoked("jti")
    denylist.note("jti", clock() + timedelta(minutes=1))
    assert await denylist.is_revoked("jti")
