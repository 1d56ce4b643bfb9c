"""Loading OpenAPI specs: every form of $ref, and schemas translated to JSON Schema 2020-12."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from apishield.schema import OpenAPISpec, Operation, load_openapi

SPECS = Path(__file__).parent / "specs"
ORDERS = SPECS / "orders" / "openapi.yaml"
PETS = SPECS / "pets" / "openapi.json"


@pytest.fixture(scope="module")
def orders() -> OpenAPISpec:
    return load_openapi(ORDERS)


@pytest.fixture(scope="module")
def pets() -> OpenAPISpec:
    return load_openapi(PETS)


def op(spec: OpenAPISpec, method: str, path: str) -> Operation:
    found = spec.operation(method, path)
    assert found is not None, f"{method} {path}"
    return found


def body_schema(operation: Operation, media_type: str = "application/json") -> dict[str, Any]:
    for media in operation.request_body:
        if media.media_type == media_type:
            assert media.schema is not None
            return media.schema
    raise AssertionError(media_type)


def response_schema(operation: Operation, status: str, media_type: str) -> dict[str, Any]:
    for media in operation.responses[status]:
        if media.media_type == media_type:
            assert media.schema is not None
            return media.schema
    raise AssertionError(media_type)


def every_schema(spec: OpenAPISpec) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for operation in spec.operations:
        found += [p.schema for p in operation.parameters if p.schema is not None]
        found += [m.schema for m in operation.request_body if m.schema is not None]
        for media in operation.responses.values():
            found += [m.schema for m in media if m.schema is not None]
    return found


def refs_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v)]
    return []


def valid(schema: dict[str, Any], instance: Any) -> bool:
    return bool(jsonschema_rs.Draft202012Validator(schema).is_valid(instance))


# -- the document ---------------------------------------------------------------------------


def test_document_facts(orders: OpenAPISpec) -> None:
    assert orders.openapi == "3.0.3"
    assert (orders.title, orders.version) == ("Orders API", "2.1.0")
    assert orders.servers == ("https://api.example.com",)
    assert orders.base_path == ""
    assert set(orders.security_schemes) == {"oauth", "apiKey"}
    assert orders.source == ORDERS.resolve()


def test_every_operation_is_loaded(orders: OpenAPISpec) -> None:
    assert sorted((o.method, o.path) for o in orders.operations) == [
        ("DELETE", "/v2/orders/{order_id}"),
        ("GET", "/health"),
        ("GET", "/v1/orders"),
        ("GET", "/v2/categories/{category_id}"),
        ("GET", "/v2/exports/{name}.csv"),
        ("GET", "/v2/orders"),
        ("GET", "/v2/orders/{order_id}"),
        ("GET", "/v2/orders/{order_id}/receipt.pdf"),
        ("POST", "/v2/orders"),
    ]


def test_operation_facts(orders: OpenAPISpec) -> None:
    legacy = op(orders, "GET", "/v1/orders")
    assert legacy.deprecated is True
    assert legacy.operation_id == "listOrdersV1"
    assert legacy.summary == "List orders (version 1)"
    assert legacy.tags == ("orders",)
    assert legacy.pointer == "paths/orders.yaml#/legacy/get"
    assert op(orders, "GET", "/health").pointer == "#/paths/~1health/get"
    assert op(orders, "GET", "/v2/orders").deprecated is False


def test_security_operation_wins_document_default_and_empty_means_none(
    orders: OpenAPISpec,
) -> None:
    assert op(orders, "GET", "/v2/orders").security == ({"oauth": ("orders:read",)},)
    assert op(orders, "POST", "/v2/orders").security == ({"oauth": ("orders:write",)},)
    assert op(orders, "GET", "/v2/categories/{category_id}").security == (
        {"oauth": ("catalog:read",)},
        {"apiKey": ()},
    )
    assert op(orders, "GET", "/health").security is None


# -- parameters -----------------------------------------------------------------------------


def test_path_level_parameters_merge_and_the_operation_wins(orders: OpenAPISpec) -> None:
    listing = op(orders, "GET", "/v2/orders")
    by_name = {(p.name, p.location): p for p in listing.parameters}
    assert set(by_name) == {("limit", "query"), ("cursor", "query")}
    # the path item's $ref'd Limit says maximum 100; the operation's own says 50
    assert by_name[("limit", "query")].schema is not None
    assert by_name[("limit", "query")].schema["maximum"] == 50
    placing = op(orders, "POST", "/v2/orders")
    (limit,) = placing.parameters
    assert limit.schema is not None and limit.schema["maximum"] == 100
    assert limit.pointer == "#/components/parameters/Limit"


def test_parameter_from_a_ref_across_files(orders: OpenAPISpec) -> None:
    (order_id,) = op(orders, "DELETE", "/v2/orders/{order_id}").parameters
    assert (order_id.name, order_id.location, order_id.required) == ("order_id", "path", True)
    assert order_id.schema == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "string",
        "pattern": "^ord_[A-Za-z0-9]{12}$",
    }


def test_nullable_parameter(orders: OpenAPISpec) -> None:
    cursor = next(p for p in op(orders, "GET", "/v2/orders").parameters if p.name == "cursor")
    assert cursor.schema is not None
    assert cursor.schema["type"] == ["string", "null"]
    assert cursor.required is False


# -- request bodies and responses -----------------------------------------------------------


def test_request_body_from_a_ref_with_two_media_types(orders: OpenAPISpec) -> None:
    placing = op(orders, "POST", "/v2/orders")
    assert placing.body_required is True
    assert [m.media_type for m in placing.request_body] == [
        "application/json",
        "application/merge-patch+json",
    ]
    assert body_schema(placing) == body_schema(placing, "application/merge-patch+json")
    assert op(orders, "GET", "/v2/orders").request_body == ()


def test_responses_by_status_including_ranges_and_refs(orders: OpenAPISpec) -> None:
    placing = op(orders, "POST", "/v2/orders")
    assert set(placing.responses) == {"201", "4XX"}
    problem = response_schema(placing, "4XX", "application/problem+json")
    assert problem["properties"]["status"] == {"type": "integer"}
    assert op(orders, "DELETE", "/v2/orders/{order_id}").responses == {"204": ()}


# -- JSON pointers --------------------------------------------------------------------------


def test_pointer_escapes_tilde_slash_and_percent(orders: OpenAPISpec) -> None:
    order = response_schema(op(orders, "GET", "/v2/orders/{order_id}"), "200", "application/json")
    properties = order["properties"]
    # "#/Line%20Item": percent-encoding; "#/price~1EUR": '/'; "#/tilde~0region": '~'
    assert properties["lines"]["items"]["required"] == ["sku", "quantity"]
    assert properties["total"]["exclusiveMaximum"] == 1000000
    assert properties["region"]["enum"] == ["eu", "us", None]


# -- translation of the 3.0 dialect ---------------------------------------------------------


def test_every_schema_is_valid_draft_2020_12(orders: OpenAPISpec, pets: OpenAPISpec) -> None:
    schemas = every_schema(orders) + every_schema(pets)
    assert len(schemas) > 15
    for schema in schemas:
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema_rs.meta.validate(schema)
        jsonschema_rs.Draft202012Validator(schema)  # compiles: every $ref resolves inside it


def test_schemas_are_self_contained(orders: OpenAPISpec, pets: OpenAPISpec) -> None:
    for schema in every_schema(orders) + every_schema(pets):
        for ref in refs_in(schema):
            assert ref.startswith("#/$defs/"), ref
            assert ref.removeprefix("#/$defs/") in schema["$defs"]


def test_30_dialect_keywords_are_translated(orders: OpenAPISpec) -> None:
    order = response_schema(op(orders, "GET", "/v2/orders/{order_id}"), "200", "application/json")
    text = json.dumps(order)
    for dropped in ('"nullable"', '"example"', '"xml"', '"externalDocs"'):
        assert dropped not in text
    assert order["properties"]["id"]["readOnly"] is True
    assert order["properties"]["note"]["type"] == ["string", "null"]
    assert order["properties"]["coupon"]["discriminator"] == {"propertyName": "code"}
    quantity = order["properties"]["lines"]["items"]["properties"]["quantity"]
    assert quantity == {"type": "integer", "maximum": 1000, "exclusiveMinimum": 0}
    total = order["properties"]["total"]
    assert total == {"type": "number", "minimum": 0, "exclusiveMaximum": 1000000}


def test_30_dialect_behaves_as_written(orders: OpenAPISpec) -> None:
    schema = body_schema(op(orders, "POST", "/v2/orders"))
    line = {"sku": "ABC-1", "quantity": 1}
    assert valid(schema, {"lines": [line]})
    assert valid(schema, {"lines": [line], "note": None, "coupon": None})
    assert valid(schema, {"lines": [line], "coupon": {"code": "X"}})
    assert not valid(schema, {"lines": [{"sku": "ABC-1", "quantity": 0}]})  # exclusive minimum
    assert not valid(schema, {"lines": [line], "note": 5})
    assert not valid(schema, {"lines": [line], "role": "admin"})  # additionalProperties: false
    assert not valid(schema, {"lines": []})


def test_recursive_schema_keeps_its_recursion_in_defs(orders: OpenAPISpec) -> None:
    category = op(orders, "GET", "/v2/categories/{category_id}")
    schema = response_schema(category, "200", "application/json")
    assert schema["$ref"] == "#/$defs/Category"
    assert set(schema["$defs"]) == {"Category"}
    node = schema["$defs"]["Category"]
    assert node["properties"]["parent"] == {"$ref": "#/$defs/Category"}
    assert node["properties"]["children"]["items"] == {"$ref": "#/$defs/Category"}
    tree = {"id": 1, "name": "root", "children": [{"id": 2, "name": "leaf", "children": []}]}
    assert valid(schema, tree)
    assert not valid(schema, {"id": 1, "name": "root", "children": [{"id": 2}]})


def test_yaml_12_scalars(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text(
        "openapi: 3.0.3\n"
        "info: {title: t, version: '1'}\n"
        "paths:\n"
        "  /answers:\n"
        "    get:\n"
        "      parameters:\n"
        "        - name: answer\n"
        "          in: query\n"
        "          schema: {type: string, enum: [yes, no, on, off], default: 2026-01-01}\n"
        "      responses:\n"
        "        200: {description: ok}\n"
    )
    spec = load_openapi(tmp_path / "openapi.yaml")
    (answer,) = op(spec, "GET", "/answers").parameters
    assert answer.schema is not None
    assert answer.schema["enum"] == ["yes", "no", "on", "off"]
    assert answer.schema["default"] == "2026-01-01"
    assert set(op(spec, "GET", "/answers").responses) == {"200"}


def test_small_yaml_aliases_are_expanded(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text(
        "openapi: 3.0.3\n"
        "info: {title: t, version: '1'}\n"
        "paths:\n"
        "  /a:\n"
        "    get:\n"
        "      parameters:\n"
        "        - &page {name: page, in: query, schema: {type: integer, minimum: 1}}\n"
        "      responses: {'200': {description: ok}}\n"
        "  /b:\n"
        "    get:\n"
        "      parameters: [*page]\n"
        "      responses: {'200': {description: ok}}\n"
    )
    spec = load_openapi(tmp_path / "openapi.yaml")
    (a,) = op(spec, "GET", "/a").parameters
    (b,) = op(spec, "GET", "/b").parameters
    assert (b.name, b.location, b.schema) == (a.name, a.location, a.schema)
    assert b.schema == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "integer",
        "minimum": 1,
    }


def test_ignored_header_parameters(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text(
        "openapi: 3.0.3\n"
        "info: {title: t, version: '1'}\n"
        "paths:\n"
        "  /a:\n"
        "    get:\n"
        "      parameters:\n"
        "        - {name: Authorization, in: header, schema: {type: string}}\n"
        "        - {name: X-Trace, in: header, schema: {type: string}}\n"
        "      responses: {'200': {description: ok}}\n"
    )
    spec = load_openapi(tmp_path / "openapi.yaml")
    assert [p.name for p in op(spec, "GET", "/a").parameters] == ["X-Trace"]


# -- 3.1 ------------------------------------------------------------------------------------


def test_31_json_spec(pets: OpenAPISpec) -> None:
    assert pets.openapi == "3.1.0"
    assert pets.base_path == "/api"
    assert sorted((o.method, o.path) for o in pets.operations) == [
        ("GET", "/pets"),
        ("GET", "/pets/{pet_id}"),
        ("POST", "/pets"),
        ("PUT", "/pets/{pet_id}"),
    ]
    assert op(pets, "PUT", "/pets/{pet_id}").deprecated is True
    assert op(pets, "GET", "/pets/{pet_id}").pointer == "#/components/pathItems/OnePet/get"
    (page,) = op(pets, "GET", "/pets").parameters
    assert page.pointer == "common.json#/parameters/Page"
    assert op(pets, "GET", "/pets").security == ({"bearer": ()},)


def test_31_schemas_pass_through_with_ref_siblings(pets: OpenAPISpec) -> None:
    schema = body_schema(op(pets, "POST", "/pets"))
    assert schema["required"] == ["name", "kind"]
    assert schema["allOf"] == [{"$ref": "#/$defs/Pet"}]
    pet = schema["$defs"]["Pet"]
    assert pet["properties"]["tag"] == {"type": ["string", "null"]}
    assert pet["properties"]["owner"]["properties"]["email"]["format"] == "email"
    assert pet["examples"] == [{"name": "Rex", "kind": "dog"}]
    assert valid(schema, {"name": "Rex", "kind": "dog", "friends": [{"name": "Tom"}]})
    assert not valid(schema, {"name": "Rex"})  # the sibling `required` applies
    assert not valid(schema, {"name": "Rex", "kind": "dog", "friends": [{"age": 100}]})
    (pet_id,) = op(pets, "GET", "/pets/{pet_id}").parameters
    assert pet_id.schema is not None and pet_id.schema["exclusiveMinimum"] == 0


def test_a_whole_file_as_a_ref_target_and_json_with_tabs(tmp_path: Path) -> None:
    (tmp_path / "order.json").write_text('{\n\t"type": "object",\n\t"required": ["id"]\n}\n')
    (tmp_path / "openapi.yaml").write_text(
        "openapi: 3.1.0\n"
        "info: {title: t, version: '1'}\n"
        "paths:\n"
        "  /orders:\n"
        "    post:\n"
        "      requestBody:\n"
        "        content:\n"
        "          application/json: {schema: {$ref: ./order.json}}\n"
        "      responses: {'201': {description: created}}\n"
    )
    spec = load_openapi(tmp_path / "openapi.yaml")
    assert body_schema(op(spec, "POST", "/orders")) == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["id"],
    }
