"""Two gateway processes sharing one Redis: limits exact across them, bans applied by both."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.processes import gateway_processes, ports_of
from tests.ratelimit.conftest import SHARED_REDIS

ROOT = Path(__file__).resolve().parents[2]
LIMITS = [
    {"name": "exact", "key": "ip", "rate": "100/hour", "routes": ["/v1/limited"]},
    {
        "name": "exact-window",
        "key": "ip",
        "rate": "100/hour",
        "algorithm": "sliding_window",
        "routes": ["/v1/window"],
    },
]


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[int], str]]:
    """Two gateway processes on spare loopback ports, one Redis prefix of their own."""
    prefix = f"apishield-test:{uuid.uuid4().hex[:12]}:"
    directory = tmp_path_factory.mktemp("gateways")
    limits = {"rules": LIMITS, "key_prefix": prefix, "ban_refresh": "100ms"}
    env = {"APISHIELD_TEST_CACHE": SHARED_REDIS, "APISHIELD_TEST_LIMITS": json.dumps(limits)}
    try:
        with gateway_processes("tests.ratelimit.gateway_app", [env] * 2, directory):
            yield ports_of(directory, 2), prefix
    finally:
        client = redis.Redis.from_url(SHARED_REDIS)
        try:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


async def spread(ports: list[int], path: str, total: int) -> list[Counter[int]]:
    """``total`` GETs, alternating between the gateways, 16 in flight at a time."""
    per_port: list[Counter[int]] = [Counter() for _ in ports]
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int) -> None:
            which = i % len(ports)
            async with limit:
                response = await client.get(f"http://127.0.0.1:{ports[which]}{path}")
            per_port[which][response.status_code] += 1

        await asyncio.gather(*(one(i) for i in range(total)))
    return per_port


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", [pytest.param("/v1/limited", id="gcra"), pytest.param("/v1/window", id="sliding")]
)
async def test_two_gateways_allow_exactly_the_limit(
    gateways: tuple[list[int], str], path: str
) -> None:
    ports, _ = gateways
    per_port = await spread(ports, path, 1000)
    total = sum(per_port, Counter())
    assert total == Counter({200: 100, 429: 900})
    assert all(counts[200] > 0 for counts in per_port)  # both gateways drew on one limit


async def cli(prefix: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from apishield.ratelimit.cli import bans_app; bans_app()",
        *args,
        "--cache",
        SHARED_REDIS,
        "--prefix",
        prefix,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out
    return out.decode()


async def statuses(ports: list[int]) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        return [(await client.get(f"http://127.0.0.1:{p}/v1/open")).status_code for p in ports]


@pytest.mark.slow
async def test_bans_apply_on_both_gateways_and_expire(gateways: tuple[list[int], str]) -> None:
    ports, prefix = gateways
    assert await statuses(ports) == [200, 200]
    await cli(prefix, "add", "127.0.0.1", "--ttl", "3s", "--reason", "test")
    deadline = time.monotonic() + 10
    seen = await statuses(ports)
    while seen != [403, 403] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        seen = await statuses(ports)
    assert seen == [403, 403]
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"http://127.0.0.1:{ports[0]}/v1/open")
    assert refused.json()["code"] == "banned"
    deadline = time.monotonic() + 15
    while seen != [200, 200] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        seen = await statuses(ports)
    assert seen == [200, 200]  # the ban expired on both, by itself
    assert "no bans in force" in await cli(prefix, "list")
