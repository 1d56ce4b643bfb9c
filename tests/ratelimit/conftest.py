"""Fixtures: unique key prefixes on the shared Redis, storages of every kind, a Redis of our own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.redisstore import RedisStorage
from apishield.ratelimit.storage import Storage
from tests.ratelimit.support import RedisServer, free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted from the shared Redis afterwards."""
    value = f"apishield-test:{uuid.uuid4().hex[:12]}:"
    yield value
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        keys = list(client.scan_iter(match=value + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
async def storage(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Storage]:
    """The same tests over every storage backend (STYLE: one parametrization)."""
    store: Storage
    if request.param == "memory":
        store = MemoryStorage()
    else:
        # A generous timeout: these tests are about exactness, not about a slow Redis, and CI
        # machines are busy (the production default of 100 ms is tested on its own).
        store = RedisStorage(SHARED_REDIS, key_prefix=prefix, timeout=2.0)
    yield store
    await store.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server on a spare loopback port that the test may kill and restart."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.kill()
