"""The storages keep the same promises: exact counts, all or nothing per partition, refunds,
leases, bans; Redis in one round trip with expiring, hash-tagged keys; memory bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.redisstore import RedisStorage
from apishield.ratelimit.storage import (
    BanRecord,
    Check,
    Storage,
    StorageUnavailable,
    open_storage,
)
from tests.ratelimit.support import RedisServer, free_port

S = 1_000_000
HOUR = 3600 * S


def gcra(prefix: str, name: str, per_hour: int, burst: int, part: str = "ip:a") -> Check:
    return Check(f"{prefix}{{{part}}}:{name}:g", "gcra", HOUR // per_hour, burst)


async def test_limits_are_exact_under_concurrency(storage: Storage, prefix: str) -> None:
    check = gcra(prefix, "exact", 100, 100)
    sliding = Check(f"{prefix}{{ip:b}}:exact:s", "sliding", HOUR, 100)
    results = await asyncio.gather(*(storage.apply([check]) for _ in range(150)))
    windows = await asyncio.gather(*(storage.apply([sliding]) for _ in range(150)))
    assert sum(r[0].allowed for r in results) == 100
    assert sum(r[0].allowed for r in windows) == 100


async def test_a_partition_is_all_or_nothing(storage: Storage, prefix: str) -> None:
    roomy = gcra(prefix, "roomy", 100, 100)
    tight = gcra(prefix, "tight", 1, 1)
    first = await storage.apply([roomy, tight])
    second = await storage.apply([roomy, tight])
    assert [o.allowed for o in first] == [True, True] and all(o.applied for o in first)
    assert [o.allowed for o in second] == [True, False]
    assert not any(o.applied for o in second)
    # The refused request took nothing from the roomy limit: 99 left, as after one request.
    third = await storage.apply([roomy])
    assert third[0].remaining == 98


async def test_partitions_answer_separately_in_one_call(storage: Storage, prefix: str) -> None:
    by_ip = gcra(prefix, "sep", 1, 1, part="ip:a")
    by_principal = gcra(prefix, "sep", 100, 100, part="p:b")
    await storage.apply([by_ip])
    outcomes = await storage.apply([by_ip, by_principal])
    assert [(o.allowed, o.applied) for o in outcomes] == [(False, False), (True, True)]


async def test_dry_checks_decide_without_counting(storage: Storage, prefix: str) -> None:
    probe = Check(f"{prefix}{{ip:a}}:dry:g", "gcra", HOUR, 2, dry=True)
    counted = Check(f"{prefix}{{ip:a}}:dry:g", "gcra", HOUR, 2)
    for _ in range(5):
        outcome = (await storage.apply([probe]))[0]
        assert outcome.allowed and not outcome.applied
    await storage.apply([counted])
    await storage.apply([counted])
    assert not (await storage.apply([probe]))[0].allowed


async def test_refunds_give_back(storage: Storage, prefix: str) -> None:
    one = gcra(prefix, "refund", 1, 1)
    window = Check(f"{prefix}{{ip:a}}:refund:s", "sliding", HOUR, 1)
    quota = Check(f"{prefix}{{ip:a}}:refund:q", "fixed", 24 * HOUR, 1)
    assert all(o.allowed for o in await storage.apply([one, window, quota]))
    assert not any(o.allowed for o in await storage.apply([one, window, quota]))
    await storage.refund([one, window, quota])
    assert all(o.allowed for o in await storage.apply([one, window, quota]))


async def test_concurrency_slots_are_leased_and_released(storage: Storage, prefix: str) -> None:
    def slot(member: str) -> Check:
        return Check(f"{prefix}{{p:a}}:conc:c", "concurrency", 60 * S, 2, member)

    assert (await storage.apply([slot("a")]))[0].allowed
    assert (await storage.apply([slot("b")]))[0].allowed
    refused = (await storage.apply([slot("c")]))[0]
    assert not refused.allowed and refused.retry_after == 1.0
    await storage.refund([slot("a")])
    assert (await storage.apply([slot("c")]))[0].allowed


async def test_bans_are_stored_versioned_and_purged(storage: Storage) -> None:
    version = await storage.ban_version()
    live = BanRecord("ip:203.0.113.7", "stuffing", 1.0, 4_000_000_000.0)
    gone = BanRecord("ip:203.0.113.8", "old", 1.0, 2.0)
    await storage.ban_put(live)
    await storage.ban_put(gone)
    assert await storage.ban_version() == version + 2
    loaded_version, records = await storage.ban_load()
    assert loaded_version == version + 2
    assert records == [live]  # the expired one is purged, not returned
    assert await storage.ban_delete("ip:203.0.113.7")
    assert not await storage.ban_delete("ip:203.0.113.7")
    assert (await storage.ban_load())[1] == []


async def test_redis_keys_expire_and_share_a_hash_tag(prefix: str) -> None:
    storage = RedisStorage("redis://127.0.0.1:6379/0", key_prefix=prefix, timeout=2.0)
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        checks = [
            gcra(prefix, "ttl", 60, 10),
            Check(f"{prefix}{{ip:a}}:ttl:s", "sliding", 60 * S, 10),
            Check(f"{prefix}{{ip:a}}:ttl:q", "fixed", 24 * HOUR, 10),
            Check(f"{prefix}{{ip:a}}:ttl:c", "concurrency", 30 * S, 10, "m"),
        ]
        await storage.apply(checks)
        for check in checks:
            ttl = await client.pttl(check.key)
            assert 0 < ttl <= 24 * 3600 * 1000 + 1000, check.key
        slots = {key_slot(c.key.encode()) for c in checks}
        assert len(slots) == 1  # one slot: the script may touch them all on Redis Cluster
    finally:
        await client.aclose()
        await storage.aclose()


async def test_redis_reloads_its_scripts_after_a_flush(own_redis: RedisServer) -> None:
    storage = RedisStorage(own_redis.url)
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        check = Check("t:{ip:a}:noscript:g", "gcra", HOUR, 5)
        assert (await storage.apply([check]))[0].remaining == 4
        await client.script_flush()
        assert (await storage.apply([check]))[0].remaining == 3
        await client.script_flush()
        two = [check, Check("t:{ip:b}:noscript:g", "gcra", HOUR, 5)]
        assert [o.remaining for o in await storage.apply(two)] == [2, 4]  # pipelined path
    finally:
        await client.aclose()
        await storage.aclose()


async def test_redis_urls_with_password_and_database(tmp_path: Path) -> None:
    server = RedisServer(free_port(), tmp_path, password="s3cret-pw")
    server.start()
    good = RedisStorage(f"redis://:s3cret-pw@127.0.0.1:{server.port}/2")
    wrong = RedisStorage(f"redis://:wrong-pw@127.0.0.1:{server.port}/2")
    client = aioredis.Redis.from_url(f"redis://:s3cret-pw@127.0.0.1:{server.port}/2")
    try:
        assert good.url == f"redis://127.0.0.1:{server.port}/2"  # shown without the password
        assert (await good.apply([Check("t:{ip:a}:g", "gcra", HOUR, 5)]))[0].allowed
        assert await client.exists("t:{ip:a}:g")  # in database 2
        with pytest.raises(StorageUnavailable) as info:
            await wrong.ping()
        assert "wrong-pw" not in str(info.value) and "s3cret" not in str(info.value)
        assert info.value.reason.startswith("connection setup refused")
    finally:
        await client.aclose()
        await good.aclose()
        await wrong.aclose()
        server.kill()


def test_memory_storage_is_bounded() -> None:
    now = 1_800_000_000 * S
    storage = MemoryStorage(max_keys=1000, clock=lambda: now)
    for i in range(5000):
        storage.apply_now([Check(f"k{{ip:{i}}}:g", "gcra", S, 5)], now + i)
    assert len(storage) == 1000
    assert storage.evictions == 4000


def test_memory_storage_forgets_expired_counters() -> None:
    now = 1_800_000_000 * S
    storage = MemoryStorage()
    for i in range(100):
        storage.apply_now([Check(f"k{{ip:{i}}}:g", "gcra", S, 5)], now)
    assert len(storage) == 100
    storage.apply_now([Check("k{ip:x}:g", "gcra", S, 5)], now + 2 * S)
    assert len(storage) == 1  # the 100 held one second of state each, and it has passed


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("memcached://127.0.0.1", id="unknown-scheme"),
        pytest.param("http://127.0.0.1:6379", id="http"),
    ],
)
def test_unknown_storage_urls_are_refused(url: str) -> None:
    from apishield.errors import ConfigError

    with pytest.raises(ConfigError, match="memory:// or redis://"):
        open_storage(url)
