"""Stage 10 under attack: requests shaped so that the gateway and the app would read them apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apishield import protect
from apishield.types import Message

SPEC = """\
openapi: 3.1.0
info: {title: Accounts, version: "1"}
paths:
  /accounts/{account_id}:
    parameters:
      - {name: account_id, in: path, required: true, schema: {type: integer, minimum: 1}}
    get:
      parameters:
        - {name: session, in: cookie, schema: {type: string, pattern: "^[a-z0-9]+$"}}
        - {name: pref, in: cookie, schema: {type: string, pattern: "^[^']*$"}}
      responses: {"200": {description: ok}}
    patch:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/AccountUpdate"}
      responses: {"200": {description: ok}}
    post:
      requestBody:
        content:
          application/json:
            schema: {$ref: "#/components/schemas/AccountUpdate"}
      responses: {"200": {description: ok}}
components:
  schemas:
    Id:
      type: integer
      readOnly: true
    Role:
      type: string
      readOnly: true
    AccountUpdate:
      type: object
      properties:
        id:
          $ref: "#/components/schemas/Id"
          description: the account number, assigned by the API
        role:
          allOf: [{$ref: "#/components/schemas/Role"}]
          description: set by administrators only
        name: {type: string}
"""


async def account(request: Request) -> JSONResponse:
    body = await request.json() if request.method == "PATCH" else None
    return JSONResponse({"cookies": dict(request.cookies), "received": body})


APP = Starlette(routes=[Route("/accounts/{id}", account, methods=["GET", "PATCH", "POST"])])


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def policy(spec: Path) -> dict[str, Any]:
    return {
        "apishield": 1,
        "mode": "production",
        "inspection": {"enabled": False},
        "openapi": str(spec),
        "routes": [
            {"path": "/accounts/{id}", "methods": ["GET", "PATCH"], "allow": "public"},
            {
                "path": "/accounts/{id}",
                "methods": ["POST"],
                "allow": "public",
                "content_types": ["application/json", "text/plain"],
            },
        ],
    }


def client(spec: Path) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=protect(APP, policy(spec)), client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://api.test")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "a", "id": 99}, id="readOnly-beside-ref"),
        pytest.param({"name": "a", "role": "admin"}, id="readOnly-inside-allOf"),
    ],
)
async def test_read_only_properties_reached_through_references_are_refused(
    spec_file: Path, body: dict[str, Any]
) -> None:
    async with client(spec_file) as c:
        got = await c.patch("/accounts/7", json=body)
        ok = await c.patch("/accounts/7", json={"name": "a"})
    assert ok.status_code == 200
    assert got.status_code == 422
    assert got.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param("session=abc; session =x'--", id="space-before-equals"),
        pytest.param(' session=x"--', id="leading-space"),
        pytest.param('session="\\047--"', id="quoted-octal-escape"),
        pytest.param('session=" x"', id="quoted-value"),
    ],
)
async def test_cookies_are_read_as_the_app_reads_them(spec_file: Path, cookie: str) -> None:
    async with client(spec_file) as c:
        got = await c.get("/accounts/7", headers={"cookie": cookie})
    assert got.status_code == 400, got.json()
    assert got.headers["content-type"] == "application/problem+json"


async def test_plain_cookies_with_spaces_around_them_pass(spec_file: Path) -> None:
    async with client(spec_file) as c:
        got = await c.get("/accounts/7", headers={"cookie": "theme=dark;  session = abc1 "})
    assert got.status_code == 200
    assert got.json()["cookies"]["session"] == "abc1"


async def test_a_cookie_name_padded_with_other_whitespace_is_still_checked(spec_file: Path) -> None:
    # latin-1 NBSP and vertical tab: str.strip removes them, so the app reads `session`.
    async with client(spec_file) as c:
        got = await c.get("/accounts/7", headers={"cookie": b"session\xa0=x'--; \x0bsession=y'"})
    assert got.status_code == 400


async def call(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> tuple[int, bytes]:
    pending = list(chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "scheme": "https",
        "query_string": b"",
        "client": ("127.0.0.1", 5),
        "server": ("127.0.0.1", 443),
    }
    await app({**base, **scope}, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.parametrize("version", ["2", "3"])
async def test_a_body_without_length_over_http2_is_seen(spec_file: Path, version: str) -> None:
    # HTTP/2 and 3 need no Content-Length. A text/plain body to an operation that takes JSON
    # only must be refused as over HTTP/1.1, not pass unseen to an app that parses any body.
    app = protect(APP, policy(spec_file))
    status, body = await call(
        app,
        {
            "http_version": version,
            "method": "POST",
            "path": "/accounts/7",
            "raw_path": b"/accounts/7",
            "headers": [(b"host", b"api.test"), (b"content-type", b"text/plain")],
        },
        [b'{"name": "a", ', b'"role": "admin"}'],
    )
    assert status == 415, body
    assert b'"code":"unsupported_media_type"' in body


async def test_an_empty_http2_request_still_passes(spec_file: Path) -> None:
    app = protect(APP, policy(spec_file))
    status, _ = await call(
        app,
        {
            "http_version": "2",
            "method": "POST",
            "path": "/accounts/7",
            "raw_path": b"/accounts/7",
            "headers": [(b"host", b"api.test")],
        },
        [],
    )
    assert status == 200


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param('pref="\\047 or 1=1"', id="octal-escape"),
        pytest.param('pref="a\\"b"', id="escaped-quote"),
        pytest.param("pref=a\\b", id="backslash"),
    ],
)
async def test_cookie_values_apps_unescape_are_refused(spec_file: Path, cookie: str) -> None:
    # Python's http.cookies (under Starlette) reads "\047" as "'": the pattern checked here
    # must not see one value while the app reads another.
    async with client(spec_file) as c:
        got = await c.get("/accounts/7", headers={"cookie": cookie})
    assert got.status_code == 400


async def test_a_quoted_cookie_is_checked_without_its_quotes(spec_file: Path) -> None:
    async with client(spec_file) as c:
        good = await c.get("/accounts/7", headers={"cookie": 'pref="dark"'})
        bad = await c.get("/accounts/7", headers={"cookie": 'session="ABC"'})
    assert good.status_code == 200
    assert good.json()["cookies"]["pref"] == "dark"
    assert bad.status_code == 400
