"""Stage 10 through ``protect``: what a client sees when a request breaks the OpenAPI spec."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apishield import protect
from apishield.errors import ConfigError
from apishield.identity.verifier import fingerprint
from apishield.pipeline.build import build_gateway
from apishield.policy import parse_policy
from apishield.policy.load import load_policy, resolve_paths
from apishield.server import GatewayServer
from tests.proxy.upstreams import RawUpstream, echo

SPEC = """\
openapi: 3.0.3
info: {title: Orders, version: "2"}
servers: [{url: https://api.example.com/v2}]
paths:
  /orders/{order_id}:
    parameters:
      - {name: order_id, in: path, required: true, schema: {type: integer, minimum: 1}}
    get:
      parameters:
        - {name: expand, in: query, schema: {type: boolean}}
        - {name: X-Tenant, in: header, schema: {type: string, format: uuid}}
      responses: {"200": {description: ok}}
    put:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
      responses: {"200": {description: ok}}
components:
  schemas:
    Base:
      type: object
      properties:
        id: {type: integer, readOnly: true}
        note: {type: string, nullable: true}
    Order:
      allOf:
        - $ref: "#/components/schemas/Base"
        - type: object
          required: [qty]
          properties:
            qty: {type: integer, minimum: 1}
            email: {type: string, format: email}
"""
SECRET = "hunter2-do-not-echo"


async def order(request: Request) -> JSONResponse:
    body = await request.json() if request.method == "PUT" else None
    return JSONResponse({"order": request.path_params["id"], "received": body})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


APP = Starlette(
    routes=[
        Route("/v2/orders/{id}", order, methods=["GET", "PUT"]),
        Route("/health", health, methods=["GET"]),
    ]
)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def policy(spec: Path, *, development: bool = False, **openapi: Any) -> dict[str, Any]:
    return {
        "apishield": 1,
        "mode": "development" if development else "production",
        "inspection": {"enabled": False},
        "openapi": {"spec": str(spec), **openapi} if openapi else str(spec),
        "routes": [
            # The policy names the parameter `id`; the spec names it `order_id`.
            {"path": "/v2/orders/{id}", "methods": ["GET", "PUT"], "allow": "public"},
            {"path": "/health", "methods": ["GET"], "allow": "public"},
        ],
    }


def client(policy_data: dict[str, Any]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=protect(APP, policy_data), client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://api.test")


async def test_valid_requests_reach_the_app(spec_file: Path) -> None:
    async with client(policy(spec_file)) as c:
        got = await c.get(
            "/v2/orders/7?expand=true",
            headers={"x-tenant": "3f1c2b8e-1d2a-4c5b-9e8f-0a1b2c3d4e5f"},
        )
        put = await c.put("/v2/orders/7", json={"qty": 2, "note": None})
    assert got.status_code == 200
    assert got.json() == {"order": "7", "received": None}
    assert put.status_code == 200
    assert put.json()["received"] == {"qty": 2, "note": None}


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        pytest.param("/v2/orders/0", {}, id="path-minimum"),
        pytest.param("/v2/orders/7?expand=1", {}, id="query-boolean-strict"),
        pytest.param("/v2/orders/7?expand=true&expand=false", {}, id="query-repeated"),
        pytest.param(f"/v2/orders/7?debug={SECRET}", {}, id="query-unknown"),
        pytest.param("/v2/orders/7", {"X-TENANT": SECRET}, id="header-any-case"),
    ],
)
async def test_parameter_violations_are_400_without_details_in_production(
    spec_file: Path, url: str, headers: dict[str, str]
) -> None:
    async with client(policy(spec_file)) as c:
        response = await c.get(url, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "schema_violation"
    assert body["detail"] == "the request does not match the API description"
    assert "errors" not in body
    assert "hint" not in body
    assert SECRET not in response.text


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        pytest.param(
            {"qty": 1, "role": "admin"},
            [
                {
                    "location": "body",
                    "field": "/role",
                    "message": "is not a property the schema declares",
                }
            ],
            id="mass-assignment-through-allOf",
        ),
        pytest.param(
            {"qty": 1, "id": 99},
            [
                {
                    "location": "body",
                    "field": "/id",
                    "message": "is not allowed here (a read-only or forbidden field)",
                }
            ],
            id="read-only",
        ),
        pytest.param(
            {"qty": 1, "email": SECRET},
            [{"location": "body", "field": "/email", "message": "is not a valid email"}],
            id="format",
        ),
        pytest.param(
            {"qty": 1, "note": SECRET * 300},
            [
                {
                    "location": "body",
                    "field": "/note",
                    "message": "must be at most 4096 characters long",
                }
            ],
            id="default-string-bound",
        ),
        pytest.param(
            {"qty": SECRET},
            [{"location": "body", "field": "/qty", "message": "must be of type integer"}],
            id="type",
        ),
    ],
)
async def test_body_violations_are_422_with_a_field_list_in_development(
    spec_file: Path, payload: dict[str, Any], errors: list[dict[str, str]]
) -> None:
    async with client(policy(spec_file, development=True)) as c:
        response = await c.put("/v2/orders/7", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "schema_violation"
    assert body["title"] == "Unprocessable Content"
    assert body["errors"] == errors
    assert SECRET not in response.text


async def test_body_violation_in_production_lists_nothing(spec_file: Path) -> None:
    async with client(policy(spec_file)) as c:
        response = await c.put("/v2/orders/7", json={"qty": 1, "role": "admin"})
    assert response.status_code == 422
    assert "errors" not in response.json()
    assert "role" not in response.text


async def test_parameter_list_in_development_masks_nothing_but_values(spec_file: Path) -> None:
    async with client(policy(spec_file, development=True)) as c:
        response = await c.get(f"/v2/orders/7?expand={SECRET}&debug=1")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"location": "query", "field": "expand", "message": "must be of type boolean"},
        {
            "location": "query",
            "field": "debug",
            "message": "is not a parameter this operation declares",
        },
    ]
    assert SECRET not in response.text


async def test_a_refusal_is_logged_once_with_its_code_and_no_value(
    spec_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with client(policy(spec_file)) as c:
            response = await c.put("/v2/orders/7", json={"qty": SECRET})
    lines = [r.getMessage() for r in caplog.records if r.name == "apishield.validation"]
    assert len(lines) == 1
    assert "refused" in lines[0]
    assert "code=schema_violation" in lines[0]
    assert "field=/qty" in lines[0]
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.audit"]
    assert audit[-1]["code"] == "schema_violation"
    assert audit[-1]["status"] == 422
    assert SECRET not in caplog.text
    assert response.json()["request_id"] in lines[0]


async def test_report_mode_forwards_and_logs(
    spec_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with client(policy(spec_file, mode="report")) as c:
            response = await c.put("/v2/orders/7", json={"qty": 1, "role": "admin"})
    assert response.status_code == 200
    assert response.json()["received"] == {"qty": 1, "role": "admin"}
    lines = [r.getMessage() for r in caplog.records if r.name == "apishield.validation"]
    assert len(lines) == 1
    assert "reported" in lines[0]
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.audit"]
    assert audit[-1]["reported"] == ["schema_violation"]


async def test_unknown_query_parameters_can_be_allowed(spec_file: Path) -> None:
    async with client(policy(spec_file, unknown_query="allow")) as c:
        response = await c.get("/v2/orders/7?utm_source=mail")
    assert response.status_code == 200


async def test_routes_without_an_operation_are_not_validated(spec_file: Path) -> None:
    async with client(policy(spec_file)) as c:
        response = await c.get("/health?anything=goes")
    assert response.status_code == 200


async def test_the_string_bound_is_a_setting(spec_file: Path) -> None:
    async with client(policy(spec_file, max_string_length=5)) as c:
        short = await c.put("/v2/orders/7", json={"qty": 1, "note": "12345"})
        long = await c.put("/v2/orders/7", json={"qty": 1, "note": "123456"})
    assert short.status_code == 200
    assert long.status_code == 422


def test_a_spec_error_stops_start_up_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "openapi.yaml"
    bad.write_text(SPEC.replace("openapi: 3.0.3", "openapi: 2.0"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        protect(APP, policy(bad))
    message = str(caught.value)
    assert message.startswith(f"{bad}:1: openapi: ")
    assert "\n" not in message


def test_an_unsupported_parameter_stops_start_up(tmp_path: Path) -> None:
    spec = tmp_path / "openapi.yaml"
    spec.write_text(
        SPEC.replace(
            "{name: expand, in: query, schema: {type: boolean}}",
            "{name: filter, in: query, style: deepObject, schema: {type: object}}",
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="style 'deepObject' is not supported"):
        protect(APP, policy(spec))


def test_the_spec_path_is_relative_to_the_policy_file(spec_file: Path) -> None:
    policy_file = spec_file.parent / "apishield.yaml"
    policy_file.write_text(
        "apishield: 1\nopenapi: ./openapi.yaml\n"
        "routes:\n  - {path: /health, methods: [GET], allow: public}\n",
        encoding="utf-8",
    )
    loaded = load_policy(policy_file)
    assert loaded.openapi is not None
    assert loaded.openapi.spec == spec_file
    assert loaded.openapi.mode == "enforce"
    assert loaded.openapi.unknown_query == "refuse"
    assert loaded.openapi.max_string_length == 4096


async def test_on_the_wire_a_refused_body_never_reaches_the_upstream(
    spec_file: Path, tmp_path: Path
) -> None:
    upstream = RawUpstream(echo)
    await upstream.start()
    data = {
        **policy(spec_file),
        "listen": {"address": "127.0.0.1:0", "tls": "off"},
        "state": {"dir": str(tmp_path)},
        "upstream": {"url": upstream.url(), "timeouts": {"read": "5s"}},
    }
    gateway_policy = resolve_paths(parse_policy(data), tmp_path)
    server = GatewayServer(gateway_policy, build_gateway(gateway_policy), announce=False)
    task = asyncio.create_task(server.serve(install_signal_handlers=False))
    try:
        await asyncio.wait_for(server.wait_started(), 30)
        base = f"http://127.0.0.1:{server.bound_port}"
        async with httpx.AsyncClient(base_url=base) as c:
            refused = await c.put("/v2/orders/7", json={"qty": 1, "is_admin": True})
            assert upstream.requests == []
            accepted = await c.put("/v2/orders/7", json={"qty": 1})
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await upstream.close()
    assert refused.status_code == 422
    assert refused.json()["code"] == "schema_violation"
    assert accepted.status_code == 200
    assert len(upstream.requests) == 1


async def test_head_is_checked_as_get(spec_file: Path) -> None:
    async with client(policy(spec_file)) as c:
        refused = await c.head("/v2/orders/0")
        accepted = await c.head("/v2/orders/7")
    assert refused.status_code == 400
    assert accepted.status_code == 200


async def test_credential_like_names_are_shown_as_fingerprints(
    spec_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """AUTH-38: a key pasted where a name goes (a query name, a body field) is neither echoed
    in development-mode errors nor logged; its fingerprint stands in for it."""
    pasted = "ask_live_7Fq2Lr9XwP4mZt8VbN3cKd6Ys"
    with caplog.at_level(logging.INFO):
        async with client(policy(spec_file, development=True)) as c:
            in_query = await c.get(f"/v2/orders/7?{pasted}=1")
            in_body = await c.put("/v2/orders/7", json={"qty": 1, pasted: 1})
    assert in_query.status_code == 400
    assert in_body.status_code == 422
    fields = [e["field"] for e in in_query.json()["errors"] + in_body.json()["errors"]]
    assert any(f.endswith(f"[redacted:{fingerprint(pasted)}]") for f in fields), fields
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("apishield"))
    assert "[redacted:" in ours
    for text in (in_query.text, in_body.text, ours):
        assert pasted not in text
