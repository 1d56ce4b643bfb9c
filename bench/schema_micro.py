"""CPU cost of validating request bodies, and what each JSON Schema library can check.

Compares the compiled validators apishield could use for stage 10 (request validation):

- ``jsonschema_rs`` (Rust, draft 2020-12), ``Draft202012Validator(..., validate_formats=True)``;
- ``fastjsonschema`` (generates Python code; drafts 4, 6 and 7 only);
- ``jsonschema`` (pure Python, the reference implementation), when it is installed.

For each of three realistic bodies (a small order, a list of 50 line items, a nested customer
record), valid and invalid, it reports process CPU time (``time.process_time``) per
validation in µs, and the time to compile each schema. Then it probes what the stage needs:
draft 2020-12 keywords (``unevaluatedProperties`` through ``allOf``, ``prefixItems``,
``$defs`` recursion), the formats ``email``, ``uuid``, ``date-time`` and ``uri`` actually
enforced, and a JSON path for each failing field (for the development-mode error list).
Last, the cost of stage 10's core (``OperationValidator.check``) on an order ``PUT`` with a
path, a query and a header parameter, valid and refused.

    python bench/schema_micro.py [--rounds 5] [--count 20000]

Other work on the machine disturbs single runs: each figure is the median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

JSON = Any

ORDER_SCHEMA: JSON = {
    "type": "object",
    "required": ["customer_id", "currency", "lines"],
    "properties": {
        "customer_id": {"type": "string", "format": "uuid"},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "note": {"type": "string", "maxLength": 500},
        "lines": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,20}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "price": {"type": "number", "minimum": 0},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


def _order(lines: int) -> JSON:
    return {
        "customer_id": "3f1c2b8e-1d2a-4c5b-9e8f-0a1b2c3d4e5f",
        "currency": "EUR",
        "note": "leave at the door",
        "lines": [{"sku": f"SKU-{i:04d}", "qty": 1 + i % 7, "price": 9.5} for i in range(lines)],
    }


CUSTOMER_SCHEMA: JSON = {
    "type": "object",
    "required": ["name", "email", "address"],
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "email": {"type": "string", "format": "email"},
        "website": {"type": "string", "format": "uri"},
        "created": {"type": "string", "format": "date-time"},
        "address": {
            "type": "object",
            "required": ["street", "city", "country"],
            "properties": {
                "street": {"type": "string"},
                "city": {"type": "string"},
                "country": {"type": "string", "minLength": 2, "maxLength": 2},
                "geo": {
                    "type": "object",
                    "properties": {
                        "lat": {"type": "number", "minimum": -90, "maximum": 90},
                        "lon": {"type": "number", "minimum": -180, "maximum": 180},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    },
    "additionalProperties": False,
}

CUSTOMER: JSON = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "website": "https://example.com/ada",
    "created": "2026-11-28T10:00:00Z",
    "address": {
        "street": "12 St James's Square",
        "city": "London",
        "country": "GB",
        "geo": {"lat": 51.5, "lon": -0.13},
    },
    "tags": ["vip", "early"],
}


def _cases() -> list[tuple[str, JSON, JSON, JSON]]:
    """(name, schema, valid body, invalid body)."""
    bad_order = _order(3)
    bad_order["lines"][2]["qty"] = 0
    big = _order(50)
    bad_big = copy.deepcopy(big)
    bad_big["lines"][49]["role"] = "admin"  # a property the schema does not declare
    bad_customer = copy.deepcopy(CUSTOMER)
    bad_customer["address"]["geo"]["lat"] = 123
    return [
        ("order", ORDER_SCHEMA, _order(3), bad_order),
        ("order-50", ORDER_SCHEMA, big, bad_big),
        ("nested", CUSTOMER_SCHEMA, CUSTOMER, bad_customer),
    ]


Compile = Callable[[JSON], Callable[[JSON], bool]]


def _rs() -> Compile:
    import jsonschema_rs

    def compile_(schema: JSON) -> Callable[[JSON], bool]:
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
        return validator.is_valid  # type: ignore[no-any-return]

    return compile_


def _fast() -> Compile:
    import fastjsonschema

    def compile_(schema: JSON) -> Callable[[JSON], bool]:
        validate = fastjsonschema.compile(schema)

        def is_valid(instance: JSON) -> bool:
            try:
                validate(instance)
            except fastjsonschema.JsonSchemaException:
                return False
            return True

        return is_valid

    return compile_


def _pure() -> Compile:
    import jsonschema

    def compile_(schema: JSON) -> Callable[[JSON], bool]:
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        return validator.is_valid  # type: ignore[no-any-return]

    return compile_


def _libraries() -> dict[str, Compile]:
    libs: dict[str, Compile] = {"jsonschema_rs": _rs(), "fastjsonschema": _fast()}
    if importlib.util.find_spec("jsonschema") is not None:
        libs["jsonschema"] = _pure()
    return libs


def _cpu_us(call: Callable[[], object], count: int) -> float:
    for _ in range(min(count, 200)):
        call()
    start = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - start) / count * 1e6


def _probe(compile_: Compile, schema: JSON, good: JSON, bad: JSON) -> str:
    """``yes`` when ``good`` passes and ``bad`` fails, ``no`` otherwise, ``error`` on a raise."""
    try:
        is_valid = compile_(schema)
        return "yes" if is_valid(good) and not is_valid(bad) else "no"
    except Exception as exc:  # noqa: BLE001 - a library refusing the schema is a finding here
        return f"error ({type(exc).__name__})"


PROBES: list[tuple[str, JSON, JSON, JSON]] = [
    (
        "unevaluatedProperties through allOf",
        {
            "allOf": [{"$ref": "#/$defs/base"}, {"properties": {"b": {"type": "integer"}}}],
            "unevaluatedProperties": False,
            "$defs": {"base": {"properties": {"a": {"type": "integer"}}}},
        },
        {"a": 1, "b": 2},
        {"a": 1, "b": 2, "admin": True},
    ),
    (
        "prefixItems",
        {"type": "array", "prefixItems": [{"type": "integer"}], "items": False},
        [1],
        [1, 2],
    ),
    (
        "$defs recursion",
        {
            "$ref": "#/$defs/node",
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"child": {"$ref": "#/$defs/node"}, "n": {"type": "integer"}},
                }
            },
        },
        {"child": {"child": {"n": 1}}},
        {"child": {"child": {"n": "x"}}},
    ),
    ("format email", {"format": "email"}, "ada@example.com", "not-an-email"),
    ("format uuid", {"format": "uuid"}, "3f1c2b8e-1d2a-4c5b-9e8f-0a1b2c3d4e5f", "3f1c2b8e"),
    ("format date-time", {"format": "date-time"}, "2026-11-28T10:00:00Z", "2026-11-28"),
    ("format uri", {"format": "uri"}, "https://example.com/a", "no scheme here"),
]


def _error_paths(name: str) -> str:
    """The location each library reports for the failing field of the bad ``nested`` body."""
    bad = _cases()[2][3]
    try:
        if name == "jsonschema_rs":
            import jsonschema_rs

            error = next(iter(jsonschema_rs.Draft202012Validator(CUSTOMER_SCHEMA).iter_errors(bad)))
            return "/" + "/".join(str(p) for p in error.instance_path)
        if name == "fastjsonschema":
            import fastjsonschema

            try:
                fastjsonschema.compile(CUSTOMER_SCHEMA)(bad)
            except fastjsonschema.JsonSchemaException as exc:
                return f"message only: {exc.message!r}"
        if name == "jsonschema":
            import jsonschema

            error = next(jsonschema.Draft202012Validator(CUSTOMER_SCHEMA).iter_errors(bad))
            return "/" + "/".join(str(p) for p in error.absolute_path)
    except Exception as exc:  # noqa: BLE001 - reported as a finding
        return f"error ({type(exc).__name__})"
    return "none"


def _stage_core(rounds: int, count: int) -> None:
    """What stage 10's core adds per request: parameters read and typed, the body checked."""
    from apishield.errors import SchemaViolationError
    from apishield.schema.spec import MediaSchema, Operation, Parameter
    from apishield.schema.validate import OperationValidator, ValidationOptions

    op = Operation(
        path="/orders/{order_id}",
        method="PUT",
        operation_id=None,
        summary=None,
        parameters=(
            Parameter("order_id", "path", True, {"type": "integer", "minimum": 1}),
            Parameter("dry_run", "query", False, {"type": "boolean"}),
            Parameter("X-Tenant", "header", True, {"type": "string", "format": "uuid"}),
        ),
        body_required=True,
        request_body=(MediaSchema("application/json", ORDER_SCHEMA),),
        responses={},
        security=None,
    )
    validator = OperationValidator(op, ValidationOptions(), source="bench")
    headers = [
        (b"host", b"api.example.com"),
        (b"content-type", b"application/json"),
        (b"x-tenant", b"3f1c2b8e-1d2a-4c5b-9e8f-0a1b2c3d4e5f"),
    ]
    good, bad = _order(3), {**_order(3), "role": "admin"}

    def check(body: JSON) -> None:
        try:
            validator.check(
                path_values=["42"],
                query=b"dry_run=false",
                headers=headers,
                media_type="application/json",
                has_body=True,
                body=body,
            )
        except SchemaViolationError:
            pass

    for label, body in (("valid", good), ("refused", bad)):
        median = statistics.median(_cpu_us(lambda b=body: check(b), count) for _ in range(rounds))
        print(f"stage 10 core, order PUT {label:<8} {median:>8.2f} µs")


