"""Stage 11 on the wire: requests sent over TCP to uvicorn on loopback, bytes as a client sends.

The corpus replay (bench/inspection_vs_crs.py) once found command injections that reached the
app over HTTP. The cause was in the detector (``phpinfo()`` was missing from the cheap hints in
front of the PHP pattern), not in how values reach the stage; these cases pin both: the payloads
in a percent-encoded query, a header and a JSON body, through a real server.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from apishield import protect
from tests.pipeline.conftest import BASE_POLICY, echo_app
from tests.proxy.upstreams import served

POLICY: dict[str, Any] = copy.deepcopy(BASE_POLICY)
POLICY["inspection"] = {}

PAYLOADS = [
    pytest.param("|| phpinfo()", id="or-phpinfo"),
    pytest.param(";phpinfo()", id="semicolon-phpinfo"),
    pytest.param("';phpinfo();//", id="quote-phpinfo-comment"),
    pytest.param("127.0.0.1;cat /etc/passwd", id="semicolon-cat"),
]


def _quoted(value: str) -> str:
    return "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in value)


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_command_injection_is_refused_over_http(payload: str) -> None:
    async with served(protect(echo_app, POLICY)) as base, httpx.AsyncClient(base_url=base) as c:
        query = await c.get(f"/v2/items?page=1&file={_quoted(payload)}")
        header = await c.get("/v2/items", headers={"x-client-data": payload})
        body = await c.post(
            "/v2/items",
            content=json.dumps({"id": 1, "target": payload}),
            headers={"content-type": "application/json"},
        )
    for response in (query, header, body):
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "cmdi_detected"
        assert payload not in response.text


async def test_benign_values_pass_over_http() -> None:
    async with served(protect(echo_app, POLICY)) as base, httpx.AsyncClient(base_url=base) as c:
        response = await c.get(
            "/v2/items?q=Tom%20%26%20Jerry&sort=-created_at",
            headers={"x-note": "salt; pepper; oregano", "referer": "https://example.com/?a=1&b=2"},
        )
    assert response.status_code == 200
