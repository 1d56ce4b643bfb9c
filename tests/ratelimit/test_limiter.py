"""Which checks a request makes: phases, keys, IPv6 networks, filters, headers, report mode."""

from __future__ import annotations

from typing import Any

import pytest

from apishield.ratelimit.limiter import Limiter, client_key
from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.rates import parse_rate
from apishield.ratelimit.settings import LimitSettings

NOW = 1_800_000_000_000_000


def limiter(rules: list[dict[str, Any]], **settings: Any) -> Limiter:
    return Limiter(
        LimitSettings.model_validate({"rules": rules, "auth_endpoints": False, **settings}),
        MemoryStorage(clock=lambda: NOW),
    )


async def hit(lim: Limiter, phase: Any = "ip", **request: Any) -> Any:
    values = {"client_ip": "198.51.100.7", "principal": None, "route": "/v1/a", "method": "GET"}
    values.update(request)
    return await lim.check(phase, **values)


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        pytest.param("198.51.100.7", "198.51.100.7", id="ipv4"),
        pytest.param("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64", id="ipv6-64"),
        pytest.param("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64", id="ipv6-same-64"),
        pytest.param("::ffff:198.51.100.7", "198.51.100.7", id="ipv4-mapped"),
        pytest.param("[2001:db8::1]", "2001:db8::/64", id="bracketed"),
        pytest.param("not-an-address:", "unknown", id="garbage"),
        pytest.param("", "unknown", id="empty"),
    ],
)
def test_clients_are_counted_by_address_or_ipv6_network(address: str, counted_as: str) -> None:
    assert client_key(address) == counted_as


async def test_one_ipv6_host_cannot_multiply_its_limit() -> None:
    lim = limiter([{"key": "ip", "rate": "2/hour"}])
    answers = [(await hit(lim, client_ip=f"2001:db8:0:7::{i:x}")).allowed for i in range(1, 5)]
    assert answers == [True, True, False, False]
    assert (await hit(lim, client_ip="2001:db8:0:8::1")).allowed  # another /64


def test_keys_are_hashed_and_tagged_by_the_narrowest_subject() -> None:
    lim = limiter(
        [
            {"name": "by-ip", "key": "ip", "rate": "5/minute"},
            {"name": "by-user-route", "key": ["route", "principal"], "rate": "5/minute"},
            {"name": "by-route", "key": "route", "rate": "5/minute"},
        ],
        key_prefix="acme:",
    )
    ip_checks = lim.plan(
        "ip", client_ip="198.51.100.7", principal=None, route="/v1/a", method="GET"
    )
    user_checks = lim.plan(
        "principal", client_ip="198.51.100.7", principal="iss|alice", route="/v1/a", method="GET"
    )
    keys = [p.check.key for p in ip_checks + user_checks]
    assert [k.split("{")[1].split(":")[0] for k in keys] == ["ip", "r", "p"]
    assert all(k.startswith("acme:{") for k in keys)
    for secret in ("198.51.100.7", "alice", "/v1/a"):
        assert not any(secret in k for k in keys)


async def test_principal_rules_wait_for_a_principal() -> None:
    lim = limiter([{"key": "principal", "rate": "1/hour"}, {"key": "ip", "rate": "100/hour"}])
    assert lim.plan("principal", client_ip="1.2.3.4", principal=None, route="/", method="GET") == []
    assert len(lim.plan("ip", client_ip="1.2.3.4", principal=None, route="/", method="GET")) == 1
    assert (await hit(lim, "principal", principal="iss|alice")).allowed
    assert not (await hit(lim, "principal", principal="iss|alice")).allowed
    assert (await hit(lim, "principal", principal="iss|bob")).allowed


