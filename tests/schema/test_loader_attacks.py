"""Hostile spec files: each ends in one located ``SpecError`` line, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from apishield.schema import SpecError, load_openapi

HEAD = 'openapi: "3.0.3"\ninfo: {title: t, version: "1"}\n'


def body_ref(ref: str) -> str:
    return HEAD + (
        "paths:\n  /a:\n    post:\n"
        "      parameters: [{name: q, in: query, schema: {type: string}}]\n"
        f"      requestBody: {{content: {{application/json: {{schema: {{$ref: {ref}}}}}}}}}\n"
        "      responses: {}\n"
    )


def refused(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_openapi(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param(
            "openapi.yaml", HEAD + "x: " + "9" * 5000 + "\npaths: {}\n", "integer", id="yaml-int"
        ),
        pytest.param(
            "openapi.json",
            '{"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "x": ' + "9" * 5000 + "}",
            "integer",
            id="json-int",
        ),
    ],
)
def test_integers_too_long_to_read_are_refused(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    assert expected in refused(tmp_path, name, text)


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param('"part%00.yaml#/x"', id="percent-encoded-nul"),
        pytest.param('"part\\0.yaml#/x"', id="raw-nul"),
    ],
)
def test_a_nul_in_a_reference_is_refused(tmp_path: Path, ref: str) -> None:
    assert "$ref" in refused(tmp_path, "openapi.yaml", body_ref(ref))


@pytest.mark.parametrize(
    "digit",
    [pytest.param("\u00b2", id="superscript-two"), pytest.param("\u0661", id="arabic-one")],
)
def test_array_indexes_are_ascii_digits_only(tmp_path: Path, digit: str) -> None:
    message = refused(tmp_path, "openapi.yaml", body_ref(f'"#/paths/~1a/post/parameters/{digit}"'))
    assert "has nothing at" in message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param(
            "openapi.json",
            '{"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "x": 1e400}',
            id="json",
        ),
        pytest.param("openapi.yaml", HEAD + "x: 1.0e+400\npaths: {}\n", id="yaml"),
    ],
)
def test_numbers_past_a_double_are_refused_alike(tmp_path: Path, name: str, text: str) -> None:
    assert "JSON has no NaN or infinity" in refused(tmp_path, name, text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("010", 10, id="leading-zero-is-decimal-not-octal"),
        pytest.param("0o10", 8, id="octal"),
        pytest.param("0x1F", 31, id="hex"),
        pytest.param("1e3", 1000.0, id="exponent-without-sign"),
        pytest.param("1_000", "1_000", id="underscores-are-text"),
        pytest.param("0b101", "0b101", id="binary-is-text"),
        pytest.param("'010'", "010", id="quoted-stays-text"),
    ],
)
def test_plain_numbers_are_read_as_yaml_1_2(tmp_path: Path, text: str, value: object) -> None:
    # PyYAML alone reads `minimum: 010` as 8: a bound looser than every other tool reads.
    path = tmp_path / "openapi.yaml"
    path.write_text(
        HEAD + "paths:\n  /a:\n    get:\n      parameters:\n"
        f"        - {{name: q, in: query, schema: {{type: number, x-bound: {text}}}}}\n"
        "      responses: {}\n",
        encoding="utf-8",
    )
    schema = load_openapi(path).operations[0].parameters[0].schema
    assert schema is not None
    assert schema["x-bound"] == value
    assert type(schema["x-bound"]) is type(value)
