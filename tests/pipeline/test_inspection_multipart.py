"""Stage 11 over ``multipart/form-data`` bodies, as a client and the app behind it see it."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apishield import protect
from apishield.types import Receive, Scope, Send
from tests.pipeline.conftest import BASE_POLICY
from tests.proxy.upstreams import served

ROUTE = "/v2/attachments"
POLICY: dict[str, Any] = copy.deepcopy(BASE_POLICY)
POLICY["routes"] += [
    {
        "path": ROUTE,
        "methods": ["POST"],
        "allow": "public",
        "content_types": ["multipart/form-data"],
        "body_limit": "16KiB",
    },
    {
        "path": "/v2/snippets",
        "methods": ["POST"],
        "allow": "public",
        "content_types": ["multipart/form-data"],
    },
]
POLICY["inspection"] = {
    "exclude": [{"route": "/v2/snippets", "field": "body.sql", "detectors": ["sqli"]}]
}

BOUNDARY = "formboundary4d2c"
CONTENT_TYPE = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
PNG_LIKE = b"\x89PNG\r\n\x1a\n\x00\x00' OR 1=1--<script>alert(1)</script>../../etc/passwd\xff\xfe"


async def digest_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind the gateway: answers with the SHA-256 and length of the body it got."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    received = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        received += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.dumps(
        {"sha256": hashlib.sha256(received).hexdigest(), "length": len(received)}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def form(*parts: tuple[str, bytes, bytes | None]) -> bytes:
    """A multipart body: (Content-Disposition parameters, data, Content-Type or None) per part."""
    out = b""
    for params, data, media_type in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: form-data; {params}\r\n".encode()
        if media_type is not None:
            out += b"Content-Type: " + media_type + b"\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client() -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    def factory(**inspection: Any) -> httpx.AsyncClient:
        policy = {**POLICY, "inspection": {**POLICY["inspection"], **inspection}}
        transport = httpx.ASGITransport(
            app=protect(digest_app, policy), client=("127.0.0.1", 50000)
        )
        c = httpx.AsyncClient(transport=transport, base_url="https://api.test")
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


BENIGN = form(
    ('name="author"', "O'Brien, Zürich".encode(), None),
    ('name="note"', b"Tom & Jerry; 5 < 6 -- see attached", None),
    ('name="scan"; filename="report (final).pdf"', PNG_LIKE, b"image/png"),
    ('name="notes"; filename="query.sql"', b"SELECT * FROM users WHERE 1=1; --", b"text/plain"),
)


async def test_benign_upload_reaches_the_app_byte_for_byte(client: ClientFactory) -> None:
    response = await client().post(ROUTE, content=BENIGN, headers=CONTENT_TYPE)
    assert response.status_code == 200
    assert response.json() == {"sha256": hashlib.sha256(BENIGN).hexdigest(), "length": len(BENIGN)}


ATTACKS = [
    pytest.param(form(('name="q"', b"' OR '1'='1' --", None)), "sqli_detected", id="sqli-field"),
    pytest.param(
        form(('name="bio"', b"<svg/onload=alert('marker-7f3a')>", None)),
        "xss_detected",
        id="xss-field",
    ),
    pytest.param(
        form(('name="host"', b"8.8.8.8;cat /etc/passwd", None)), "cmdi_detected", id="cmdi-field"
    ),
    pytest.param(
        form(('name="<script>marker-7f3a</script>"', b"1", None)),
        "xss_detected",
        id="xss-field-name",
    ),
    pytest.param(
        form(('name="f"; filename="../../../etc/passwd"', b"marker-7f3a", None)),
        "path_traversal_detected",
        id="traversal-filename",
    ),
    pytest.param(
        form(('name="f"; filename="<img src=x onerror=alert(1)>marker-7f3a.png"', b"", None)),
        "xss_detected",
        id="xss-filename",
    ),
]


@pytest.mark.parametrize(("data", "code"), ATTACKS)
async def test_attacks_in_fields_names_and_filenames_are_refused(
    client: ClientFactory, caplog: pytest.LogCaptureFixture, data: bytes, code: str
) -> None:
    with caplog.at_level(logging.INFO):
        response = await client().post(ROUTE, content=data, headers=CONTENT_TYPE)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert "marker-7f3a" not in response.text
    assert "sha256" not in response.text  # the app never saw it
    logged = [r.getMessage() for r in caplog.records if r.name == "apishield.inspect"]
    assert any(f"code={code}" in line for line in logged)
    assert not any("marker-7f3a" in line for line in logged)


MALFORMED = [
    pytest.param(BENIGN, {"content-type": "multipart/form-data"}, id="no-boundary"),
    pytest.param(BENIGN[:-30], CONTENT_TYPE, id="truncated"),
    pytest.param(b"just some bytes", CONTENT_TYPE, id="not-multipart"),
    pytest.param(
        f"--{BOUNDARY}\r\nContent-Disposition form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
        CONTENT_TYPE,
        id="broken-header",
    ),
    pytest.param(
        form(('name="f"; filename="shell.php\x00.png"', b"<?php", None)),
        CONTENT_TYPE,
        id="nul-in-filename",
    ),
]


@pytest.mark.parametrize(("data", "headers"), MALFORMED)
async def test_malformed_bodies_are_refused_and_not_forwarded(
    client: ClientFactory, data: bytes, headers: dict[str, str]
) -> None:
    response = await client().post(ROUTE, content=data, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "multipart_invalid"
    assert "sha256" not in response.text


async def test_an_oversized_body_is_refused_by_the_content_stage(client: ClientFactory) -> None:
    data = form(('name="f"; filename="big.bin"', b"\x00" * 20_000, None))
    response = await client().post(ROUTE, content=data, headers=CONTENT_TYPE)
    assert response.status_code == 413


async def test_an_excluded_field_passes_and_other_detectors_still_apply(
    client: ClientFactory,
) -> None:
    c = client()
    sql = ('name="sql"', b"SELECT * FROM t WHERE a = 'x' OR 1=1; --", None)
    allowed = await c.post("/v2/snippets", content=form(sql), headers=CONTENT_TYPE)
    assert allowed.status_code == 200
    xss = await c.post(
        "/v2/snippets",
        content=form(('name="sql"', b"<script>x</script>", None)),
        headers=CONTENT_TYPE,
    )
    assert xss.json()["code"] == "xss_detected"
    other = await c.post(
        ROUTE, content=form(sql), headers=CONTENT_TYPE
    )  # the exclusion names one route
    assert other.json()["code"] == "sqli_detected"


async def test_report_mode_forwards_and_logs(
    client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(mode="report")
    attack = form(('name="f"; filename="../../etc/passwd"', b"x", None))
    with caplog.at_level(logging.INFO):
        refused = await c.post(ROUTE, content=attack, headers=CONTENT_TYPE)
        truncated = await c.post(ROUTE, content=BENIGN[:-30], headers=CONTENT_TYPE)
    assert refused.status_code == 200
    assert refused.json()["sha256"] == hashlib.sha256(attack).hexdigest()
    assert truncated.status_code == 200
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.audit"]
    assert events[-2]["reported"] == ["path_traversal_detected"]
    assert events[-1]["reported"] == ["multipart_invalid"]
    logged = [r.getMessage() for r in caplog.records if r.name == "apishield.inspect"]
    assert any("reported" in line and "body.f.filename" in line for line in logged)
    assert any("multipart_invalid reason=truncated" in line for line in logged)


PIECES = [
    f"--{BOUNDARY}".encode(),
    f"--{BOUNDARY}--".encode(),
    b"\r\n",
    b'Content-Disposition: form-data; name="a"',
    b'Content-Disposition: form-data; name="f"; filename="../x.png"',
    b"<script>",
    b"' OR 1=1",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=16)), max_size=24))
async def test_random_bytes_are_refused_or_passed_never_an_error(
    client: ClientFactory, pieces: list[bytes]
) -> None:
    data = b"".join(pieces)
    response = await client().post(ROUTE, content=data, headers=CONTENT_TYPE)
    assert response.status_code in (200, 400, 403)
    if response.status_code == 200:
        assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    else:
        assert response.json()["code"] in (
            "multipart_invalid",
            "sqli_detected",
            "xss_detected",
            "path_traversal_detected",
            "cmdi_detected",
            "nosqli_detected",
            "ssti_detected",
        )


async def test_multipart_upload_over_http() -> None:
    app = protect(digest_app, POLICY)
    async with served(app) as base, httpx.AsyncClient(base_url=base) as c:
        files = {"scan": ("report (final).pdf", PNG_LIKE, "application/pdf")}
        ok = await c.post(ROUTE, data={"author": "O'Brien"}, files=files)
        bad = await c.post(ROUTE, data={"author": "x"}, files={"scan": ("../../etc/passwd", b"x")})
        exact = await c.post(ROUTE, content=BENIGN, headers=CONTENT_TYPE)
        broken = await c.post(ROUTE, content=BENIGN[:-30], headers=CONTENT_TYPE)
    assert ok.status_code == 200
    assert ok.json()["length"] > len(PNG_LIKE)
    assert exact.json()["sha256"] == hashlib.sha256(BENIGN).hexdigest()
    assert bad.status_code == 403
    assert bad.json()["code"] == "path_traversal_detected"
    assert broken.status_code == 400
    assert broken.json()["code"] == "multipart_invalid"
