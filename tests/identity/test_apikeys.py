"""API keys, AUTH 29-31: format and checksum, HMAC at rest, shown once, constant-time
comparison, owner and scopes, expiry, IP allowlist, last use, rolling, the verifier's cache."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from apishield.identity import apikeys as apikeys_module
from apishield.identity.apikeys import (
    BASE62,
    RANDOM_CHARS,
    ApiKeyManager,
    ApiKeyRefusal,
    StoreApiKeyVerifier,
    checksum_ok,
    find_api_keys,
    generate_api_key,
)
from apishield.identity.secretkey import SecretKeys
from apishield.store import ConflictError, InvalidRecordError, Store, StoreUnavailableError
from apishield.store.tables import api_keys
from tests.store import backends
from tests.store.backends import Clock

# the store fixtures, on both backends
clock = backends.clock
postgres_session_url = backends.postgres_session_url
sqlite_template = backends.sqlite_template
store = backends.store
store_url = backends.store_url

PREFIX = "ask_live"


class Ticker:
    """A settable monotonic clock for the verifier's cache."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def secret_keys() -> SecretKeys:
    return SecretKeys.from_master(os.urandom(32))


@pytest.fixture
def manager(store: Store, secret_keys: SecretKeys) -> ApiKeyManager:
    return ApiKeyManager(store, pepper=secret_keys.api_key_pepper, prefix=PREFIX)


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def verifier(store: Store, secret_keys: SecretKeys, ticker: Ticker) -> StoreApiKeyVerifier:
    return StoreApiKeyVerifier(
        store, pepper=secret_keys.api_key_pepper, prefix=PREFIX, monotonic=ticker
    )


def refusal(exc: pytest.ExceptionInfo[ApiKeyRefusal]) -> tuple[int, str, str]:
    return exc.value.status, exc.value.code, exc.value.reason


