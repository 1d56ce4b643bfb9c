"""Schemas of a spec as self-contained JSON Schema draft 2020-12.

Every ``$ref`` is inlined, so a validator never reads the spec again. A schema that reaches
itself again (a tree, a linked list) cannot be inlined: the schema it recurs through goes to
``$defs`` of the one schema being built, and the recursion is a ``$ref: "#/$defs/<name>"``.

OpenAPI 3.0's schema dialect is translated (3.0.3 §4.7.24): ``nullable: true`` admits null,
boolean ``exclusiveMinimum``/``exclusiveMaximum`` become the numeric keywords of 2020-12, and
``example``, ``xml`` and ``externalDocs`` are dropped. ``discriminator``, ``readOnly`` and
``writeOnly`` are kept as annotations. OpenAPI 3.1 schemas are already 2020-12 and only have
their references rewritten.

References are inlined, so a spec that refers to the same schemas in an exponential pattern
would expand without end: the number of values produced is bounded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from apishield.schema.sources import Document, Documents, Pointer, get

__all__ = ["DIALECT", "SchemaTranslator"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_SCHEMA_VALUES = 1_000_000  # for the whole spec, after inlining
MAX_SCHEMA_DEPTH = 200

_DROPPED_30 = frozenset({"example", "xml", "externalDocs", "nullable"})
_DROPPED_31 = frozenset({"example", "xml", "externalDocs", "$schema"})
# identifiers that would change how references resolve: inlining could not keep their meaning
_UNSUPPORTED = ("$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef")
_ONE = frozenset(
    {"additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames"}
    | {"unevaluatedProperties", "unevaluatedItems", "contentSchema"}
)
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "dependentSchemas")
_COMPOSED = ("allOf", "anyOf", "oneOf", "not", "$ref")
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class SchemaTranslator:
    """Builds the self-contained schemas of one spec; ``dialect`` is ``"3.0"`` or ``"3.1"``."""

    def __init__(self, docs: Documents, dialect: str) -> None:
        self.docs = docs
        self.openapi30 = dialect == "3.0"
        self.values = 0
        # A referenced schema with no recursion in it translates the same wherever it is used:
        # it is built once and shared (consumers copy before changing a schema), with its size,
        # so the bound on values still counts every use.
        self.shared: dict[_Key, tuple[Any, int]] = {}
        self.targets: dict[tuple[Path, str], tuple[Document, Pointer]] = {}

    def schema(self, doc: Document, pointer: Pointer) -> dict[str, Any]:
        """The schema at ``doc#pointer`` as a self-contained 2020-12 schema."""
        build = _Build(self)
        out = build.node(doc, pointer, get(doc.data, pointer), 0)
        if not isinstance(out, dict):
            out = {} if out is True else {"not": {}}
        if build.defs:
            out = {**out, "$defs": {**out.get("$defs", {}), **build.defs}}
        return {"$schema": DIALECT, **out}

    def add(self, doc: Document, pointer: Pointer, count: int) -> None:
        self.values += count
        if self.values > MAX_SCHEMA_VALUES:
            raise doc.error(
                pointer,
                f"the spec's schemas expand to more than {MAX_SCHEMA_VALUES} values once "
                "$ref is inlined (the same schemas are referred to in an exponential pattern)",
            )

    def target(self, doc: Document, pointer: Pointer, ref: object) -> tuple[Document, Pointer]:
        key = (doc.path, ref if isinstance(ref, str) else "")
        found = self.targets.get(key)
        if found is None or not isinstance(ref, str):
            found = self.docs.target(doc, pointer, ref)
            self.targets[key] = found
        return found


_Key = tuple[Path, Pointer]


