"""Client address from trusted proxies only, HTTPS only, HSTS, request ids."""

from __future__ import annotations

import copy
import json
import logging

import pytest

from apishield.pipeline.transport import resolve_client
from tests.pipeline.conftest import BASE_POLICY, ClientFactory

TRUSTED = [__import__("ipaddress").ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        pytest.param("203.0.113.9", "1.2.3.4", "203.0.113.9", id="untrusted-peer-ignored"),
        pytest.param("10.0.0.2", "198.51.100.7", "198.51.100.7", id="trusted-peer"),
        pytest.param("10.0.0.2", "6.6.6.6, 198.51.100.7", "198.51.100.7", id="spoofed-prefix"),
        pytest.param(
            "10.0.0.2", "198.51.100.7, 10.0.0.5", "198.51.100.7", id="chain-of-our-proxies"
        ),
        pytest.param("10.0.0.2", "garbage", "10.0.0.2", id="garbage"),
        pytest.param("10.0.0.2", None, "10.0.0.2", id="no-header"),
        pytest.param("10.0.0.2", "2001:db8::1", "2001:db8::1", id="ipv6"),
    ],
)
def test_resolve_client(peer: str, xff: str | None, expected: str) -> None:
    assert resolve_client(peer, xff, TRUSTED) == expected


def policy_with_proxy() -> dict[str, object]:
    policy = copy.deepcopy(BASE_POLICY)
    policy["trusted_proxies"] = ["10.0.0.0/8"]
    return policy


async def test_plain_http_get_redirected(make_client: ClientFactory) -> None:
    client = make_client(policy_with_proxy(), base_url="http://api.test", client=("10.0.0.2", 1))
    response = await client.get(
        "/v2/items?page=2", headers={"x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "http"}
    )
    assert response.status_code == 301
    assert response.headers["location"] == "https://api.test/v2/items?page=2"
    assert "strict-transport-security" not in response.headers


async def test_plain_http_post_refused(make_client: ClientFactory) -> None:
    client = make_client(base_url="http://api.test", client=("198.51.100.7", 1))
    response = await client.post("/v2/items", json={})
    assert response.status_code == 403
    assert response.json()["code"] == "https_required"


async def test_plain_http_from_loopback_allowed(make_client: ClientFactory) -> None:
    client = make_client(base_url="http://localhost", client=("127.0.0.1", 1))
    response = await client.get("/health")
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers


async def test_hsts_on_https(make_client: ClientFactory) -> None:
    client = make_client(client=("198.51.100.7", 1))
    response = await client.get("/health")
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


async def test_forwarded_headers_from_untrusted_peer_ignored(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(client=("198.51.100.7", 1))
    with caplog.at_level(logging.INFO, logger="apishield.audit"):
        response = await client.get(
            "/health",
            headers={"x-forwarded-for": "1.1.1.1", "x-request-id": "attacker-chosen-id-0001"},
        )
    assert response.status_code == 200
    event = json.loads(caplog.records[-1].getMessage())
    assert event["client"] == "198.51.100.7"
    assert event["request_id"] != "attacker-chosen-id-0001"


async def test_request_id_from_trusted_proxy(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(policy_with_proxy(), client=("10.1.2.3", 1))
    with caplog.at_level(logging.INFO, logger="apishield.audit"):
        response = await client.get(
            "/nope",
            headers={"x-forwarded-for": "198.51.100.7", "x-request-id": "edge-0123456789"},
        )
    assert response.json()["request_id"] == "edge-0123456789"
    event = json.loads(caplog.records[-1].getMessage())
    assert event["client"] == "198.51.100.7"
    assert event["request_id"] == "edge-0123456789"


async def test_require_https_can_be_switched_off(make_client: ClientFactory) -> None:
    policy = copy.deepcopy(BASE_POLICY)
    policy["listen"] = {"require_https": False}
    client = make_client(policy, base_url="http://api.test", client=("198.51.100.7", 1))
    response = await client.post("/v2/items", json={})
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers


async def test_every_response_carries_its_request_id(make_client: ClientFactory) -> None:
    client = make_client()
    ok = await client.get("/health")
    refused = await client.get("/nope")
    assert len(ok.headers["x-request-id"]) == 24
    assert refused.headers["x-request-id"] == refused.json()["request_id"]
    assert ok.headers["x-request-id"] != refused.headers["x-request-id"]
