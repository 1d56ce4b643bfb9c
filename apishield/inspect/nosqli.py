"""NoSQL operator injection: query operators where the application expects plain data.

MongoDB-style stores take queries as documents, so a client that can send ``{"$ne": null}``
where a string was expected turns ``find({user: input})`` into "any user"; ``$where`` and
``$function`` go further and run JavaScript on the server. The same objects arrive through
query strings that frameworks parse into nested objects (``user[$ne]=x``, the ``qs`` and PHP
conventions), and as text spliced into a ``$where`` expression (``' || '1'=='1``).

References: OWASP WSTG-INPV-05.6 *Testing for NoSQL Injection*, CWE-943 *Improper
Neutralization of Special Elements in Data Query Logic*.

Trust assumption: keys and values are attacker-controlled. The patterns are linear (no nested
quantifiers); keys are looked up in a set.
"""

from __future__ import annotations

import re

__all__ = ["JS_HINTS", "score_nosqli", "score_nosqli_key"]

# Operators that change what a query matches or run code. Keys such as "$ref", "$schema" and
# "$id" (JSON Schema, JSON Reference) are ordinary data and stay out of this list.
_OPERATORS = frozenset(
    {
        "ne",
        "eq",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "nin",
        "regex",
        "options",
        "exists",
        "type",
        "mod",
        "all",
        "size",
        "elemmatch",
        "or",
        "and",
        "nor",
        "not",
        "text",
        "search",
        "jsonschema",
        "expr",
        "where",
        "function",
        "accumulator",
        "lookup",
        "merge",
        "out",
        "set",
        "unset",
        "inc",
        "push",
        "rename",
    }
)
_CODE_OPERATORS = frozenset({"where", "function", "accumulator", "expr"})
_BENIGN_DOLLAR_KEYS = frozenset({"ref", "schema", "id", "defs", "comment", "anchor", "vocabulary"})
_BRACKET = re.compile(r"\[\s*\$(\w+)\s*\]")
# An operator written inside a string: "{ $ne: 1 }", "$where: '1'", '{"$gt": ""}', "[$ne]=1".
_INLINE_OPERATOR = re.compile(
    r"\$(ne|eq|gt|gte|lt|lte|in|nin|regex|where|exists|or|and|nor|not|expr|function"
    r"|accumulator|elemmatch|all|size|type|mod|text)[\"']?\s*(?::|\]\s*=)",
    re.I,
)
# Breaking out of a string inside server-side JavaScript ($where, mapReduce).
_JS_BREAKOUT = re.compile(
    r"(?:^|[\"'\d)])\s*(?:;|\|\||&&)\s*(?:return\b|this\.|sleep\s*\(|while\s*\(|do\s*\{"
    r"|function\s*\(|db\.|var\s|let\s|const\s|it\s*=|\w+\s*===?|[\"'][^\"']*[\"']\s*===?)",
    re.I,
)
#: Words one of which a JavaScript breakout needs after its separator (the screens read them).
JS_HINTS = (
    "return",
    "this.",
    "sleep",
    "while",
    "function",
    "db.",
    "var ",
    "let ",
    "const ",
    "do{",
    "do {",
    "it=",
    "it =",
)
_MONGO_SHELL = re.compile(
    r"\bdb\.\w+\.(?:insert|find|update|remove|drop|mapreduce|aggregate|delete)\w*\s*\(", re.I
)
_THIS_MATCH = re.compile(r"\bthis\.\w+\.(?:match|length|indexof|startswith)\b", re.I)


def score_nosqli_key(key: str) -> int:
    """Score of an object key or a query-parameter name (``$ne``, ``user[$regex]``)."""
    if "$" not in key:
        return 0
    names: list[str] = []
    if key.startswith("$"):
        names.append(key[1:])
    names.extend(m.group(1) for m in _BRACKET.finditer(key))
    best = 0
    for name in names:
        lowered = name.lower()
        if lowered in _CODE_OPERATORS:
            return 95
        if lowered in _OPERATORS:
            best = max(best, 90)
        elif lowered not in _BENIGN_DOLLAR_KEYS:
            best = max(best, 40)
    return best


def score_nosqli(value: str) -> int:
    """Score of a string value that may be spliced into a NoSQL query or ``$where`` code."""
    best = 0
    if "$" in value:
        if _INLINE_OPERATOR.search(value):
            best = 85
        elif "[" in value:
            best = score_nosqli_key(value)
    if best >= 85:
        return best
    low = value.lower()
    if ("==" in value or any(hint in low for hint in JS_HINTS)) and _JS_BREAKOUT.search(value):
        best = max(best, 80)
    if ("db." in low or "this." in low) and (
        _MONGO_SHELL.search(value) or _THIS_MATCH.search(value)
    ):
        best = max(best, 85)
    return best
