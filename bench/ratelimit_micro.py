"""CPU cost per request of the rate-limit stages, over ``memory://`` and ``redis://``.

Calls the stages in-process, as ASGI apps, from several concurrent tasks on uvloop, with the
request context the earlier stages would have set, and reports process CPU time
(``time.process_time``) per request. Rows:

- ``gcra decision``: the pure algorithm alone (``algorithms.gcra``), the floor.
- ``limiter.check``: keys, the storage call, the verdict and the RateLimit fields, for one
  request in one phase (one rule by address, one by principal).
- ``both stages``: ``RateLimitMiddleware`` before and after authentication around a no-op
  app, minus the no-op app: what the limits add to a request of the gateway.
- ``ban check``: ``BanMiddleware`` with an empty list and with 1000 bans (no I/O either way).

For ``redis://`` (a Redis at ``--redis``, keys under a prefix of their own, deleted at the end)
the Redis server's own CPU per request is read from ``INFO cpu`` and reported apart, since on a
real deployment it runs elsewhere. The ratio column compares with nginx's CPU per request as a
keep-alive proxy: the latest ``bench/results/*.json`` row ``nginx`` of ``run.py`` when there is
one (same machine), else DESIGN's 15 µs.

    python bench/ratelimit_micro.py [--requests 20000] [--concurrency 8]
                                    [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from apishield.identity.principal import Principal
from apishield.pipeline.bans import BanMiddleware
from apishield.pipeline.context import SCOPE_KEY, RequestContext
from apishield.pipeline.ratelimit import RateLimitMiddleware
from apishield.ratelimit import algorithms
from apishield.ratelimit.guard import RateLimitGuard
from apishield.ratelimit.settings import LimitSettings
from apishield.types import ASGIApp, Message

RESULTS = Path(__file__).parent / "results"
DESIGN_NGINX_US = 15.0
ADDRESSES = [f"198.51.{i // 250}.{i % 250 + 1}" for i in range(1000)]


class _Route:
    template = "/v2/orders/{order_id}"


def nginx_cpu_us() -> tuple[float, str]:
    """nginx's CPU µs per request from the latest run.py result, or DESIGN's figure."""
    for path in sorted(RESULTS.glob("*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
            for row in data.get("rows", []):
                if row.get("key") == "nginx" and row.get("cpu_us_per_request"):
                    return float(row["cpu_us_per_request"]), path.name
        except (ValueError, OSError, AttributeError):
            continue
    return DESIGN_NGINX_US, "DESIGN.md"


def settings(prefix: str) -> LimitSettings:
    return LimitSettings.model_validate(
        {
            "rules": [
                {"name": "ip", "key": "ip", "rate": "1000000/minute"},
                {"name": "principal", "key": "principal", "rate": "1000000/minute"},
            ],
            "auth_endpoints": False,
            "key_prefix": prefix,
        }
    )


def scope(i: int) -> dict[str, Any]:
    ctx = RequestContext(
        request_id="5f2b9c1e8a7d4c3b2a190817",
        client_ip=ADDRESSES[i % len(ADDRESSES)],
        scheme="https",
        host="api.example.com",
    )
    ctx.route = _Route()  # type: ignore[assignment]
    ctx.principal = Principal(issuer="apikey", subject=f"client-{i % 100}", kind="api_key")
    return {
        SCOPE_KEY: ctx,
        "type": "http",
        "method": "GET",
        "path": "/v2/orders/42",
        "headers": [(b"host", b"api.example.com"), (b"x-api-key", b"ask_live_x")],
    }


async def noop(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def per_request(
    call: Callable[[int], Awaitable[None]], requests: int, concurrency: int
) -> float:
    """CPU µs per call, ``concurrency`` tasks each making ``requests / concurrency`` calls."""
    per_task = requests // concurrency

    async def worker(offset: int, count: int) -> None:
        for i in range(count):
            await call(offset + i * concurrency)

    await asyncio.gather(*(worker(t, 200) for t in range(concurrency)))  # warm up
    start = time.process_time()
    await asyncio.gather(*(worker(t, per_task) for t in range(concurrency)))
    return (time.process_time() - start) / (per_task * concurrency) * 1e6


async def app_cost(app: ASGIApp, requests: int, concurrency: int) -> float:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    async def call(i: int) -> None:
        await app(scope(i), receive, send)

    return await per_request(call, requests, concurrency)


async def redis_cpu(url: str) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        await client.aclose()


async def measure(url: str, requests: int, concurrency: int) -> dict[str, float]:
    prefix = f"apishield-bench:{uuid.uuid4().hex[:12]}:"
    guard = RateLimitGuard(settings(prefix), url)
    limiter = guard.limiter
    stages: ASGIApp = RateLimitMiddleware(
        RateLimitMiddleware(noop, guard=guard, phase="principal"), guard=guard, phase="ip"
    )
    out: dict[str, float] = {}
    try:

        async def check(i: int) -> None:
            await limiter.check(
                "ip",
                client_ip=ADDRESSES[i % len(ADDRESSES)],
                principal=None,
                route=_Route.template,
                method="GET",
            )

        before = await redis_cpu(url) if url != "memory://" else 0.0
        out["limiter.check"] = await per_request(check, requests, concurrency)
        floor = await app_cost(noop, requests, concurrency)
        out["both stages"] = await app_cost(stages, requests, concurrency) - floor
        if url != "memory://":
            spent = await redis_cpu(url) - before
            calls = requests + 2 * requests + 3 * 200 * concurrency  # measured + warm-ups
            out["redis-server per EVALSHA"] = spent / calls * 1e6
        if guard.metrics.fallbacks:
            raise RuntimeError("Redis failed during the run: the figures are not Redis's")
    finally:
        await guard.aclose()
        if url != "memory://":
            client = aioredis.Redis.from_url(url)
            try:
                keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()
    return out


async def bans_cost(requests: int, concurrency: int, count: int) -> float:
    guard = RateLimitGuard(settings("apishield-bench:"), "memory://")
    try:
        for i in range(count):
            await guard.bans.add(f"203.0.{i // 250}.{i % 250 + 1}", ttl=3600, reason="bench")
        if count:
            await guard.bans.add("2001:db8::/32", ttl=3600, reason="bench")  # one network
        app = BanMiddleware(noop, guard=guard, subject="ip")
        return await app_cost(app, requests, concurrency) - await app_cost(
            noop, requests, concurrency
        )
    finally:
        await guard.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    import uvloop

    def gcra_floor() -> float:
        tat: int | None = None
        now = time.time_ns() // 1000
        start = time.process_time()
        for i in range(args.requests):
            _, tat = algorithms.gcra(now + i, tat, 60, 1_000_000)
        return (time.process_time() - start) / args.requests * 1e6

    async def run() -> dict[str, dict[str, float]]:
        return {
            "memory://": await measure("memory://", args.requests, args.concurrency),
            "redis://": await measure(args.redis, args.requests, args.concurrency),
            "bans": {
                "ban check, empty list": await bans_cost(args.requests, args.concurrency, 0),
                "ban check, 1000 bans": await bans_cost(args.requests, args.concurrency, 1000),
            },
        }

    results = uvloop.run(run())
    results["pure"] = {"gcra decision": gcra_floor()}
    nginx, source = nginx_cpu_us()
    print(f"CPU µs per request (one core, {args.requests} requests, {args.concurrency} tasks)")
    print(f"nginx keep-alive proxy: {nginx:.1f} µs per request (from {source})\n")
    print(f"{'storage':10} {'what':28} {'CPU µs':>8} {'÷ nginx':>8}")
    for storage, rows in results.items():
        for what, value in rows.items():
            print(f"{storage:10} {what:28} {value:8.1f} {value / nginx:8.2f}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M%S")
    out = RESULTS / f"ratelimit-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "date": stamp,
                "requests": args.requests,
                "concurrency": args.concurrency,
                "nginx_cpu_us_per_request": nginx,
                "nginx_source": source,
                "cpu_us_per_request": results,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
