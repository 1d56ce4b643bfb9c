"""Every spec problem is one located line (file:line: field: message), never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apishield.errors import ConfigError
from apishield.schema import SpecError, load_openapi
from apishield.schema.sources import MAX_FILE_BYTES

HEAD = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\n"


def ok_op(body: str = "") -> str:
    return "paths:\n  /a:\n    get:\n" + body + "      responses: {'200': {description: ok}}\n"


def schema_op(schema: str) -> str:
    """An operation whose one query parameter has ``schema`` (a flow mapping)."""
    return ok_op(f"      parameters:\n        - {{name: q, in: query, schema: {schema}}}\n")


def fail(tmp_path: Path, files: dict[str, str], root: str = "openapi.yaml") -> str:
    for name, text in files.items():
        path = tmp_path / "spec" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_openapi(tmp_path / "spec" / root)
    message = str(caught.value)
    assert "\n" not in message
    assert isinstance(caught.value, ConfigError)
    return message.replace(str(tmp_path), "TMP")


CASES = [
    pytest.param(
        {"openapi.yaml": "swagger: '2.0'\ninfo: {title: t, version: '1'}\n"},
        "TMP/spec/openapi.yaml:1: swagger: Swagger 2.0 is not supported: convert the spec to "
        "OpenAPI 3 (3.0 or 3.1) first",
        id="swagger-2",
    ),
    pytest.param(
        {"openapi.yaml": "info: {title: t, version: '1'}\n"},
        "TMP/spec/openapi.yaml:1: not an OpenAPI document: the 'openapi' field is missing",
        id="not-openapi",
    ),
    pytest.param(
        {"openapi.yaml": "openapi: 3.2.0\ninfo: {title: t, version: '1'}\n"},
        "TMP/spec/openapi.yaml:1: openapi: OpenAPI 3.2.0 is not supported: use 3.0.x or 3.1.x",
        id="version-3.2",
    ),
    pytest.param(
        {"openapi.yaml": "openapi: 3.0\ninfo: {title: t, version: '1'}\n"},
        'TMP/spec/openapi.yaml:1: openapi: write the version as a quoted string, e.g. "3.0.0"',
        id="version-unquoted",
    ),
    pytest.param(
        {"openapi.yaml": "- openapi\n"},
        "TMP/spec/openapi.yaml:1: an OpenAPI document is a mapping with an 'openapi' field",
        id="not-a-mapping",
    ),
    pytest.param(
        {"openapi.yaml": "openapi: 3.0.3\n"},
        "TMP/spec/openapi.yaml:1: info: the 'info' mapping (title, version) is required",
        id="no-info",
    ),
    pytest.param(
        {"openapi.yaml": ""},
        "TMP/spec/openapi.yaml:1: the file is empty",
        id="empty",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + "paths:\n  /a: {}\n  /a: {}\n"},
        "TMP/spec/openapi.yaml:5: paths./a: the key '/a' appears twice",
        id="duplicate-key",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + "paths: [\n"},
        "TMP/spec/openapi.yaml:4: not valid YAML: did not find expected node content",
        id="bad-yaml",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + "x-base: &b {a: 1}\nx-more:\n  <<: *b\n"},
        "TMP/spec/openapi.yaml:5: x-more: YAML merge keys ('<<') are not part of YAML 1.2: "
        "write the keys out",
        id="merge-key",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + "x-loop: &a [*a]\n"},
        "TMP/spec/openapi.yaml:3: x-loop.0: a YAML alias refers to a node that contains it",
        id="recursive-alias",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + "x-nan: .nan\n"},
        "TMP/spec/openapi.yaml:3: x-nan: '.nan': JSON has no NaN or infinity",
        id="nan",
    ),
    pytest.param(
        {"openapi.json": '{"openapi": "3.1.0",\n "info": {"title": "t", "version": "1"},\n'},
        "TMP/spec/openapi.json:3: not valid JSON: Expecting property name enclosed in double "
        "quotes",
        id="bad-json",
    ),
    pytest.param(
        {"openapi.json": '{"openapi": "3.1.0", "openapi": "3.0.0"}'},
        "TMP/spec/openapi.json: the key 'openapi' appears twice in one object",
        id="json-duplicate-key",
    ),
    pytest.param(
        {"openapi.json": '{"openapi": "3.1.0", "x": NaN}'},
        "TMP/spec/openapi.json: NaN is not JSON",
        id="json-nan",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + "paths:\n  a: {}\n"},
        "TMP/spec/openapi.yaml:4: paths.a: 'a': a path must start with '/'",
        id="path-without-slash",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: 'https://example.com/s.yaml#/S'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: remote $ref "
        "'https://example.com/s.yaml#/S' refused: the gateway does not fetch from the network "
        "at start-up; save the file next to the spec and refer to it by relative path",
        id="remote-ref",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: 'file:///etc/passwd'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref "
        "'file:///etc/passwd': only relative file paths and #/json/pointers are supported",
        id="file-url",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: '../../../../../../etc/passwd'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref "
        "'../../../../../../etc/passwd' leaves the spec's folder: references may reach files "
        "in the spec's folder and below only",
        id="traversal",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: '/etc/passwd'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref '/etc/passwd' "
        "leaves the spec's folder: references may reach files in the spec's folder and below "
        "only",
        id="absolute-path",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: '%2E%2E/%2E%2E/etc/passwd'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref "
        "'%2E%2E/%2E%2E/etc/passwd' leaves the spec's folder: references may reach files in "
        "the spec's folder and below only",
        id="encoded-traversal",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: '#/components/schemas/Nope'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref "
        "'#/components/schemas/Nope': TMP/spec/openapi.yaml has nothing at "
        "#/components/schemas/Nope",
        id="missing-target",
    ),
    pytest.param(
        {
            "openapi.yaml": HEAD + schema_op("{$ref: 'schemas.yaml#/Nope'}"),
            "schemas.yaml": "Order: {type: object}\n",
        },
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref "
        "'schemas.yaml#/Nope': TMP/spec/schemas.yaml has nothing at #/Nope",
        id="missing-target-in-other-file",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: 'missing.yaml#/S'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref 'missing.yaml#/S': "
        "TMP/spec/missing.yaml: no such file",
        id="missing-file",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: '#Order'}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref '#Order': anchors "
        "are not supported; use a JSON pointer such as #/components/schemas/Name",
        id="anchor-ref",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$ref: 42}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema: $ref must be a string",
        id="ref-not-a-string",
    ),
    pytest.param(
        {
            "openapi.yaml": HEAD
            + ok_op("      parameters:\n        - $ref: '#/components/parameters/A'\n")
            + "components:\n  parameters:\n"
            + "    A: {$ref: '#/components/parameters/B'}\n"
            + "    B: {$ref: '#/components/parameters/A'}\n",
        },
        "TMP/spec/openapi.yaml:11: components.parameters.A: $ref cycle: "
        "'#/components/parameters/B' leads back here",
        id="parameter-cycle",
    ),
    pytest.param(
        {
            "openapi.yaml": HEAD + "paths:\n  /a: {$ref: 'items.yaml#/a'}\n",
            "items.yaml": "a: {$ref: '#/b'}\nb: {$ref: 'openapi.yaml#/paths/~1a'}\n",
        },
        "TMP/spec/openapi.yaml:4: paths./a: $ref cycle: 'items.yaml#/a' leads back here",
        id="path-item-cycle-across-files",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{$id: 'https://example.com/s', type: string}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema.$id: $id is not supported "
        "in schemas: refer to schemas by path with $ref",
        id="schema-id",
    ),
    pytest.param(
        {
            "openapi.yaml": "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
            + schema_op("{$dynamicRef: '#node'}")
        },
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema.$dynamicRef: $dynamicRef is "
        "not supported in schemas: refer to schemas by path with $ref",
        id="schema-dynamic-ref",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{type: [string, 'null']}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema.type: in OpenAPI 3.0 type "
        "is one name, not a list",
        id="30-type-list",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{type: integer, exclusiveMinimum: 3}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema.exclusiveMinimum: in "
        "OpenAPI 3.0 exclusiveMinimum is true or false",
        id="30-numeric-exclusive",
    ),
    pytest.param(
        {
            "openapi.yaml": "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
            + schema_op("{type: integer, minimum: 3, exclusiveMinimum: true}")
        },
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema.exclusiveMinimum: in "
        "OpenAPI 3.1 exclusiveMinimum is a number (the bound), not true or false",
        id="31-boolean-exclusive",
    ),
    pytest.param(
        {
            "openapi.yaml": "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
            "jsonSchemaDialect: https://json-schema.org/draft-07/schema\n"
        },
        "TMP/spec/openapi.yaml:3: jsonSchemaDialect: 'https://json-schema.org/draft-07/schema' "
        "is not supported: schemas must be JSON Schema 2020-12",
        id="31-other-dialect",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{type: object, properties: [a, b]}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema.properties: properties "
        "must map names to schemas",
        id="properties-not-a-mapping",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + schema_op("{allOf: [1]}")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].schema.allOf[0]: a schema must be "
        "an object",
        id="schema-not-an-object",
    ),
    pytest.param(
        {
            "openapi.yaml": HEAD
            + "paths:\n  /a/{id}:\n    get:\n      parameters:\n"
            + "        - {name: id, in: path, schema: {type: string}}\n"
            + "      responses: {'200': {description: ok}}\n"
        },
        "TMP/spec/openapi.yaml:7: paths./a/{id}.get.parameters[0]: path parameter 'id' must "
        "say 'required: true'",
        id="path-parameter-not-required",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + ok_op("      parameters:\n        - {name: q, in: body}\n")},
        "TMP/spec/openapi.yaml:7: paths./a.get.parameters[0].in: 'in' must be one of path, "
        "query, header, cookie",
        id="parameter-in-body",
    ),
    pytest.param(
        {
            "openapi.yaml": HEAD
            + ok_op("      parameters:\n" + "        - {name: q, in: query}\n" * 2)
        },
        "TMP/spec/openapi.yaml:8: paths./a.get.parameters[1]: the query parameter 'q' is "
        "listed twice",
        id="parameter-twice",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + ok_op("      requestBody: {required: true}\n")},
        "TMP/spec/openapi.yaml:6: paths./a.get.requestBody: requestBody needs 'content' (media "
        "types and their schemas)",
        id="body-without-content",
    ),
    pytest.param(
        {"openapi.yaml": HEAD + ok_op("      security: [{oauth: [read]}]\n")},
        "TMP/spec/openapi.yaml:6: paths./a.get.security[0].oauth: 'oauth' is not in "
        "components.securitySchemes",
        id="unknown-security-scheme",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CASES)
def test_located_one_line_error(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    root = next(iter(files))
    assert fail(tmp_path, files, root) == expected


def test_missing_root_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_openapi(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_bytes(b"openapi: '3.0.3'\ninfo: {title: \xff}\n")
    with pytest.raises(SpecError, match=r"openapi\.yaml: the file is not UTF-8 text$"):
        load_openapi(tmp_path / "openapi.yaml")


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.yaml"
    outside.write_text("S: {type: string}\n")
    spec = tmp_path / "spec"
    spec.mkdir()
    os.symlink(outside, spec / "linked.yaml")
    (spec / "openapi.yaml").write_text(HEAD + schema_op("{$ref: 'linked.yaml#/S'}"))
    with pytest.raises(SpecError, match="leaves the spec's folder"):
        load_openapi(spec / "openapi.yaml")


def test_file_over_the_size_bound(tmp_path: Path) -> None:
    text = HEAD + "x-pad: '" + "a" * MAX_FILE_BYTES + "'\n"
    (tmp_path / "openapi.yaml").write_text(text)
    with pytest.raises(SpecError) as caught:
        load_openapi(tmp_path / "openapi.yaml")
    assert str(caught.value) == (
        f"{tmp_path / 'openapi.yaml'}: the file is {len(text)} bytes; spec files are limited to "
        f"{MAX_FILE_BYTES} bytes"
    )


def test_referenced_file_over_the_size_bound(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("S: {type: string}\nx: '" + "a" * MAX_FILE_BYTES + "'\n")
    (tmp_path / "openapi.yaml").write_text(HEAD + schema_op("{$ref: 'big.yaml#/S'}"))
    with pytest.raises(SpecError, match=r"big\.yaml: the file is \d+ bytes; spec files are"):
        load_openapi(tmp_path / "openapi.yaml")


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    # the "billion laughs": nine levels of ten aliases each expand to 10**9 values
    lines = [HEAD, "x-0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    for i in range(1, 10):
        lines.append(f"x-{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n")
    (tmp_path / "openapi.yaml").write_text("".join(lines))
    with pytest.raises(SpecError) as caught:
        load_openapi(tmp_path / "openapi.yaml")
    assert "more than 1000000 values once YAML aliases are expanded" in str(caught.value)


def test_exponential_refs_are_bounded(tmp_path: Path) -> None:
    # S0 refers to S1 twice, S1 to S2 twice...: 2**30 values once inlined
    schemas = [
        f"    S{i}: {{type: object, properties: {{a: {{$ref: '#/components/schemas/S{i + 1}'}}, "
        f"b: {{$ref: '#/components/schemas/S{i + 1}'}}}}}}\n"
        for i in range(30)
    ]
    schemas.append("    S30: {type: string}\n")
    text = (
        HEAD
        + schema_op("{$ref: '#/components/schemas/S0'}")
        + "components:\n  schemas:\n"
        + "".join(schemas)
    )
    (tmp_path / "openapi.yaml").write_text(text)
    with pytest.raises(SpecError) as caught:
        load_openapi(tmp_path / "openapi.yaml")
    assert "expand to more than 1000000 values once $ref is inlined" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param(
            "openapi.json",
            '{"openapi": "3.1.0",\n"x": ' + "[" * 200 + "]" * 200 + "}",
            "openapi.json:2: x.0.0.0.0",
            id="json",
        ),
        pytest.param(
            "openapi.yaml",
            "openapi: 3.0.3\nx: " + "[" * 200 + "]" * 200 + "\n",
            "openapi.yaml:2: x.0.0.0.0",
            id="yaml",
        ),
    ],
)
def test_nesting_depth_is_bounded(tmp_path: Path, name: str, text: str, expected: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as caught:
        load_openapi(tmp_path / name)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/{expected}")
    assert message.endswith(": nested deeper than 128 levels")


def test_a_message_stays_one_line_whatever_the_spec_holds(tmp_path: Path) -> None:
    (tmp_path / "openapi.json").write_text(
        '{"openapi": "3.0.3", "info": {"title": "t", "version": "1"},\n'
        ' "paths": {"/a\\nb": {"get": {"security": [{"x\\ny": []}]}}}}'
    )
    with pytest.raises(SpecError) as caught:
        load_openapi(tmp_path / "openapi.json")
    assert str(caught.value) == (
        f"{tmp_path}/openapi.json:2: paths./a\\nb.get.security[0].x\\ny: 'x\\ny' is not in "
        "components.securitySchemes"
    )
