"""Redis dies mid-run: no request fails, per-process limits take over, an alert fires, a metric
counts it, and Redis is used again when it returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from apishield.ratelimit.guard import RateLimitGuard
from apishield.ratelimit.settings import LimitSettings
from tests.ratelimit.support import RedisServer, compose, policy

PREFIX = "fallback-test:"


def alerts(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.alerts"]


def settings(**extra: object) -> LimitSettings:
    return LimitSettings.model_validate(
        {
            "rules": [{"name": "tight", "key": "ip", "rate": "5/hour", "routes": ["/v1/limited"]}],
            "key_prefix": PREFIX,
            "probe_interval": "200ms",
            **extra,
        }
    )


@contextlib.asynccontextmanager
async def client_for(guard: RateLimitGuard) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=compose(policy(guard.shared.url), guard))
    async with httpx.AsyncClient(transport=transport, base_url="https://api.test") as client:
        try:
            yield client
        finally:
            await guard.aclose()


@pytest.mark.slow
async def test_redis_killed_mid_run(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="apishield.alerts")
    guard = RateLimitGuard(settings(), own_redis.url)
    seen: list[int] = []
    async with client_for(guard) as client:

        async def burst(n: int, path: str = "/v1/open") -> list[int]:
            answers = await asyncio.gather(*(client.get(path) for _ in range(n)))
            codes = [a.status_code for a in answers]
            seen.extend(codes)
            return codes

        # Shared limits in Redis.
        assert sorted(await burst(7, "/v1/limited")) == [200] * 5 + [429] * 2
        await burst(20)
        assert not guard.metrics.degraded

        own_redis.kill()
        # Requests keep being answered; the limits now live in this process, fresh.
        assert sorted(await burst(7, "/v1/limited")) == [200] * 5 + [429] * 2
        await burst(30)
        assert guard.metrics.degraded and guard.metrics.fallbacks == 1
        down = [a for a in alerts(caplog) if a["alert"] == "ratelimit_storage_unavailable"]
        assert len(down) == 1  # one alert, not one per request
        assert down[0]["storage"] == own_redis.url
        assert down[0]["error"] in ("connection lost", "ConnectionRefusedError")

        own_redis.start()
        deadline = time.monotonic() + 15
        while guard.metrics.degraded and time.monotonic() < deadline:
            await burst(2, "/v1/limited")  # Redis is probed while limited traffic arrives
            await asyncio.sleep(0.1)
        assert not guard.metrics.degraded and guard.metrics.recoveries == 1
        assert any(a["alert"] == "ratelimit_storage_recovered" for a in alerts(caplog))

        # Redis is used again: a fresh Redis (nothing was saved) holds the counters anew.
        assert sorted(await burst(7, "/v1/limited")) == [200] * 5 + [429] * 2
        check = aioredis.Redis.from_url(own_redis.url)
        try:
            assert [k async for k in check.scan_iter(match=PREFIX + "*")]
        finally:
            await check.aclose()
    assert set(seen) <= {200, 429}, "a request failed because Redis died"
    assert len(seen) >= 71


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accept, read, never answer: a Redis that hangs
    writer.close()


async def test_a_hanging_redis_costs_one_short_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="apishield.alerts")
    server = await asyncio.start_server(_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    guard = RateLimitGuard(settings(storage_timeout="100ms"), f"redis://127.0.0.1:{port}/0")
    try:
        async with client_for(guard) as client:
            started = time.monotonic()
            first = await client.get("/v1/limited")
            assert first.status_code == 200
            assert time.monotonic() - started < 5  # generous: about 2 x 100 ms in practice
            assert [(await client.get("/v1/limited")).status_code for _ in range(5)] == [
                200
            ] * 4 + [429]
        assert guard.metrics.fallbacks == 1
        assert alerts(caplog)[0]["error"] == "timeout"
    finally:
        server.close()
        await server.wait_closed()
