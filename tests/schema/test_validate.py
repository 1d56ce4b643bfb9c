"""Request validation core: each parameter location, coercion, bodies, status and messages."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apishield.errors import ConfigError, SchemaViolationError, UnsupportedMediaTypeError
from apishield.schema.params import plan_parameter
from apishield.schema.spec import MediaSchema, Operation, Parameter
from apishield.schema.validate import NO_BODY, OperationValidator, ValidationOptions

ORDER: dict[str, Any] = {
    "type": "object",
    "required": ["sku", "qty"],
    "properties": {
        "sku": {"type": "string", "maxLength": 20},
        "qty": {"type": "integer", "minimum": 1},
        "email": {"type": "string", "format": "email"},
    },
}


def operation(
    *params: Parameter, body: dict[str, Any] | None = None, required: bool = True
) -> Operation:
    return Operation(
        path="/orders/{order_id}",
        method="POST",
        operation_id="updateOrder",
        summary=None,
        parameters=(
            Parameter("order_id", "path", True, {"type": "integer", "minimum": 1}),
            *params,
        ),
        body_required=required,
        request_body=(MediaSchema("application/json", body),) if body is not None else (),
        responses={},
        security=None,
        pointer="#/paths/~1orders~1{order_id}/post",
    )


def validator(op: Operation, **options: Any) -> OperationValidator:
    return OperationValidator(op, ValidationOptions(**options), source="openapi.yaml")


def violations(
    v: OperationValidator,
    *,
    path: str = "7",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: Any = NO_BODY,
    media_type: str | None = "application/json",
) -> tuple[int, list[dict[str, str]]] | None:
    """None when the request passes, else (status, errors)."""
    try:
        v.check(
            path_values=[path],
            query=query,
            headers=headers or [],
            media_type=media_type if body is not NO_BODY else None,
            has_body=body is not NO_BODY,
            body=body,
        )
    except SchemaViolationError as exc:
        assert exc.code == "schema_violation"
        return exc.status, exc.errors
    return None


PARAMS = operation(
    Parameter("limit", "query", True, {"type": "integer", "maximum": 100}),
    Parameter("tags", "query", False, {"type": "array", "items": {"type": "string"}}),
    Parameter(
        "ids",
        "query",
        False,
        {"type": "array", "items": {"type": "integer"}},
        style="form",
        explode=False,
    ),
    Parameter("pipe", "query", False, {"type": "array"}, style="pipeDelimited", explode=False),
    Parameter("flag", "query", False, {"type": "boolean"}),
    Parameter("ratio", "query", False, {"type": ["number", "null"]}),
    Parameter("when", "query", False, {"type": "string", "format": "date-time"}),
    Parameter("X-Tenant", "header", True, {"type": "string", "format": "uuid"}),
    Parameter("X-Ids", "header", False, {"type": "array", "items": {"type": "integer"}}),
    Parameter("sid", "cookie", False, {"type": "string", "minLength": 8}),
    body=ORDER,
)
TENANT = (b"x-tenant", b"3f1c2b8e-1d2a-4c5b-9e8f-0a1b2c3d4e5f")
GOOD_BODY = {"sku": "A-1", "qty": 2}


@pytest.mark.parametrize(
    ("path", "query", "headers", "expected"),
    [
        pytest.param("7", b"limit=5", [TENANT], None, id="all-valid"),
        pytest.param("0", b"limit=5", [TENANT], ("path", "order_id"), id="path-below-minimum"),
        pytest.param("x", b"limit=5", [TENANT], ("path", "order_id"), id="path-not-integer"),
        pytest.param("07", b"limit=5", [TENANT], ("path", "order_id"), id="path-leading-zero"),
        pytest.param("7", b"", [TENANT], ("query", "limit"), id="query-required-missing"),
        pytest.param("7", b"limit=1.0", [TENANT], ("query", "limit"), id="query-int-as-float"),
        pytest.param("7", b"limit=%2B5", [TENANT], ("query", "limit"), id="query-int-plus-sign"),
        pytest.param("7", b"limit=1e1", [TENANT], ("query", "limit"), id="query-int-exponent"),
        pytest.param("7", b"limit=101", [TENANT], ("query", "limit"), id="query-over-maximum"),
        pytest.param("7", b"limit=5&limit=6", [TENANT], ("query", "limit"), id="query-repeated"),
        pytest.param("7", b"limit=5&flag=true", [TENANT], None, id="query-boolean-true"),
        pytest.param("7", b"limit=5&flag=1", [TENANT], ("query", "flag"), id="query-boolean-1"),
        pytest.param("7", b"limit=5&flag=True", [TENANT], ("query", "flag"), id="query-bool-caps"),
        pytest.param("7", b"limit=5&ratio=-0.5e2", [TENANT], None, id="query-number"),
        pytest.param("7", b"limit=5&ratio=1e999", [TENANT], ("query", "ratio"), id="query-inf"),
        pytest.param("7", b"limit=5&ratio=.5", [TENANT], ("query", "ratio"), id="query-number-dot"),
        pytest.param("7", b"limit=5&tags=a&tags=b", [TENANT], None, id="query-array-explode"),
        pytest.param("7", b"limit=5&ids=1,2,3", [TENANT], None, id="query-array-form-comma"),
        pytest.param("7", b"limit=5&ids=1,x", [TENANT], ("query", "ids/1"), id="query-array-item"),
        pytest.param("7", b"limit=5&ids=1&ids=2", [TENANT], ("query", "ids"), id="query-noexplode"),
        pytest.param("7", b"limit=5&pipe=a|b", [TENANT], None, id="query-pipe-delimited"),
        pytest.param(
            "7", b"limit=5&when=2026-11-28T10:00:00Z", [TENANT], None, id="query-date-time"
        ),
        pytest.param(
            "7", b"limit=5&when=2026-11-28", [TENANT], ("query", "when"), id="query-date-only"
        ),
        pytest.param("7", b"limit=5&admin=1", [TENANT], ("query", "admin"), id="query-unknown"),
        pytest.param("7", b"limit=5&LIMIT=1", [TENANT], ("query", "LIMIT"), id="query-case"),
        pytest.param("7", b"limit=%ff", [TENANT], ("query", ""), id="query-not-utf8"),
        pytest.param("7", b"limit=5", [], ("header", "X-Tenant"), id="header-required-missing"),
        pytest.param(
            "7", b"limit=5", [(b"x-tenant", b"nope")], ("header", "X-Tenant"), id="header-uuid"
        ),
        pytest.param(
            "7", b"limit=5", [TENANT, TENANT], ("header", "X-Tenant"), id="header-repeated"
        ),
        pytest.param("7", b"limit=5", [TENANT, (b"x-ids", b"1, 2")], None, id="header-array"),
        pytest.param(
            "7",
            b"limit=5",
            [TENANT, (b"x-ids", b"1, 2"), (b"x-ids", b"3")],
            None,
            id="header-array-lines-combine",
        ),
        pytest.param(
            "7",
            b"limit=5",
            [TENANT, (b"x-ids", b"1"), (b"x-ids", b"x")],
            ("header", "X-Ids/1"),
            id="header-array-lines-typed",
        ),
        pytest.param(
            "7",
            b"limit=5",
            [TENANT, (b"cookie", b"theme=dark; sid=abcdefghij")],
            None,
            id="cookie-valid",
        ),
        pytest.param(
            "7",
            b"limit=5",
            [TENANT, (b"cookie", b"sid=short")],
            ("cookie", "sid"),
            id="cookie-too-short",
        ),
        pytest.param(
            "7",
            b"limit=5",
            [TENANT, (b"cookie", b"sid=abcdefghij"), (b"cookie", b"sid=klmnopqrst")],
            ("cookie", "sid"),
            id="cookie-repeated",
        ),
    ],
)
def test_parameters(
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    expected: tuple[str, str] | None,
) -> None:
    result = violations(validator(PARAMS), path=path, query=query, headers=headers, body=GOOD_BODY)
    if expected is None:
        assert result is None
        return
    assert result is not None
    status, errors = result
    assert status == 400
    assert [(e["location"], e["field"]) for e in errors] == [expected]


def test_unknown_query_parameters_can_be_allowed() -> None:
    v = validator(PARAMS, unknown_query="allow")
    assert violations(v, query=b"limit=5&utm_source=x", headers=[TENANT], body=GOOD_BODY) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"sku": "A-1", "qty": 2}, None, id="valid"),
        pytest.param({"sku": "A-1", "qty": 2, "role": "admin"}, ["/role"], id="mass-assignment"),
        pytest.param({"sku": "A-1"}, [""], id="required-missing"),
        pytest.param({"sku": "A-1", "qty": "2"}, ["/qty"], id="string-for-integer"),
        pytest.param({"sku": "A-1", "qty": 2, "email": "a@b.example"}, None, id="email-valid"),
        pytest.param({"sku": "A-1", "qty": 2, "email": "nope"}, ["/email"], id="email-invalid"),
        pytest.param([1, 2], [""], id="array-for-object"),
        pytest.param(
            {"sku": "x" * 21, "qty": 0, "a": 1, "b": 2},
            ["/sku", "/qty", "/a", "/b"],
            id="every-failure-listed",
        ),
    ],
)
def test_json_body(body: Any, expected: list[str] | None) -> None:
    result = violations(validator(PARAMS), query=b"limit=5", headers=[TENANT], body=body)
    if expected is None:
        assert result is None
        return
    assert result is not None
    status, errors = result
    assert status == 422
    assert sorted(e["field"] for e in errors) == sorted("" + f for f in expected)
    assert {e["location"] for e in errors} == {"body"}


def test_parameter_and_body_failures_together_are_400() -> None:
    result = violations(validator(PARAMS), query=b"limit=x", headers=[TENANT], body={"qty": 2})
    assert result is not None
    status, errors = result
    assert status == 400
    assert [e["location"] for e in errors] == ["query", "body"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param({"sku": "A-1", "qty": 2, "password": "hunter2-secret"}, "/password", id="key"),
        pytest.param({"sku": "' OR 1=1 --", "qty": "hunter2-secret"}, "/qty", id="type"),
        pytest.param({"sku": "A-1", "qty": 2, "email": "hunter2-secret"}, "/email", id="format"),
        pytest.param({"sku": "hunter2-secret" * 3, "qty": 2}, "/sku", id="length"),
    ],
)
def test_messages_never_echo_values(value: dict[str, Any], field: str) -> None:
    result = violations(validator(PARAMS), query=b"limit=5", headers=[TENANT], body=value)
    assert result is not None
    _, errors = result
    assert field in [e["field"] for e in errors]
    for error in errors:
        assert "hunter2" not in error["message"]
        assert "OR 1=1" not in error["message"]


def test_hostile_property_names_are_masked() -> None:
    body = {"sku": "A-1", "qty": 2, "<script>alert(1)</script>": 1}
    result = violations(validator(PARAMS), query=b"limit=5", headers=[TENANT], body=body)
    assert result is not None
    assert result[1] == [
        {"location": "body", "field": "/<name>", "message": "is not a property the schema declares"}
    ]


def test_hostile_query_names_are_masked() -> None:
    result = violations(
        validator(PARAMS), query=b"limit=5&%3Cscript%3E=1", headers=[TENANT], body=GOOD_BODY
    )
    assert result is not None
    assert [e["field"] for e in result[1]] == ["<name>"]


@pytest.mark.parametrize(
    ("op", "body", "status", "message"),
    [
        pytest.param(
            operation(), {"a": 1}, 400, "this operation takes no request body", id="no-body-op"
        ),
        pytest.param(
            operation(body=ORDER), NO_BODY, 400, "a request body is required", id="body-required"
        ),
    ],
)
def test_body_presence(op: Operation, body: Any, status: int, message: str) -> None:
    assert violations(validator(op), body=body) == (
        status,
        [{"location": "body", "field": "", "message": message}],
    )


def test_optional_body_may_be_left_out() -> None:
    assert violations(validator(operation(body=ORDER, required=False))) is None


def test_undeclared_media_type_is_415() -> None:
    v = validator(operation(body=ORDER))
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        v.check(
            path_values=["7"],
            query=b"",
            headers=[],
            media_type="text/plain",
            has_body=True,
            body=NO_BODY,
        )
    assert caught.value.status == 415


def test_unparsed_json_body_fails_closed() -> None:
    v = validator(operation(body=ORDER))
    with pytest.raises(SchemaViolationError) as caught:
        v.check(
            path_values=["7"],
            query=b"",
            headers=[],
            media_type="application/json",
            has_body=True,
            body=NO_BODY,
        )
    assert caught.value.errors == [
        {"location": "body", "field": "", "message": "the JSON body could not be read"}
    ]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        pytest.param(
            Parameter("f", "query", False, {"type": "object"}, style="deepObject"),
            "style 'deepObject' is not supported for query parameters",
            id="deepObject",
        ),
        pytest.param(
            Parameter("f", "query", False, {"type": "object", "properties": {}}),
            "object-valued parameters are not supported",
            id="object",
        ),
        pytest.param(
            Parameter("m", "path", True, {"type": "string"}, style="matrix"),
            "style 'matrix' is not supported for path parameters",
            id="matrix",
        ),
        pytest.param(
            Parameter("a", "query", False, {"type": "array", "items": {"type": "array"}}),
            "arrays of arrays or objects are not supported",
            id="nested-array",
        ),
    ],
)
def test_unsupported_parameters_fail_at_start_up(param: Parameter, message: str) -> None:
    op = operation(param)
    with pytest.raises(ConfigError) as caught:
        validator(op)
    text = str(caught.value)
    assert text.startswith("openapi.yaml: ")
    assert message in text


def test_an_invalid_schema_fails_at_start_up() -> None:
    op = operation(Parameter("q", "query", False, {"type": "string", "pattern": "("}))
    with pytest.raises(ConfigError, match=r"^openapi.yaml: .*query parameter 'q': the schema"):
        validator(op)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=st.binary(max_size=60),
    path=st.text(max_size=12),
    header=st.binary(max_size=40),
    cookie=st.binary(max_size=40),
)
def test_random_parameters_give_only_violations(
    query: bytes, path: str, header: bytes, cookie: bytes
) -> None:
    headers = [(b"x-tenant", header), (b"x-ids", header), (b"cookie", cookie)]
    try:
        violations(validator(PARAMS), path=path, query=query, headers=headers, body=GOOD_BODY)
    except Exception as exc:  # noqa: BLE001 - the assertion is that nothing else escapes
        pytest.fail(f"{type(exc).__name__} escaped validation")


@pytest.mark.parametrize(
    ("param", "raw", "value"),
    [
        pytest.param(
            Parameter("h", "header", False, {"type": "array"}, explode=True),
            ["a, b"],
            ["a", "b"],
            id="header-simple-explode",
        ),
        pytest.param(
            Parameter(
                "q", "query", False, {"type": "array"}, style="spaceDelimited", explode=False
            ),
            ["a b"],
            ["a", "b"],
            id="query-space-delimited",
        ),
        pytest.param(
            Parameter("q", "query", False, {"type": "array"}, style="pipeDelimited", explode=True),
            ["a", "b|c"],
            ["a", "b|c"],
            id="query-pipe-exploded-repeats",
        ),
        pytest.param(
            Parameter("q", "query", False, {"type": "array", "items": {"type": "integer"}}),
            ["1", "x"],
            [1, "x"],
            id="items-typed-one-by-one",
        ),
        pytest.param(
            Parameter("p", "path", True, {"type": ["integer", "string"]}),
            ["5"],
            5,
            id="first-type-that-reads",
        ),
    ],
)
def test_styles(param: Parameter, raw: list[str], value: Any) -> None:
    assert plan_parameter(param).read(raw) == value


def test_the_error_list_is_bounded() -> None:
    query = b"limit=5&" + b"&".join(b"p%d=1" % i for i in range(200))
    result = violations(validator(PARAMS), query=query, headers=[TENANT], body=GOOD_BODY)
    assert result is not None
    assert len(result[1]) == 20
