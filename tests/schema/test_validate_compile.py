"""Schema tightening for requests: mass assignment, readOnly, the string bound, formats."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apishield.schema.compile import compile_schema, request_schema

BASE = {
    "type": "object",
    "properties": {"id": {"type": "integer", "readOnly": True}, "name": {"type": "string"}},
    "required": ["id", "name"],
}
ALL_OF = {
    "allOf": [
        {"$ref": "#/$defs/Base"},
        {"type": "object", "properties": {"price": {"type": "number"}}},
    ],
    "$defs": {"Base": BASE},
}
TREE = {
    "$ref": "#/$defs/Node",
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
        }
    },
}


def fails(schema: dict[str, Any], instance: Any, *, bound: int = 4096) -> list[str]:
    """The fields that fail, empty when ``instance`` is valid."""
    compiled = compile_schema(request_schema(schema, max_string_length=bound), where="test")
    return [v.field for v in compiled.violations(instance, "body")]


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        pytest.param(ALL_OF, {"name": "a", "price": 1}, [], id="allOf-both-branches-accepted"),
        pytest.param(ALL_OF, {"name": "a", "role": "admin"}, ["/role"], id="allOf-extra-refused"),
        pytest.param(ALL_OF, {"name": "a", "id": 1}, ["/id"], id="allOf-readOnly-refused"),
        pytest.param(BASE, {"name": "a"}, [], id="readOnly-not-required-in-requests"),
        pytest.param(BASE, {"name": "a", "id": 3}, ["/id"], id="readOnly-refused"),
        pytest.param(
            {"type": "object", "properties": {"a": {"type": "integer"}}},
            {"a": 1, "b": 2},
            ["/b"],
            id="plain-object-closed",
        ),
        pytest.param(
            {"type": "object", "properties": {"a": {}}, "additionalProperties": True},
            {"a": 1, "b": 2},
            [],
            id="explicit-additionalProperties-true-open",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {"a": {}},
                "additionalProperties": {"type": "integer"},
            },
            {"a": 1, "b": "x"},
            ["/b"],
            id="additionalProperties-schema-kept",
        ),
        pytest.param(
            {"type": "object", "properties": {"meta": {"type": "object"}}},
            {"meta": {"anything": 1}},
            [],
            id="free-form-object-open",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "lines": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"qty": {"type": "integer"}}},
                    }
                },
            },
            {"lines": [{"qty": 1}, {"qty": 2, "discount": 100}]},
            ["/lines/1/discount"],
            id="array-items-closed",
        ),
        pytest.param(
            {
                "allOf": [{"$ref": "#/$defs/Base"}],
                "unevaluatedProperties": True,
                "$defs": {"Base": {"properties": {"a": {}}}},
            },
            {"a": 1, "z": 2},
            [],
            id="explicit-unevaluatedProperties-true-open",
        ),
        pytest.param(
            {
                "oneOf": [
                    {"type": "object", "properties": {"kind": {"const": "a"}, "x": {}}},
                    {"type": "object", "properties": {"kind": {"const": "b"}, "y": {}}},
                ]
            },
            {"kind": "a", "y": 1},
            ["/y"],
            id="oneOf-matching-branch-decides",
        ),
        pytest.param(TREE, {"label": "r", "children": [{"label": "c"}]}, [], id="recursion-ok"),
        pytest.param(
            TREE,
            {"label": "r", "children": [{"label": "c", "children": [{"owner": "x"}]}]},
            ["/children/0/children/0/owner"],
            id="recursion-closed-deep",
        ),
        pytest.param(
            TREE,
            {"label": "r", "children": [{"label": 5}]},
            ["/children/0/label"],
            id="recursion-types",
        ),
    ],
)
def test_mass_assignment_and_read_only(
    schema: dict[str, Any], instance: Any, expected: list[str]
) -> None:
    assert fails(schema, instance) == expected


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        pytest.param({"type": "string"}, "x" * 10, [], id="under-bound"),
        pytest.param({"type": "string"}, "x" * 11, [""], id="over-bound"),
        pytest.param({"type": ["string", "null"]}, "x" * 11, [""], id="nullable-string"),
        pytest.param({"type": "string", "maxLength": 50}, "x" * 40, [], id="explicit-wins"),
        pytest.param(
            {
                "type": "object",
                "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
            },
            {"tags": ["ok", "x" * 11]},
            ["/tags/1"],
            id="array-items",
        ),
        pytest.param(
            {"not": {"type": "string"}},
            "x" * 11,
            [""],
            id="not-left-alone",  # bounding under `not` would let long strings through
        ),
        pytest.param(TREE, {"label": "x" * 11}, ["/label"], id="through-defs"),
    ],
)
def test_default_string_bound(schema: dict[str, Any], instance: Any, expected: list[str]) -> None:
    assert fails(schema, instance, bound=10) == expected


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        pytest.param({"type": "integer", "format": "int32"}, 2**31 - 1, [], id="int32-max"),
        pytest.param({"type": "integer", "format": "int32"}, 2**31, [""], id="int32-over"),
        pytest.param({"type": "integer", "format": "int32"}, -(2**31) - 1, [""], id="int32-under"),
        pytest.param({"type": "integer", "format": "int64"}, 2**63, [""], id="int64-over"),
        pytest.param(
            {"type": "integer", "format": "int32", "maximum": 2**40}, 2**35, [], id="explicit-wins"
        ),
    ],
)
def test_integer_formats_are_ranges(
    schema: dict[str, Any], instance: Any, expected: list[str]
) -> None:
    assert fails(schema, instance) == expected


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        pytest.param("email", "ada@example.com", "ada.example.com", id="email"),
        pytest.param("uuid", "3f1c2b8e-1d2a-4c5b-9e8f-0a1b2c3d4e5f", "3f1c2b8e-1d2a", id="uuid"),
        pytest.param("date-time", "2026-11-28T10:00:00+01:00", "2026-11-28 10:00", id="date-time"),
        pytest.param("uri", "https://example.com/a?b=c", "example.com/a", id="uri"),
    ],
)
def test_formats_are_enforced(fmt: str, good: str, bad: str) -> None:
    schema = {"type": "string", "format": fmt}
    assert fails(schema, good) == []
    assert fails(schema, bad) == [""]


def test_the_spec_is_not_changed() -> None:
    before = copy.deepcopy(ALL_OF)
    request_schema(ALL_OF, max_string_length=10)
    assert before == ALL_OF


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
ANY_BODY = compile_schema(
    request_schema(
        {
            "oneOf": [
                {"$ref": "#/$defs/Order"},
                {"type": "array", "items": {"$ref": "#/$defs/Order"}, "maxItems": 3},
            ],
            "$defs": {
                "Order": {
                    "type": "object",
                    "required": ["sku"],
                    "properties": {
                        "sku": {"type": "string", "pattern": "^[A-Z]+$"},
                        "qty": {"type": "integer", "minimum": 1},
                        "when": {"type": "string", "format": "date-time"},
                        "sub": {"$ref": "#/$defs/Order"},
                    },
                }
            },
        },
        max_string_length=16,
    ),
    where="test",
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_random_json_gives_only_violations(instance: Any) -> None:
    found = ANY_BODY.violations(instance, "body")
    assert (found == []) == ANY_BODY.is_valid(instance)
    for violation in found:
        assert violation.location == "body"
        assert violation.field == "" or violation.field.startswith("/")
        json.dumps(violation.as_dict())  # always serialisable for the problem body
