"""One JSON audit event per request; no secret ever reaches a log line."""

from __future__ import annotations

import json
import logging

import pytest

from tests.pipeline.conftest import ClientFactory

SECRETS = {
    "authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.c2ln",
    "cookie": "session=s3cr3t-cookie-value-42",
    "x-api-key": "ask_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
}


async def test_one_event_per_request(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(client=("198.51.100.7", 4444))
    with caplog.at_level(logging.INFO, logger="apishield.audit"):
        await client.get("/v2/items/42")
        await client.patch("/v2/items/42")
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.audit"]
    assert len(events) == 2
    ok, refused = events
    assert ok["method"] == "GET" and ok["route"] == "/v2/items/{item_id}" and ok["status"] == 200
    assert ok["client"] == "198.51.100.7" and "code" not in ok and "path" not in ok
    assert ok["duration_ms"] >= 0
    assert refused["status"] == 405 and refused["code"] == "method_not_allowed"


async def test_no_secret_in_any_log_line(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    with caplog.at_level(logging.DEBUG):
        await client.get("/v2/items?access_token=qs-secret-123456", headers=SECRETS)
        await client.get("/unknown/path?api_key=qs-secret-123456", headers=SECRETS)
        await client.post(
            "/v2/items",
            headers=SECRETS,
            content=b"{bad",
        )
    ours = [r for r in caplog.records if r.name.startswith("apishield")]
    text = "\n".join(r.getMessage() for r in ours)
    assert len(ours) >= 3
    for secret in [*SECRETS.values(), "qs-secret-123456", "s3cr3t", "ask_live_"]:
        assert secret not in text
    unknown = [json.loads(r.getMessage()) for r in ours if "/unknown" in r.getMessage()]
    assert unknown[0]["path"] == "/unknown/path"


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        pytest.param("/reset/ask_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0", "/reset/", id="api-key"),
        pytest.param("/x/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "/x/", id="jwt"),
        pytest.param(
            "/orders/customer-records-archive",
            "/orders/customer-records-archive",
            id="long-word-kept",
        ),
        pytest.param("/v9/items/12345", "/v9/items/12345", id="short-ids-kept"),
    ],
)
async def test_credential_like_path_segments_are_redacted(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture, path: str, kept: str
) -> None:
    client = make_client()
    with caplog.at_level(logging.INFO, logger="apishield.audit"):
        await client.get(path)
    event = json.loads(caplog.records[-1].getMessage())
    assert event["path"].startswith(kept)
    secret = path.rsplit("/", 1)[1]
    if kept != path:
        assert secret not in event["path"] and "[redacted:" in event["path"]
    else:
        assert event["path"] == path
