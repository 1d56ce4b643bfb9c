"""Routing: specificity, parameters, versions by header, and no crash on any path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apishield.errors import HTTPError
from apishield.pipeline.router import Router
from apishield.policy import parse_policy

POLICY = parse_policy(
    {
        "apishield": 1,
        "versions": [
            {"name": "2024", "header": {"API-Version": "2024-01-01"}},
            {"name": "2025", "header": {"API-Version": "2025-01-01"}, "default": True},
        ],
        "routes": [
            {"path": "/orders/{order_id}", "methods": ["GET"], "version": "2024"},
            {"path": "/orders/{order_id}", "methods": ["GET", "PUT"], "version": "2025"},
            {"path": "/orders/{order_id}/items/{item_id}", "methods": ["GET"]},
            {"path": "/orders/export", "methods": ["POST"]},
        ],
    }
)
ROUTER = Router(POLICY)


@pytest.mark.parametrize(
    ("method", "path", "version", "template", "label", "params"),
    [
        pytest.param(
            "GET",
            "/orders/7",
            None,
            "/orders/{order_id}",
            "2025",
            {"order_id": "7"},
            id="default-version",
        ),
        pytest.param(
            "GET",
            "/orders/7",
            "2024-01-01",
            "/orders/{order_id}",
            "2024",
            {"order_id": "7"},
            id="header-version",
        ),
        pytest.param(
            "GET",
            "/orders/7/items/9",
            None,
            "/orders/{order_id}/items/{item_id}",
            None,
            {"order_id": "7", "item_id": "9"},
            id="two-params",
        ),
        pytest.param(
            "POST", "/orders/export", None, "/orders/export", None, {}, id="literal-beats-param"
        ),
    ],
)
def test_matches(
    method: str,
    path: str,
    version: str | None,
    template: str,
    label: str | None,
    params: dict[str, str],
) -> None:
    match = ROUTER.match(method, path, None, version)
    assert match.template == template
    assert (match.version.label if match.version else None) == label
    assert match.params == params


@pytest.mark.parametrize(
    ("method", "path", "version", "code"),
    [
        pytest.param(
            "PUT", "/orders/7", "2024-01-01", "method_not_allowed", id="method-per-version"
        ),
        pytest.param("GET", "/orders/7", "1999-01-01", "version_unknown", id="unknown-version"),
        pytest.param("GET", "/orders/export", None, "method_not_allowed", id="literal-only-post"),
    ],
)
def test_refusals(method: str, path: str, version: str | None, code: str) -> None:
    with pytest.raises(HTTPError) as info:
        ROUTER.match(method, path, None, version)
    assert info.value.code == code


@given(st.text(max_size=200), st.binary(max_size=200))
@settings(max_examples=500)
def test_any_path_matches_or_refuses_cleanly(path: str, raw: bytes) -> None:
    try:
        ROUTER.match("GET", "/" + path, raw, None)
    except HTTPError:
        pass