def main(rounds: int, count: int) -> None:
    libs = _libraries()
    print(f"python {platform.python_version()}, {platform.machine()}; median of {rounds} rounds")
    if "jsonschema" not in libs:
        print("(jsonschema, the pure-Python reference, is not installed: left out)")
    print()
    print(f"{'case':<22}" + "".join(f"{name:>18}" for name in libs))
    for case, schema, good, bad in _cases():
        for label, instance in (("valid", good), ("invalid", bad)):
            row = f"{case + ' ' + label:<22}"
            for compile_ in libs.values():
                is_valid = compile_(schema)
                assert is_valid(instance) is (label == "valid"), (case, label)  # noqa: S101
                n = count if compile_ is not libs.get("jsonschema") else max(count // 20, 100)
                median = statistics.median(
                    _cpu_us(lambda v=is_valid, i=instance: v(i), n) for _ in range(rounds)
                )
                row += f"{median:>15.2f} µs"
            print(row)
    row = f"{'compile (nested)':<22}"
    for compile_ in libs.values():
        n = max(count // 100, 20)
        median = statistics.median(
            _cpu_us(lambda c=compile_: c(CUSTOMER_SCHEMA), n) for _ in range(rounds)
        )
        row += f"{median:>15.1f} µs"
    print(row)
    print()
    print(f"{'support':<38}" + "".join(f"{name:>18}" for name in libs))
    for probe, schema, good, bad in PROBES:
        print(
            f"{probe:<38}" + "".join(f"{_probe(c, schema, good, bad):>18}" for c in libs.values())
        )
    print()
    for name in libs:
        print(f"failing field reported by {name}: {_error_paths(name)}")
    print()
    _stage_core(rounds, count)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    main(args.rounds, args.count)