# -- AUTH 29: format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [pytest.param("ask_live", id="AUTH-29-format-live"), pytest.param("ask_test", id="test")],
)
def test_api_key(prefix: str) -> None:
    keys = {generate_api_key(prefix) for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(prefix + "_")
        tail = key[len(prefix) + 1 :]
        assert len(tail) == RANDOM_CHARS + 6 and set(tail) <= set(BASE62)
        assert checksum_ok(key, prefix)
    assert RANDOM_CHARS * math.log2(62) >= 128


@pytest.mark.parametrize("position", range(len(PREFIX) + 1 + RANDOM_CHARS + 6))
def test_checksum_catches_every_single_character_change(position: int) -> None:
    """AUTH-29-checksum: CRC32 detects any one changed character, so a typo or a truncated
    copy is refused before the store is asked."""
    key = generate_api_key(PREFIX)
    for replacement in "0aZ_":
        if key[position] == replacement:
            continue
        changed = key[:position] + replacement + key[position + 1 :]
        assert not checksum_ok(changed, PREFIX)


def test_secret_scanners_find_keys_in_text() -> None:
    key = generate_api_key(PREFIX)
    assert find_api_keys(f"curl https://api.example.com/?q={key}&x=1", PREFIX)
    assert not find_api_keys(f"ask_live_{'A' * 36}", PREFIX)
    assert not find_api_keys(key[:-1], PREFIX)


async def test_api_key_environments(store: Store, secret_keys: SecretKeys) -> None:
    """AUTH-29-prefixes: a test-environment key is refused by a live gateway."""
    test_keys = ApiKeyManager(store, pepper=secret_keys.api_key_pepper, prefix="ask_test")
    issued = await test_keys.create("ci")
    assert issued.key.startswith("ask_test_") and issued.record.environment == "test"
    live = StoreApiKeyVerifier(store, pepper=secret_keys.api_key_pepper, prefix="ask_live")
    with pytest.raises(ApiKeyRefusal) as info:
        await live.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert refusal(info) == (401, "api_key_invalid", "prefix")


# -- AUTH 30: storage and comparison -------------------------------------------------------------


async def test_api_key_hmac_at_rest(store: Store, manager: ApiKeyManager) -> None:
    """AUTH-30-hmac: only HMAC-SHA-256(pepper, key), a display prefix and the last four."""
    issued = await manager.create("billing", scopes=["invoices:read"])
    key = issued.key
    async with store.connect() as conn:
        row = (await conn.execute(select(api_keys))).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert key not in stored and key[len(PREFIX) + 5 : -4] not in stored
    assert row["digest"] == hmac.new(manager.pepper, key.encode(), hashlib.sha256).hexdigest()
    assert row["digest"] != hashlib.sha256(key.encode()).hexdigest()  # peppered, not plain
    assert row["display_prefix"] == key[: len(PREFIX) + 5]
    assert row["last4"] == key[-4:]


async def test_api_key_shown_once(manager: ApiKeyManager) -> None:
    """AUTH-30-shown-once: the key exists in the issue result only."""
    issued = await manager.create("billing")
    assert issued.key not in repr(issued)
    for record in await manager.all():
        assert all(issued.key not in str(getattr(record, f)) for f in record.__slots__)
        assert issued.key not in record.masked


async def test_api_key_checksum_checked_before_lookup(secret_keys: SecretKeys) -> None:
    """AUTH-30-checksum-first: a key with a bad checksum is refused without asking the store
    (here a dead one: a lookup would raise StoreUnavailableError)."""
    dead = Store("postgresql://root@127.0.0.1:1/test", auto_migrate=False, connect_timeout=1)
    verifier = StoreApiKeyVerifier(dead, pepper=secret_keys.api_key_pepper, prefix=PREFIX)
    key = generate_api_key(PREFIX)
    broken = key[:-1] + ("A" if key[-1] != "A" else "B")
    try:
        with pytest.raises(ApiKeyRefusal) as info:
            await verifier.verify_api_key(broken, client_ip="127.0.0.1")
        assert refusal(info) == (401, "api_key_invalid", "checksum")
        with pytest.raises(StoreUnavailableError):  # AUTH-30-fail-closed
            await verifier.verify_api_key(key, client_ip="127.0.0.1")
    finally:
        await dead.aclose()


async def test_api_key_compared_in_constant_time(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTH-30-constant-time: the stored digest is compared with hmac.compare_digest."""
    issued = await manager.create("billing")
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(apikeys_module.hmac, "compare_digest", spy)
    await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert (issued.record.digest, issued.record.digest) in calls


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        pytest.param(generate_api_key(PREFIX), "unknown", id="AUTH-30-unknown-key"),
        pytest.param("ask_live_" + "é" * 36, "format", id="non-ascii"),
        pytest.param("ask_live_" + "A" * 500, "format", id="overlong"),
        pytest.param("", "prefix", id="empty"),
        pytest.param("Bearer x", "prefix", id="other-text"),
    ],
)
async def test_api_key_refused(verifier: StoreApiKeyVerifier, key: str, reason: str) -> None:
    with pytest.raises(ApiKeyRefusal) as info:
        await verifier.verify_api_key(key, client_ip="127.0.0.1")
    assert refusal(info) == (401, "api_key_invalid", reason)
    assert info.value.headers["WWW-Authenticate"].startswith("ApiKey")


# -- AUTH 31: what a key carries ----------------------------------------------------------------


async def test_api_key_owner_and_scopes(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier
) -> None:
    """AUTH-31-owner-scopes: the principal is the owner, with the key's scopes, no roles."""
    issued = await manager.create("billing-service", scopes=["invoices:read", "invoices:write"])
    principal = await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert (principal.issuer, principal.subject, principal.kind) == (
        "apikey",
        "billing-service",
        "api_key",
    )
    assert principal.scopes == {"invoices:read", "invoices:write"}
    assert principal.roles == frozenset()
    assert principal.credential_id == issued.record.id


async def test_api_key_deny_by_default(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier
) -> None:
    """AUTH-31-deny-by-default: a key created without scopes carries none."""
    issued = await manager.create("someone")
    principal = await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert principal.scopes == frozenset()


async def test_api_key_expiry(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier, clock: Clock
) -> None:
    """AUTH-31-expiry: refused from the expiry on, even while cached."""
    issued = await manager.create("billing", expires_at=clock() + timedelta(hours=1))
    principal = await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert principal.expires_at == (clock() + timedelta(hours=1)).timestamp()
    clock.advance(3600)
    with pytest.raises(ApiKeyRefusal) as info:
        await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert refusal(info) == (401, "api_key_expired", "expired")


@pytest.mark.parametrize(
    ("client_ip", "allowed"),
    [
        pytest.param("10.1.2.3", True, id="AUTH-31-ip-inside"),
        pytest.param("::ffff:10.1.2.3", True, id="AUTH-31-ip-v4-mapped"),
        pytest.param("2001:db8::7", True, id="AUTH-31-ip-v6-inside"),
        pytest.param("192.168.1.1", False, id="AUTH-31-ip-outside"),
        pytest.param("11.0.0.1", False, id="AUTH-31-ip-next-block"),
        pytest.param("", False, id="AUTH-31-ip-unknown"),
        pytest.param("not-an-ip", False, id="AUTH-31-ip-garbage"),
    ],
)
async def test_api_key_ip_allowlist(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier, client_ip: str, allowed: bool
) -> None:
    issued = await manager.create("billing", ip_allowlist=["10.0.0.0/8", "2001:db8::/32"])
    if allowed:
        await verifier.verify_api_key(issued.key, client_ip=client_ip)
        return
    with pytest.raises(ApiKeyRefusal) as info:
        await verifier.verify_api_key(issued.key, client_ip=client_ip)
    assert refusal(info) == (403, "api_key_ip_not_allowed", "ip")
    assert "WWW-Authenticate" not in info.value.headers


async def test_api_key_last_used(
    store: Store,
    manager: ApiKeyManager,
    verifier: StoreApiKeyVerifier,
    clock: Clock,
    ticker: Ticker,
) -> None:
    """AUTH-31-last-used: noted on use, at most once a minute."""
    issued = await manager.create("billing")
    assert issued.record.last_used_at is None
    await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    first = await store.api_keys.get(issued.record.id)
    assert first is not None and first.last_used_at == clock()
    clock.advance(30)
    ticker.now += 30
    await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    second = await store.api_keys.get(issued.record.id)
    assert second is not None and second.last_used_at == first.last_used_at
    clock.advance(31)
    ticker.now += 31
    await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    third = await store.api_keys.get(issued.record.id)
    assert third is not None and third.last_used_at == clock()


async def test_api_key_roll_grace(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier, clock: Clock
) -> None:
    """AUTH-31-roll-grace: after a roll both keys work until the old one's grace ends."""
    old = await manager.create("billing", scopes=["invoices:read"])
    new = await manager.roll(old.record.id, grace=timedelta(hours=1))
    assert new.key != old.key and new.record.scopes == ("invoices:read",)
    for key in (old.key, new.key):
        await verifier.verify_api_key(key, client_ip="127.0.0.1")
    clock.advance(3600)
    with pytest.raises(ApiKeyRefusal) as info:
        await verifier.verify_api_key(old.key, client_ip="127.0.0.1")
    assert refusal(info) == (401, "api_key_expired", "grace_expired")
    await verifier.verify_api_key(new.key, client_ip="127.0.0.1")


async def test_api_key_roll_without_grace(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier
) -> None:
    old = await manager.create("billing")
    await manager.roll(old.record.id, grace=timedelta(0))
    with pytest.raises(ApiKeyRefusal) as info:
        await verifier.verify_api_key(old.key, client_ip="127.0.0.1")
    assert refusal(info) == (401, "api_key_invalid", "revoked")
    with pytest.raises(ConflictError):
        await manager.roll(old.record.id)


async def test_revocation_within_cache_ttl(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier, ticker: Ticker
) -> None:
    """A revocation made by another process is seen within the 5 s cache TTL at most."""
    issued = await manager.create("billing")
    await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    await manager.revoke(issued.record.id)
    ticker.now += 4.9
    await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")  # still cached
    ticker.now += 0.1
    with pytest.raises(ApiKeyRefusal) as info:
        await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert refusal(info) == (401, "api_key_invalid", "revoked")


async def test_forget_drops_a_key_at_once(
    manager: ApiKeyManager, verifier: StoreApiKeyVerifier
) -> None:
    issued = await manager.create("billing")
    await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    await manager.revoke(issued.record.id)
    verifier.forget(issued.record.id)
    with pytest.raises(ApiKeyRefusal):
        await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")


async def test_cache_is_bounded(
    store: Store, manager: ApiKeyManager, secret_keys: SecretKeys
) -> None:
    verifier = StoreApiKeyVerifier(
        store, pepper=secret_keys.api_key_pepper, prefix=PREFIX, cache_size=2
    )
    for _ in range(3):
        issued = await manager.create("billing")
        await verifier.verify_api_key(issued.key, client_ip="127.0.0.1")
    assert len(verifier._cache) == 2


@pytest.mark.parametrize(
    ("owner", "options", "message"),
    [
        pytest.param("", {}, "owner", id="empty-owner"),
        pytest.param("a\nb", {}, "owner", id="newline-owner"),
        pytest.param("x", {"scopes": ["two words"]}, "scope token", id="bad-scope"),
        pytest.param("x", {"ip_allowlist": ["10.0.0.0/33"]}, "CIDR", id="bad-cidr"),
        pytest.param("x", {"expires_at": "past"}, "past", id="past-expiry"),
    ],
)
async def test_refused_keys(
    manager: ApiKeyManager, clock: Clock, owner: str, options: dict[str, Any], message: str
) -> None:
    if options.get("expires_at") == "past":
        options = {"expires_at": clock() - timedelta(seconds=1)}
    with pytest.raises(InvalidRecordError, match=message):
        await manager.create(owner, **options)
    assert await manager.all() == []
