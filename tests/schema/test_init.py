"""`apishield init`'s policy: every operation routed and closed, and the policy loads."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from apishield.errors import ConfigError
from apishield.policy.audit import audit_policy, audit_spec
from apishield.policy.load import load_policy, parse_policy
from apishield.policy.models import Policy
from apishield.schema import OpenAPISpec, load_openapi
from apishield.schema.init import InitResult, render_policy, write_policy

SPECS = Path(__file__).parent / "specs"
ORDERS = SPECS / "orders" / "openapi.yaml"
PETS = SPECS / "pets" / "openapi.json"
UPSTREAM = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def orders() -> OpenAPISpec:
    return load_openapi(ORDERS)


@pytest.fixture(scope="module")
def orders_init(orders: OpenAPISpec) -> InitResult:
    return render_policy(orders, upstream=UPSTREAM, spec_path="orders/openapi.yaml")


def parse(text: str) -> Policy:
    return parse_policy(yaml.safe_load(text), file="apishield.yaml")


def route_methods(policy: Policy) -> set[tuple[str, str]]:
    return {(route.path, method) for route in policy.routes for method in route.methods}


def block_before(text: str, line: str) -> list[str]:
    """The comment lines right above ``line`` in ``text``."""
    lines = text.splitlines()
    at = lines.index(line)
    start = at
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return lines[start:at]


def test_the_policy_loads_and_is_secure_by_default(orders_init: InitResult) -> None:
    policy = parse(orders_init.text)
    assert policy.mode == "production"
    assert policy.listen.tls == "dev"
    assert policy.listen.address == "127.0.0.1:8443"
    assert policy.upstream is not None and policy.upstream.url == UPSTREAM
    assert policy.openapi is not None
    assert policy.openapi.spec == Path("orders/openapi.yaml")
    assert policy.openapi.mode == "enforce"
    assert policy.identity is None
    assert all(route.allow is None for route in policy.routes)  # deny by default
    assert "tls: {cert: /etc/apishield/tls.crt, key: /etc/apishield/tls.key}" in orders_init.text


def test_every_operation_is_a_route_or_a_note(orders: OpenAPISpec, orders_init: InitResult) -> None:
    routed = route_methods(parse(orders_init.text))
    for op in orders.operations:
        noted = any(note.startswith(f"{op.method} {op.path}:") for note in orders_init.notes)
        assert ((op.path, op.method) in routed) != noted, f"{op.method} {op.path}"
    assert orders_init.operations == len(orders.operations) == 9
    assert orders_init.routes == len(parse(orders_init.text).routes) == 8
    assert routed == {
        ("/v1/orders", "GET"),
        ("/v2/orders", "GET"),
        ("/v2/orders", "POST"),
        ("/v2/orders/{order_id}", "GET"),
        ("/v2/orders/{order_id}", "DELETE"),
        ("/v2/orders/{order_id}/receipt.pdf", "GET"),
        ("/v2/categories/{category_id}", "GET"),
        ("/health", "GET"),
    }


def test_a_path_the_policy_cannot_express_is_commented_out_and_reported(
    orders_init: InitResult,
) -> None:
    assert orders_init.notes == (
        "GET /v2/exports/{name}.csv: written commented out: the segment '{name}.csv' mixes a "
        "parameter with text; a policy parameter fills a whole path segment",
    )
    assert '  # - path: "/v2/exports/{name}.csv"' in orders_init.text
    assert "  #   methods: [GET]" in orders_init.text


def test_media_types_come_from_the_request_body(orders_init: InitResult) -> None:
    policy = parse(orders_init.text)
    (post,) = [r for r in policy.routes if r.path == "/v2/orders" and "POST" in r.methods]
    assert post.methods == ["POST"]
    assert post.content_types == ["application/json", "application/merge-patch+json"]
    (get,) = [r for r in policy.routes if r.path == "/v2/orders" and "GET" in r.methods]
    assert get.content_types is None


def test_scopes_from_the_spec_are_the_suggestion(orders_init: InitResult) -> None:
    text = orders_init.text
    above_post = block_before(text, '  - path: "/v2/orders"')  # the first: GET
    assert above_post[-1] == '  # TODO who may call: allow: {scopes: ["orders:read"]}'
    lines = text.splitlines()
    post_at = [i for i, line in enumerate(lines) if line == "    methods: [POST]"][0]
    assert lines[post_at - 2] == '  # TODO who may call: allow: {scopes: ["orders:write"]}'
    category = block_before(text, '  - path: "/v2/categories/{category_id}"')
    assert category[-1] == (
        '  # TODO who may call: allow: {scopes: ["catalog:read"]}  (the spec also accepts: apiKey)'
    )
    health = block_before(text, '  - path: "/health"')
    assert health[-1] == (
        "  # TODO who may call: the spec needs no credentials here: `allow: public` if anyone "
        "may call it"
    )
    # the suggestion, uncommented, is a valid rule
    suggestion = above_post[-1].split("TODO who may call: ", 1)[1]
    rule = yaml.safe_load(suggestion)
    assert rule == {"allow": {"scopes": ["orders:read"]}}


def test_versions_are_detected_and_deprecation_noted(orders_init: InitResult) -> None:
    policy = parse(orders_init.text)
    assert [v.prefix for v in policy.versions] == ["/v1", "/v2"]
    v1, v2 = policy.versions
    assert v1.deprecated is not None and v2.deprecated is None
    assert "# GET listOrdersV1: List orders (version 1) (deprecated in the spec)" in (
        orders_init.text
    )


def test_identity_suggestion_is_commented_and_valid_once_uncommented(
    orders_init: InitResult,
) -> None:
    lines = orders_init.text.splitlines()
    start = lines.index("# identity:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    identity = yaml.safe_load("\n".join(block))["identity"]
    assert identity["api_keys"] == {"header": "X-API-Key"}
    (issuer,) = identity["issuers"]
    assert issuer["issuer"] == "https://login.example.com/realms/main"
    assert issuer["discovery"] is True
    data = yaml.safe_load(orders_init.text)
    data["identity"] = identity
    assert parse_policy(data).identity is not None


def test_server_path_prefixes_routes_and_bearer_suggestion() -> None:
    spec = load_openapi(PETS)
    result = render_policy(spec, upstream=UPSTREAM, spec_path="openapi.json")
    policy = parse(result.text)
    assert route_methods(policy) == {
        ("/api/pets", "GET"),
        ("/api/pets", "POST"),
        ("/api/pets/{pet_id}", "GET"),
        ("/api/pets/{pet_id}", "PUT"),
    }
    assert policy.versions == []
    assert '#     - issuer: https://login.example.com  # from "bearer"' in result.text
    assert "  # PUT replacePet (deprecated in the spec)" in result.text
    assert audit_spec(policy, spec) == []


def write_spec(tmp_path: Path, paths: str, extra: str = "") -> Path:
    spec = tmp_path / "openapi.yaml"
    spec.write_text("openapi: 3.0.3\ninfo: {title: Odd API, version: '1'}\n" + extra + paths)
    return spec


def test_unexpressible_operations_are_never_dropped(tmp_path: Path) -> None:
    ok = "      responses: {'200': {description: ok}}\n"
    spec = write_spec(
        tmp_path,
        "paths:\n"
        "  /items/{item-id}:\n"
        "    get:\n"
        "      parameters: [{name: item-id, in: path, required: true}]\n" + ok + "  /items:\n"
        "    trace:\n" + ok + "    get:\n" + ok + "  /things/{a}:\n"
        "    get:\n"
        "      parameters: [{name: a, in: path, required: true}]\n" + ok + "  /things/{b}:\n"
        "    delete:\n"
        "      parameters: [{name: b, in: path, required: true}]\n" + ok + "    get:\n"
        "      parameters: [{name: b, in: path, required: true}]\n" + ok,
    )
    result = render_policy(load_openapi(spec), upstream=UPSTREAM, spec_path="openapi.yaml")
    assert result.notes == (
        "GET /items/{item-id}: written commented out: the parameter name {item-id} is not a "
        "policy parameter name (letters, digits and '_')",
        "TRACE /items: written commented out: the policy has no TRACE method (it routes GET, "
        "HEAD, POST, PUT, PATCH, DELETE, OPTIONS)",
        "GET /things/{b}: written commented out: the same route as /things/{a} (only names differ)",
    )
    policy = parse(result.text)
    assert route_methods(policy) == {
        ("/items", "GET"),
        ("/things/{a}", "GET"),
        ("/things/{b}", "DELETE"),
    }
    assert "# The spec declares no security schemes." in result.text
    assert "  # TODO who may call: the spec needs no credentials here" in result.text


def test_no_routable_operation_still_writes_a_valid_policy(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, "paths:\n  /x/{a}.json:\n    get:\n      responses: {'200': {description: ok}}\n"
    )
    result = render_policy(load_openapi(spec), upstream=UPSTREAM, spec_path="openapi.yaml")
    assert parse(result.text).routes == []
    assert "routes: []  # no operation of the spec could be routed" in result.text
    assert len(result.notes) == 1


def test_wildcard_body_media_type_is_left_to_fill(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        "paths:\n  /upload:\n    post:\n"
        "      requestBody:\n        content:\n"
        "          '*/*': {schema: {type: string}}\n"
        "          'text/plain; charset=utf-8': {schema: {type: string}}\n"
        "      responses: {'200': {description: ok}}\n",
    )
    result = render_policy(load_openapi(spec), upstream=UPSTREAM, spec_path="openapi.yaml")
    (route,) = parse(result.text).routes
    assert route.content_types == ["text/plain"]
    assert (
        "  # POST accepts '*/*' in the spec: list the exact media types it takes in content_types"
    ) in result.text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1", "--upstream: 'ftp://127.0.0.1' is not an http:// or https:// URL"),
        ("127.0.0.1:8000", "--upstream: '127.0.0.1:8000' is not an http:// or https:// URL"),
        (
            "http://user:pw@127.0.0.1:8000",
            "--upstream: the upstream URL takes no query, fragment or credentials",
        ),
    ],
)
def test_upstream_is_validated(orders: OpenAPISpec, url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render_policy(orders, upstream=url, spec_path="openapi.yaml")
    assert str(caught.value) == message


def copy_orders(tmp_path: Path) -> Path:
    shutil.copytree(ORDERS.parent, tmp_path / "api")
    return tmp_path / "api" / "openapi.yaml"


def test_write_policy_round_trips_through_the_policy_loader(tmp_path: Path) -> None:
    spec = copy_orders(tmp_path)
    (tmp_path / "deploy").mkdir()
    output = tmp_path / "deploy" / "apishield.yaml"
    result = write_policy(spec, upstream=UPSTREAM + "/", output=output)
    assert output.read_text() == result.text
    policy = load_policy(output)
    assert policy.openapi is not None
    assert policy.openapi.spec.resolve() == spec.resolve()
    assert 'spec: "../api/openapi.yaml"' in result.text
    assert policy.upstream is not None and policy.upstream.url == UPSTREAM
    findings = audit_policy(policy, spec=load_openapi(policy.openapi.spec))
    closed = sorted(f.field[1] for f in findings if f.code == "route_closed")
    assert closed == list(range(8))
    (unrouted,) = [f for f in findings if f.code == "operation_not_routed"]
    assert unrouted.message == (
        "GET /v2/exports/{name}.csv (getExport) is in the OpenAPI spec but no route has it, "
        "so it is refused (404)"
    )
    assert not any(f.code == "route_not_in_spec" for f in findings)


def test_write_policy_keeps_an_existing_file_unless_forced(tmp_path: Path) -> None:
    spec = copy_orders(tmp_path)
    output = tmp_path / "apishield.yaml"
    output.write_text("# filled in by hand\n")
    with pytest.raises(ConfigError) as caught:
        write_policy(spec, upstream=UPSTREAM, output=output)
    assert str(caught.value) == f"{output} exists: pass --force to overwrite it"
    assert output.read_text() == "# filled in by hand\n"
    write_policy(spec, upstream=UPSTREAM, output=output, force=True)
    assert output.read_text().startswith("# apishield policy for Orders API 2.1.0\n")


def test_write_policy_into_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot write .*apishield\.yaml: No such file"):
        write_policy(ORDERS, upstream=UPSTREAM, output=tmp_path / "nope" / "apishield.yaml")


def test_audit_names_routes_the_spec_does_not_describe(tmp_path: Path) -> None:
    spec = copy_orders(tmp_path)
    output = tmp_path / "apishield.yaml"
    text = write_policy(spec, upstream=UPSTREAM, output=output).text
    text = re.sub(r"routes:\n", 'routes:\n  - {path: "/v2/admin", methods: [GET, POST]}\n', text)
    policy = parse(text)
    findings = [f for f in audit_spec(policy, load_openapi(spec)) if f.code == "route_not_in_spec"]
    assert [(f.severity, f.field, f.message) for f in findings] == [
        (
            "medium",
            ("routes", 0, "methods"),
            "GET /v2/admin is not in the OpenAPI spec: its requests are forwarded without "
            "schema validation",
        ),
        (
            "medium",
            ("routes", 0, "methods"),
            "POST /v2/admin is not in the OpenAPI spec: its requests are forwarded without "
            "schema validation",
        ),
    ]


def test_text_from_the_spec_cannot_write_settings(tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text(
        json.dumps(
            {
                "openapi": "3.0.3",
                "info": {"title": "T\nmode: development\n", "version": "1\u2028listen: x"},
                "paths": {
                    "/a\nb": {"get": {"responses": {"200": {"description": "ok"}}}},
                    "/c": {
                        "get": {
                            "operationId": "x\r\nroutes: []",
                            "summary": "s\x85upstream: null",
                            "responses": {"200": {"description": "ok"}},
                        }
                    },
                },
            }
        )
    )
    result = render_policy(load_openapi(spec), upstream=UPSTREAM, spec_path="openapi.json")
    policy = parse(result.text)
    assert policy.mode == "production"
    assert policy.upstream is not None
    assert route_methods(policy) == {("/c", "GET")}
    assert result.notes == (
        "GET /a b: written commented out: the path holds spaces, control or invisible characters",
    )
    assert '  # - path: "/a\\nb"' in result.text
    assert "  # GET x  routes: []: s upstream: null" in result.text
    assert result.text.startswith("# apishield policy for T mode: development  1 listen: x\n")


def test_identity_suggestions_for_each_kind_of_scheme(tmp_path: Path) -> None:
    schemes = (
        "components:\n  securitySchemes:\n"
        "    oidc: {type: openIdConnect, openIdConnectUrl: "
        "'https://id.example.com/tenant/.well-known/openid-configuration'}\n"
        "    queryKey: {type: apiKey, in: query, name: key}\n"
        "    basic: {type: http, scheme: basic}\n"
    )
    spec = write_spec(
        tmp_path,
        "security: [{oidc: [read]}]\npaths:\n  /a:\n    get:\n"
        "      responses: {'200': {description: ok}}\n" + schemes,
    )
    text = render_policy(load_openapi(spec), upstream=UPSTREAM, spec_path="openapi.yaml").text
    assert '#     - issuer: "https://id.example.com/tenant"  # from "oidc"' in text
    assert (
        '# "queryKey" sends an API key in the query: apishield accepts keys in one header only '
        "(URLs and cookies leak into logs and other sites)."
    ) in text
    assert '# "basic" (http) has no apishield equivalent: use API keys or bearer tokens.' in text
    assert '  # TODO who may call: allow: {scopes: ["read"]}' in text
