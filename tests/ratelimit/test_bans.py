"""The ban list: subjects, expiry, sharing between gateways, and a storage that goes away."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from apishield.ratelimit.bans import BanList, parse_subject
from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.redisstore import RedisStorage
from apishield.ratelimit.storage import Storage
from tests.ratelimit.conftest import SHARED_REDIS
from tests.ratelimit.support import RedisServer


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param("203.0.113.7", "ip:203.0.113.7", id="ipv4"),
        pytest.param(" ip:203.0.113.7 ", "ip:203.0.113.7", id="prefixed"),
        pytest.param("203.0.113.9/24", "ip:203.0.113.0/24", id="network-normalised"),
        pytest.param("203.0.113.7/32", "ip:203.0.113.7", id="single-address-network"),
        pytest.param("2001:DB8:0::1", "ip:2001:db8::1", id="ipv6-canonical"),
        pytest.param("principal:apikey|batch-job", "principal:apikey|batch-job", id="principal"),
    ],
)
def test_subjects_are_normalised(given: str, stored: str) -> None:
    assert parse_subject(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("203.0.113.300", id="bad-octet"),
        pytest.param("example.com", id="hostname"),
        pytest.param("principal:", id="empty-principal"),
        pytest.param("principal:no-issuer", id="principal-without-issuer"),
        pytest.param("principal:a|b\nX-Injected: 1", id="control-characters"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_subjects_are_refused(given: str) -> None:
    with pytest.raises(ValueError, match="not an IP address|principal:ISSUER"):
        parse_subject(given)


async def test_bans_expire_on_their_own() -> None:
    now = [1_800_000_000.0]
    bans = BanList(MemoryStorage(clock=lambda: int(now[0] * 1e6)), clock=lambda: now[0])
    await bans.add("203.0.113.7", ttl=60, reason="stuffing")
    await bans.ready()
    hit = bans.check_ip("203.0.113.7")
    assert hit is not None and hit.reason == "stuffing" and hit.expires == now[0] + 60
    now[0] += 60
    assert bans.check_ip("203.0.113.7") is None
    assert await bans.entries() == []


async def test_reasons_are_kept_short_and_on_one_line() -> None:
    bans = BanList(MemoryStorage())
    record = await bans.add("203.0.113.7", ttl=5, reason="line one\r\nline two " + "x" * 500)
    assert record.reason.startswith("line one line two x") and len(record.reason) == 200


@pytest.mark.parametrize("ttl", [0, -1, 367 * 86_400])
async def test_ttl_is_bounded(ttl: float) -> None:
    with pytest.raises(ValueError, match="at most 366 days"):
        await BanList(MemoryStorage()).add("203.0.113.7", ttl=ttl, reason="")


async def test_a_ban_reaches_every_gateway_sharing_the_store(prefix: str) -> None:
    storage = RedisStorage(SHARED_REDIS, key_prefix=prefix, timeout=2.0)
    here = BanList(storage, refresh=0.05)
    there = BanList(storage, refresh=0.05)
    await here.ready()
    await there.ready()
    await here.add("198.51.100.0/24", ttl=60, reason="scan")
    assert here.check_ip("198.51.100.20") is not None  # at once where it was added
    for _ in range(100):  # elsewhere within the refresh interval
        await there.ready()
        if there.check_ip("198.51.100.20") is not None:
            break
        await asyncio.sleep(0.02)
    assert there.check_ip("198.51.100.20") is not None
    await there.remove("198.51.100.0/24")
    for _ in range(100):
        await here.ready()
        if here.check_ip("198.51.100.20") is None:
            break
        await asyncio.sleep(0.02)
    assert here.check_ip("198.51.100.20") is None
    await here.aclose()
    await there.aclose()
    await storage.aclose()


async def test_malformed_entries_are_skipped(prefix: str) -> None:
    storage = RedisStorage(SHARED_REDIS, key_prefix=prefix, timeout=2.0)
    client = aioredis.Redis.from_url(SHARED_REDIS)
    try:
        await client.hset(f"{prefix}{{bans}}", "ip:192.0.2.1", b"not json")
        await client.hset(
            f"{prefix}{{bans}}",
            "ip:192.0.2.2",
            json.dumps({"reason": "ok", "created": 1, "expires": 4e9}),
        )
        bans = BanList(storage)
        await bans.ready()
        assert bans.check_ip("192.0.2.1") is None
        assert bans.check_ip("192.0.2.2") is not None
    finally:
        await client.aclose()
        await storage.aclose()


async def test_the_last_copy_stays_while_the_store_is_away(own_redis: RedisServer) -> None:
    storage = RedisStorage(own_redis.url)
    bans = BanList(storage, refresh=0.01)
    try:
        await bans.add("203.0.113.7", ttl=600, reason="")
        own_redis.kill()
        await asyncio.sleep(0.02)
        await bans.ready()  # a background refresh, which fails
        await asyncio.sleep(0.1)
        assert bans.check_ip("203.0.113.7") is not None
    finally:
        await bans.aclose()
        await storage.aclose()


async def test_a_new_gateway_waits_for_the_list_before_its_first_request(
    storage: Storage,
) -> None:
    await BanList(storage).add("203.0.113.7", ttl=60, reason="")
    fresh = BanList(storage)
    await fresh.ready()
    assert fresh.check_ip("203.0.113.7") is not None
    await fresh.aclose()
