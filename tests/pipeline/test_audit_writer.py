"""The audit stage through the direct writer ``apishield serve`` installs: same events, same
redaction as through the ``apishield.audit`` logger."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator

import pytest

from apishield.observe.auditlog import AuditLog, install_audit_log
from tests.pipeline.conftest import ClientFactory

SECRETS = {
    "authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.c2ln",
    "cookie": "session=s3cr3t-cookie-value-42",
    "x-api-key": "ask_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
}


@pytest.fixture
def audit_pipe() -> Iterator[int]:
    """Installs a direct writer on a pipe; yields the pipe's read end."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    previous = install_audit_log(AuditLog(write))
    try:
        yield read
    finally:
        install_audit_log(previous)
        os.close(read)
        os.close(write)


async def events(fd: int) -> list[dict[str, object]]:
    await asyncio.sleep(0)  # the loop turn ends: its events are written
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    return [json.loads(line) for line in data.decode().splitlines()]


async def test_one_event_per_request_in_order(
    make_client: ClientFactory, audit_pipe: int
) -> None:
    client = make_client(client=("198.51.100.7", 4444))
    await client.get("/v2/items/42")
    await client.patch("/v2/items/42")
    await client.get("/v1/items")
    ok, refused, old = await events(audit_pipe)
    assert ok["event"] == "request" and ok["method"] == "GET"
    assert ok["route"] == "/v2/items/{item_id}" and ok["status"] == 200
    assert ok["client"] == "198.51.100.7" and "code" not in ok and "path" not in ok
    assert isinstance(ok["ts"], float) and isinstance(ok["duration_ms"], float)
    assert isinstance(ok["request_id"], str) and ok["request_id"]
    assert refused["status"] == 405 and refused["code"] == "method_not_allowed"
    assert old["version"] == "v1"


async def test_no_secret_and_no_credential_like_segment_reaches_the_line(
    make_client: ClientFactory, audit_pipe: int
) -> None:
    client = make_client()
    await client.get("/v2/items?access_token=qs-secret-123456", headers=SECRETS)
    await client.get(
        "/reset/ask_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0?api_key=qs-secret-123456",
        headers=SECRETS,
    )
    await client.get('/unknown/"quoted"\\path')
    await asyncio.sleep(0)
    raw = os.read(audit_pipe, 1 << 16).decode()
    for secret in [*SECRETS.values(), "qs-secret-123456", "s3cr3t", "ask_live_"]:
        assert secret not in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    assert lines[1]["path"].startswith("/reset/[redacted:")
    assert lines[2]["path"] == '/unknown/"quoted"\\path'  # escaped in the line, intact when read