class _Build:
    def __init__(self, owner: SchemaTranslator) -> None:
        self.owner = owner
        self.stack: set[_Key] = set()
        self.names: dict[_Key, str] = {}
        self.defs: dict[str, Any] = {}
        self.recursions = 0

    def node(self, doc: Document, pointer: Pointer, value: Any, level: int) -> Any:
        self.owner.add(doc, pointer, 1)
        if level > MAX_SCHEMA_DEPTH:
            raise doc.error(pointer, f"a schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
        if isinstance(value, bool):
            if self.owner.openapi30:
                raise doc.error(pointer, "OpenAPI 3.0 schemas are objects, not true or false")
            return value
        if not isinstance(value, dict):
            raise doc.error(pointer, "a schema must be an object")
        for key in _UNSUPPORTED:
            if key in value:
                raise doc.error(
                    (*pointer, key),
                    f"{key} is not supported in schemas: refer to schemas by path with $ref",
                )
        if "$ref" in value:
            return self.ref(doc, pointer, value, level)
        return self.keywords(doc, pointer, value, level)

    def ref(self, doc: Document, pointer: Pointer, value: dict[str, Any], level: int) -> Any:
        target_doc, target = self.owner.target(doc, pointer, value["$ref"])
        key = (target_doc.path, target)
        siblings: dict[str, Any] = {}
        if not self.owner.openapi30:
            # 3.1 (JSON Schema 2020-12 §8.2.3.1): keywords beside $ref apply too.
            rest = {k: v for k, v in value.items() if k != "$ref"}
            if rest:
                siblings = self.keywords(doc, pointer, rest, level, skip_ref=True)
        if key in self.names or key in self.stack:  # recursion, or already moved to $defs
            self.recursions += 1
            name = self.names.get(key) or self.name_for(key)
            return {"$ref": f"#/$defs/{name}", **siblings}
        shared = self.owner.shared.get(key)
        if shared is not None:
            inlined, size = shared
            self.owner.add(doc, pointer, size)
        else:
            before, recursions = self.owner.values, self.recursions
            self.stack.add(key)
            try:
                inlined = self.node(target_doc, target, get(target_doc.data, target), level + 1)
            finally:
                self.stack.discard(key)
            if key in self.names:  # it recurred through itself: keep one copy, in $defs
                self.defs[self.names[key]] = inlined
                self.recursions += 1
                inlined = {"$ref": f"#/$defs/{self.names[key]}"}
            elif self.recursions == recursions:
                self.owner.shared[key] = (inlined, self.owner.values - before)
        if not siblings:
            return inlined
        return {**siblings, "allOf": [*siblings.get("allOf", []), inlined]}

    def name_for(self, key: _Key) -> str:
        base = _NAME.sub("_", key[1][-1] if key[1] else "schema") or "schema"
        name, n = base, 1
        taken = set(self.names.values())
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        self.names[key] = name
        return name

    def keywords(
        self,
        doc: Document,
        pointer: Pointer,
        value: dict[str, Any],
        level: int,
        *,
        skip_ref: bool = False,
    ) -> dict[str, Any]:
        dropped = _DROPPED_30 if self.owner.openapi30 else _DROPPED_31
        out: dict[str, Any] = {}
        for key, item in value.items():
            here = (*pointer, key)
            if key in dropped or key in ("$defs", "definitions") or (skip_ref and key == "$ref"):
                continue  # $defs are reached through $ref, which is inlined
            if key in _ONE and not (key == "additionalProperties" and isinstance(item, bool)):
                out[key] = self.node(doc, here, item, level + 1)
            elif key in _MANY:
                if not isinstance(item, list):
                    raise doc.error(here, f"{key} must be a list of schemas")
                out[key] = [
                    self.node(doc, (*here, str(i)), sub, level + 1) for i, sub in enumerate(item)
                ]
            elif key in _MAP:
                if not isinstance(item, dict):
                    raise doc.error(here, f"{key} must map names to schemas")
                out[key] = {
                    name: self.node(doc, (*here, name), sub, level + 1)
                    for name, sub in item.items()
                }
            else:
                out[key] = item
        if self.owner.openapi30:
            out = self.from_30(doc, pointer, value, out)
        else:
            for key in ("exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(out.get(key), bool):
                    raise doc.error(
                        (*pointer, key),
                        f"in OpenAPI 3.1 {key} is a number (the bound), not true or false",
                    )
        return out

    def from_30(
        self, doc: Document, pointer: Pointer, value: dict[str, Any], out: dict[str, Any]
    ) -> dict[str, Any]:
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            flag = out.pop(key, None)
            if flag is None:
                continue
            if not isinstance(flag, bool):
                raise doc.error((*pointer, key), f"in OpenAPI 3.0 {key} is true or false")
            if flag and bound in out:
                out[key] = out.pop(bound)
        if isinstance(out.get("type"), list):
            raise doc.error((*pointer, "type"), "in OpenAPI 3.0 type is one name, not a list")
        nullable = value.get("nullable", False)
        if not isinstance(nullable, bool):
            raise doc.error((*pointer, "nullable"), "nullable is true or false")
        if not nullable:
            return out
        if any(key in value for key in _COMPOSED):
            return {"anyOf": [{"type": "null"}, out]}
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
