"""Strict JSON: the depth pre-scan agrees with the parser, and nothing crashes it."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apishield.pipeline.strictjson import JSONRefused, check_depth, parse_strict_json


def _no_folded_twins(value: dict[str, Any]) -> bool:
    """Keys that differ only by case or Unicode form are refused on purpose: leave them out."""
    return len({unicodedata.normalize("NFKC", k).casefold() for k in value}) == len(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(), inner, max_size=4).filter(_no_folded_twins)
    ),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(json_values)
@settings(max_examples=300)
def test_depth_scan_matches_structure(value: Any) -> None:
    body = json.dumps(value).encode()
    d = depth(value)
    check_depth(body, max(d, 1))
    if d > 1:
        with pytest.raises(JSONRefused):
            check_depth(body, d - 1)
    assert parse_strict_json(body, max_depth=max(d, 1)) == value


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    try:
        parse_strict_json(body, max_depth=32)
    except JSONRefused as exc:
        assert exc.code in {
            "json_invalid",
            "json_too_deep",
            "json_duplicate_key",
            "json_non_finite",
        }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'"' + b"\\\\" * 500_000 + b'"', id="escapes"),
        pytest.param(b'"' + b"[" * 1_000_000 + b'"', id="brackets-in-string"),
        pytest.param(b"[" * 1_000_000, id="open-brackets"),
        pytest.param(b"1" * 5000, id="huge-integer"),
    ],
)
def test_adversarial_inputs_are_refused_or_parsed(body: bytes) -> None:
    try:
        parse_strict_json(body, max_depth=32)
    except JSONRefused as exc:
        assert exc.code in {"json_invalid", "json_too_deep"}


def test_strings_do_not_count_as_depth() -> None:
    assert parse_strict_json(b'{"a": "[[[[{{{{"}', max_depth=1) == {"a": "[[[[{{{{"}
    assert parse_strict_json(b'{"a": "\\"[["}', max_depth=1) == {"a": '"[['}
