"""The stages as a client sees them: 429 problem+json, Retry-After, RateLimit fields, bans."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from apishield.ratelimit.guard import RateLimitGuard
from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.settings import LimitSettings
from apishield.ratelimit.storage import Storage
from tests.ratelimit.support import compose, ok_app, policy

NOW = 1_800_000_000_000_000  # a frozen clock: decisions do not depend on the test's speed
Factory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def gateway() -> AsyncIterator[Factory]:
    clients: list[httpx.AsyncClient] = []
    guards: list[RateLimitGuard] = []

    def build(
        limits: Any = None,
        *,
        storage: Storage | None = None,
        credential_headers: frozenset[bytes] = frozenset({b"x-test-user"}),
        client: str = "127.0.0.1",
        development: bool = False,
        guard: RateLimitGuard | None = None,
    ) -> httpx.AsyncClient:
        settings = LimitSettings.model_validate(limits if limits is not None else {})
        if guard is None:
            guard = RateLimitGuard(
                settings,
                storage=storage if storage is not None else MemoryStorage(clock=lambda: NOW),
                credential_headers=credential_headers,
            )
            guards.append(guard)
        the_policy = policy()
        if development:
            the_policy = the_policy.model_copy(update={"mode": "development"})
        app = compose(the_policy, guard)
        transport = httpx.ASGITransport(app=app, client=(client, 50000))
        c = httpx.AsyncClient(transport=transport, base_url="https://api.test")
        clients.append(c)
        return c

    yield build
    for c in clients:
        await c.aclose()
    for g in guards:
        await g.aclose()


async def statuses(
    client: httpx.AsyncClient, n: int, path: str = "/v1/open", **kw: Any
) -> list[int]:
    return [(await client.get(path, **kw)).status_code for _ in range(n)]


async def test_429_is_problem_json_with_retry_after(gateway: Factory) -> None:
    client = gateway([{"name": "api", "key": "ip", "rate": "60/minute", "burst": 3}])
    assert await statuses(client, 3) == [200, 200, 200]
    refused = await client.get("/v1/open")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["type"] == "urn:apishield:problem:rate_limited"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit-policy"] == '"api";q=60;w=60'
    assert refused.headers["ratelimit"] == '"api";r=0;t=3'
    assert "x-request-id" in refused.headers
    assert "hint" not in refused.json()  # production says only the code


async def test_successful_responses_carry_ratelimit(gateway: Factory) -> None:
    client = gateway([{"name": "api", "key": "ip", "rate": "100/minute", "burst": 20}])
    response = await client.get("/v1/open")
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"] == '"api";q=100;w=60'
    assert response.headers["ratelimit"] == '"api";r=19;t=1'


@pytest.mark.parametrize(
    ("mode", "on_success", "on_refusal"),
    [
        pytest.param("always", True, True, id="always"),
        pytest.param("refusals", False, True, id="refusals"),
        pytest.param(False, False, False, id="off"),
    ],
)
async def test_header_setting(
    gateway: Factory, mode: Any, on_success: bool, on_refusal: bool
) -> None:
    client = gateway({"rules": [{"key": "ip", "rate": "1/hour"}], "headers": mode})
    ok = await client.get("/v1/open")
    refused = await client.get("/v1/open")
    assert ("ratelimit" in ok.headers) is on_success
    assert ("ratelimit" in refused.headers) is on_refusal
    assert refused.headers["retry-after"] == "3600"  # always, whatever the setting


async def test_anonymous_rules_never_lock_out_authenticated_neighbours(gateway: Factory) -> None:
    client = gateway([{"key": "ip", "rate": "3/hour", "when": "anonymous"}])
    alice = {"x-test-user": "alice"}
    # Callers without credentials use up the address's anonymous budget...
    assert await statuses(client, 4) == [200, 200, 200, 429]
    # ...which authenticated callers behind the same address do not share.
    assert await statuses(client, 10, headers=alice) == [200] * 10


async def test_refused_credentials_are_throttled_before_verification(gateway: Factory) -> None:
    client = gateway([{"key": "ip", "rate": "3/hour", "when": "anonymous"}])
    assert await statuses(client, 3, headers={"x-test-user": "bad"}) == [401] * 3
    flood = await client.get("/v1/open", headers={"x-test-user": "bad"})
    assert flood.status_code == 429  # refused before any credential is looked at
    assert flood.json()["code"] == "rate_limited"
    # Until the refusals age out, the address's credentials are not tried at all: that is the
    # price of never verifying a flood, and it is paid only while a flood comes from it.
    assert (await client.get("/v1/open", headers={"x-test-user": "alice"})).status_code == 429
    assert await statuses(client, 3) == [200] * 3  # callers without credentials: own budget


async def test_anonymous_counts_are_given_back_when_the_request_authenticates(
    gateway: Factory,
) -> None:
    # A request may authenticate without a credential header (mutual TLS, a session): it was
    # counted as anonymous before authentication and is given back after it.
    guard = RateLimitGuard(
        LimitSettings.model_validate([{"key": "ip", "rate": "2/hour", "when": "anonymous"}]),
        storage=MemoryStorage(clock=lambda: NOW),
        credential_headers=frozenset({b"authorization"}),  # the stand-in's header is not one
    )
    try:
        client = gateway(guard=guard)
        alice = {"x-test-user": "alice"}
        assert await statuses(client, 5, headers=alice) == [200] * 5
        assert await statuses(client, 3) == [200, 200, 429]
    finally:
        await guard.aclose()


async def test_principal_rules_follow_the_caller_not_the_address(gateway: Factory) -> None:
    limits = [{"key": "principal", "rate": "2/hour"}]
    here = gateway(limits)
    alice = {"x-test-user": "alice"}
    assert await statuses(here, 3, headers=alice) == [200, 200, 429]
    assert await statuses(here, 1, headers={"x-test-user": "bob"}) == [200]
    assert await statuses(here, 5) == [200] * 5  # anonymous: no principal rule applies


async def test_quota_is_its_own_code(gateway: Factory) -> None:
    client = gateway([{"key": "principal", "quota": "2/day"}])
    alice = {"x-test-user": "alice"}
    assert await statuses(client, 2, headers=alice) == [200, 200]
    refused = await client.get("/v1/open", headers=alice)
    assert refused.status_code == 429
    assert refused.json()["code"] == "quota_exceeded"
    assert int(refused.headers["retry-after"]) == 86_400 - (NOW // 1_000_000) % 86_400


async def test_concurrency_caps_requests_in_flight(gateway: Factory) -> None:
    client = gateway([{"key": "principal", "concurrency": 1}])
    alice = {"x-test-user": "alice"}
    first, second = await asyncio.gather(
        client.get("/v1/slow", headers=alice),
        client.get("/v1/slow", headers=alice),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 429]
    refused = first if first.status_code == 429 else second
    assert refused.json()["code"] == "concurrency_limited"
    assert refused.headers["retry-after"] == "1"
    # The slot came back when the request finished.
    assert (await client.get("/v1/slow", headers=alice)).status_code == 200


async def test_defaults_apply_without_a_limits_section(gateway: Factory) -> None:
    client = gateway()  # no rules given: the secure defaults
    anonymous = await statuses(client, 101)
    assert anonymous == [200] * 100 + [429]
    user = await statuses(client, 201, headers={"x-test-user": "alice"})
    assert user == [200] * 200 + [429]


async def test_token_endpoint_and_login_are_stricter(gateway: Factory) -> None:
    client = gateway([{"key": "principal", "rate": "1000/minute"}])  # rules given: still strict
    assert await statuses(client, 21, "/oauth2/token") == [200] * 20 + [429]
    posts = [(await client.post("/oauth2/login")).status_code for _ in range(6)]
    assert posts == [200] * 5 + [429]
    assert await statuses(client, 10, "/oauth2/login") == [200] * 10  # showing the page is free
    loose = gateway({"rules": [], "auth_endpoints": False}, client="127.0.0.2")
    assert await statuses(loose, 30, "/oauth2/token") == [200] * 30


async def test_report_mode_lets_everything_through(
    gateway: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    client = gateway({"rules": [{"key": "ip", "rate": "1/hour"}], "mode": "report"})
    with caplog.at_level("INFO", logger="apishield.audit"):
        assert await statuses(client, 3) == [200, 200, 200]
    events = [r.getMessage() for r in caplog.records if r.name == "apishield.audit"]
    assert sum('"reported":["rate_limited"]' in e for e in events) == 2


BANS = [
    pytest.param("198.51.100.7", "198.51.100.7", id="address"),
    pytest.param("198.51.100.0/24", "198.51.100.99", id="network"),
    pytest.param("2001:db8::/32", "2001:db8:1::5", id="ipv6-network"),
    pytest.param("2001:db8::5", "2001:db8::5", id="ipv6-address"),
]


@pytest.mark.parametrize(("banned", "client_ip"), BANS)
async def test_banned_addresses_get_403(gateway: Factory, banned: str, client_ip: str) -> None:
    guard = RateLimitGuard(LimitSettings(), storage=MemoryStorage())
    try:
        await guard.bans.add(banned, ttl=60, reason="credential stuffing from this range")
        client = gateway(guard=guard, client=client_ip)
        refused = await client.get("/v1/open")
        assert refused.status_code == 403
        assert refused.json()["code"] == "banned"
        assert "stuffing" not in refused.text  # the reason is for the operator
        neighbour = gateway(guard=guard, client="192.0.2.1")
        assert (await neighbour.get("/v1/open")).status_code == 200
        assert guard.metrics.banned == 1
    finally:
        await guard.aclose()


async def test_banned_principals_get_403_and_development_shows_why(gateway: Factory) -> None:
    guard = RateLimitGuard(LimitSettings(), storage=MemoryStorage())
    try:
        await guard.bans.add("principal:test|mallory", ttl=60, reason="scraping")
        client = gateway(guard=guard, development=True)
        refused = await client.get("/v1/open", headers={"x-test-user": "mallory"})
        assert refused.status_code == 403
        assert refused.json()["code"] == "banned"
        assert "scraping" in refused.json()["hint"]
        assert (await client.get("/v1/open", headers={"x-test-user": "alice"})).status_code == 200
    finally:
        await guard.aclose()


async def test_lifespan_shutdown_closes_the_guard() -> None:
    guard = RateLimitGuard(LimitSettings(), storage=MemoryStorage())
    app = compose(policy(), guard, ok_app)
    sent: list[str] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert guard.closed
