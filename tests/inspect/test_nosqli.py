"""NoSQL operator injection: operator keys and $where breakouts, and legitimate dollar keys."""

from __future__ import annotations

import pytest

from apishield.inspect import Inspector, RequestParts
from apishield.inspect.nosqli import score_nosqli_key

ATTACK_BODIES = [
    pytest.param({"username": {"$ne": None}, "password": {"$ne": None}}, id="ne-null"),
    pytest.param({"username": "admin", "password": {"$regex": "^a"}}, id="regex"),
    pytest.param({"filter": {"$where": "sleep(5000) || true"}}, id="where"),
    pytest.param({"$or": [{"a": 1}, {"b": {"$exists": True}}]}, id="or-exists"),
    pytest.param({"q": {"$function": {"body": "function(){return 1}"}}}, id="function"),
    pytest.param({"items": [{"price": {"$lt": 0}}]}, id="nested-in-array"),
]
ATTACK_QUERIES = [
    pytest.param(b"username[$ne]=x&password[$ne]=x", id="bracket-ne"),
    pytest.param(b"password[%24regex]=.%7B1%7D", id="bracket-encoded"),
    pytest.param(b"user[$in][]=admin&user[$in][]=root", id="bracket-in-array"),
]
ATTACK_STRINGS = [
    pytest.param("', $where: '1 == 1'", id="where-in-string"),
    pytest.param("{ $ne: 1 }", id="operator-in-string"),
    pytest.param("' && this.password.match(/.*/)//", id="this-match"),
    pytest.param("';sleep(5000);'", id="js-sleep"),
    pytest.param("' || 'a'=='a", id="js-tautology"),
    pytest.param("db.injection.insert({success:1});", id="mongo-shell"),
]
BENIGN_BODIES = [
    pytest.param(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x"}, id="schema"
    ),
    pytest.param({"a": {"$ref": "#/definitions/b"}}, id="json-reference"),
    pytest.param({"price": "$19.99", "note": "was $25 or less"}, id="dollar-amounts"),
    pytest.param(
        {"hash": "$2b$12$KIXQJj8Ys0VqfhvL4kYBueWqzZ5u1Zp1a4v0pZ3rQWJ0v9Vq5v6aK"}, id="bcrypt"
    ),
    pytest.param({"text": "Use $HOME and ${PATH}; then && run || stop"}, id="shell-vars-prose"),
]


@pytest.mark.parametrize("body", ATTACK_BODIES)
def test_operator_keys_in_json(inspector: Inspector, body: object) -> None:
    findings = inspector.inspect(RequestParts(json=body))
    assert [f.category for f in findings] == ["nosqli"]
    assert findings[0].location == "body"


@pytest.mark.parametrize("query", ATTACK_QUERIES)
def test_operator_brackets_in_query_names(inspector: Inspector, query: bytes) -> None:
    findings = inspector.inspect(RequestParts(query=query))
    assert findings and findings[0].category == "nosqli"


@pytest.mark.parametrize("value", ATTACK_STRINGS)
def test_operator_and_js_strings(inspector: Inspector, value: str) -> None:
    assert "nosqli" in [c for c, _ in inspector.score_value(value)]


@pytest.mark.parametrize("body", BENIGN_BODIES)
def test_legitimate_dollar_keys_pass(inspector: Inspector, body: object) -> None:
    assert inspector.inspect(RequestParts(json=body)) == []


def test_unknown_dollar_key_is_weak_evidence() -> None:
    assert 0 < score_nosqli_key("$custom") < 70
    assert score_nosqli_key("$where") > score_nosqli_key("$ne") >= 70
