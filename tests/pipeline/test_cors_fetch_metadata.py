"""The CORS stage and Fetch Metadata: a request the browser marks ``Sec-Fetch-Site:
same-origin`` is same-origin even when its ``Origin`` reads ``null`` (a form posted from a page
with ``Referrer-Policy: no-referrer``); every other ``null`` or foreign origin is still
refused, so a cross-site form post cannot reach the API (CSRF)."""

from __future__ import annotations

import pytest

from tests.pipeline.conftest import ClientFactory

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"origin": "null", "sec-fetch-site": "same-origin"}, 200, id="null-same"),
        pytest.param({"origin": "null", "sec-fetch-site": "cross-site"}, 403, id="null-cross"),
        pytest.param({"origin": "null", "sec-fetch-site": "same-site"}, 403, id="null-same-site"),
        pytest.param({"origin": "null"}, 403, id="null-no-fetch-metadata"),
        pytest.param(
            {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}, 403, id="foreign"
        ),
        pytest.param(
            {"origin": "https://evil.example", "sec-fetch-site": "none"}, 403, id="foreign-none"
        ),
    ],
)
async def test_post_by_origin_and_fetch_site(
    make_client: ClientFactory, headers: dict[str, str], status: int
) -> None:
    client = make_client()
    response = await client.post("/v2/items", headers={**JSON, **headers}, content=b"{}")
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["code"] == "cors_origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_same_origin_request_gets_no_cors_headers(make_client: ClientFactory) -> None:
    client = make_client()
    response = await client.get(
        "/v2/items", headers={"origin": "null", "sec-fetch-site": "same-origin"}
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert response.json()["method"] == "GET"  # reached the app