@pytest.mark.parametrize(
    ("rule", "request_", "applies"),
    [
        pytest.param({"routes": ["/v1/a"]}, {"route": "/v1/a"}, True, id="route-listed"),
        pytest.param({"routes": ["/v1/a"]}, {"route": "/v1/b"}, False, id="route-other"),
        pytest.param({"methods": ["POST"]}, {"method": "GET"}, False, id="method-other"),
        pytest.param({"methods": ["GET"]}, {"method": "HEAD"}, True, id="head-is-get"),
        pytest.param({"when": "anonymous"}, {"principal": "i|a"}, False, id="anonymous-only"),
        pytest.param({"when": "authenticated"}, {}, False, id="authenticated-only"),
    ],
)
def test_rules_apply_where_they_say(
    rule: dict[str, Any], request_: dict[str, Any], applies: bool
) -> None:
    lim = limiter([{"key": "ip", "rate": "5/minute", **rule}])
    values: dict[str, Any] = {
        "client_ip": "1.2.3.4",
        "principal": None,
        "route": "/v1/a",
        "method": "GET",
    }
    values.update(request_)
    planned = lim.plan("ip", **values) + lim.plan("principal", **values)
    assert bool(planned) is applies


async def test_headers_follow_the_draft() -> None:
    lim = limiter(
        [{"name": "api", "key": "ip", "rate": "100/minute", "burst": 20, "quota": "1000/day"}]
    )
    verdict = await hit(lim)
    headers = dict(verdict.headers)
    assert headers[b"ratelimit-policy"] == b'"api";q=100;w=60, "api-quota";q=1000;w=86400'
    day_left = 86_400 - (NOW // 1_000_000) % 86_400
    assert headers[b"ratelimit"] == f'"api";r=19;t=1, "api-quota";r=999;t={day_left}'.encode()


async def test_refusals_name_the_limit_and_the_wait() -> None:
    lim = limiter(
        [
            {"name": "burst", "key": "ip", "rate": "60/minute", "burst": 2},
            {"name": "daily", "key": "principal", "quota": "1/day"},
        ]
    )
    for _ in range(2):
        assert (await hit(lim)).allowed
    refused = await hit(lim)
    assert (refused.allowed, refused.code, refused.retry_after) == (False, "rate_limited", 1)
    assert dict(refused.headers)[b"ratelimit"] == b'"burst";r=0;t=2'
    assert (await hit(lim, "principal", principal="i|a")).allowed
    quota = await hit(lim, "principal", principal="i|a")
    assert quota.code == "quota_exceeded"
    assert quota.retry_after == 86_400 - (NOW // 1_000_000) % 86_400


async def test_report_mode_counts_but_never_refuses() -> None:
    lim = limiter([{"key": "ip", "rate": "1/hour"}], mode="report")
    assert (await hit(lim)).code is None
    second = await hit(lim)
    assert second.allowed and second.code == "rate_limited"
    assert lim.metrics.reported["rate_limited"] == 1
    assert lim.metrics.refused["rate_limited"] == 0


async def test_a_refusal_gives_back_what_other_partitions_took() -> None:
    lim = limiter(
        [
            {"name": "route-wide", "key": "route", "rate": "1/hour"},
            {"name": "per-ip", "key": "ip", "rate": "2/hour"},
        ]
    )
    assert (await hit(lim)).allowed
    for _ in range(3):  # refused by route-wide: per-ip must not be charged
        assert not (await hit(lim)).allowed
    other_route = await hit(lim, route="/v1/b")
    assert other_route.allowed
    assert (
        dict(other_route.headers)[b"ratelimit"] == b'"route-wide";r=0;t=3600, "per-ip";r=0;t=3600'
    )


async def test_throttles_for_subjects_only_an_endpoint_knows() -> None:
    lim = limiter([])
    two_a_minute = parse_rate("2/minute")
    assert (await lim.throttle("login-user", "alice", two_a_minute)).allowed
    assert (await lim.throttle("login-user", "alice", two_a_minute)).allowed
    refused = await lim.throttle("login-user", "alice", two_a_minute)
    assert not refused.allowed and refused.error().code == "rate_limited"
    assert refused.retry_after == 30
    assert (await lim.throttle("login-user", "bob", two_a_minute)).allowed
    assert (await lim.throttle("reset-mail", "alice", two_a_minute)).allowed
