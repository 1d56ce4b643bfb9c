"""The ``limits:`` section: secure defaults, the short list form, and located, useful errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from apishield.policy.load import _data_loc, _message, field_name
from apishield.ratelimit.settings import LimitSettings


def test_defaults_limit_anonymous_callers_principals_and_auth_endpoints() -> None:
    rules = {r.label: r for r in LimitSettings().all_rules()}
    assert set(rules) == {"ip", "principal", "oauth-token", "login"}
    assert rules["ip"].when == "anonymous" and str(rules["ip"].rate) == "300/minute"
    assert str(rules["principal"].rate) == "1200/minute" and rules["principal"].burst == 200
    assert rules["oauth-token"].routes == ["/oauth2/token"]
    assert rules["login"].methods == ["POST"] and rules["login"].burst == 5


def test_a_list_is_the_rules() -> None:
    settings = LimitSettings.model_validate([{"key": ["route", "principal"], "rate": "5/second"}])
    assert settings.rules[0].key == ("principal", "route")
    assert settings.headers == "always" and settings.auth_endpoints


def test_rules_given_replace_the_defaults_but_not_the_auth_endpoints() -> None:
    settings = LimitSettings.model_validate({"rules": [{"key": "ip", "rate": "5/second"}]})
    assert [r.label for r in settings.all_rules()] == ["ip", "oauth-token", "login"]
    bare = LimitSettings.model_validate({"rules": [], "auth_endpoints": False})
    assert bare.all_rules() == []


@pytest.mark.parametrize(
    ("value", "headers"),
    [(True, "always"), (False, "off"), ("refusals", "refusals")],
)
def test_yaml_booleans_for_headers(value: object, headers: str) -> None:
    assert LimitSettings.model_validate({"headers": value}).headers == headers


BAD = [
    pytest.param(
        {"rate": "100/minit"}, ("rules", 0, "rate"), "unknown unit 'minit'", id="rate-typo"
    ),
    pytest.param({}, ("rules", 0), "at least one of 'rate', 'quota'", id="nothing-to-count"),
    pytest.param(
        {"rate": "5/second", "burst": 3, "algorithm": "sliding_window"},
        ("rules", 0),
        "'burst' needs a 'rate' with algorithm gcra",
        id="burst-sliding",
    ),
    pytest.param(
        {"key": "principal", "rate": "5/second", "when": "anonymous"},
        ("rules", 0),
        "anonymous requests have no principal",
        id="anonymous-principal",
    ),
    pytest.param(
        {"concurrency": 3, "when": "anonymous"},
        ("rules", 0),
        "'concurrency' cannot apply to anonymous callers only",
        id="anonymous-concurrency",
    ),
    pytest.param({"key": "user", "rate": "5/second"}, ("rules", 0, "key"), "", id="unknown-key"),
    pytest.param({"key": [], "rate": "5/second"}, ("rules", 0, "key"), "at least one", id="no-key"),
    pytest.param(
        {"key": ["ip", "ip"], "rate": "5/second"}, ("rules", 0, "key"), "twice", id="key-twice"
    ),
    pytest.param(
        {"rate": "5/second", "routes": ["v1/items"]},
        ("rules", 0, "routes"),
        "must start with '/'",
        id="route-path",
    ),
    pytest.param(
        {"rate": "5/second", "methods": ["FETCH"]},
        ("rules", 0, "methods"),
        "not an HTTP method",
        id="method",
    ),
    pytest.param(
        {"rate": "5/second", "name": "Has Spaces"}, ("rules", 0, "name"), "lower-case", id="name"
    ),
    pytest.param({"rate": "5/second", "burst": 0}, ("rules", 0, "burst"), "", id="burst-zero"),
    pytest.param({"rate": "5/second", "limit": 3}, ("rules", 0, "limit"), "unknown", id="typo"),
]


@pytest.mark.parametrize(("rule", "where", "says"), BAD)
def test_bad_rules_are_located_and_explained(
    rule: dict[str, Any], where: tuple[object, ...], says: str
) -> None:
    data = {"rules": [{"key": "ip", **rule}]}
    with pytest.raises(ValidationError) as info:
        LimitSettings.model_validate(data)
    errors = info.value.errors(include_url=False)
    # What `apishield check` prints: the field path the loader derives, and the message.
    located = {field_name(_data_loc(tuple(e["loc"]), data)): _message(e) for e in errors}
    assert field_name(where) in located, located
    assert says in located[field_name(where)]


def test_rule_names_are_unique() -> None:
    rules = [{"name": "a", "key": "ip", "rate": "1/second"}] * 2
    with pytest.raises(ValidationError, match="the rule name 'a' is used twice"):
        LimitSettings.model_validate({"rules": rules})


def test_the_section_has_a_json_schema() -> None:
    rule = LimitSettings.model_json_schema()["$defs"]["LimitRule"]["properties"]
    pattern = rule["rate"]["anyOf"][0]["pattern"]
    for rate in ("100/minute", "5/10s", "30/M"):
        assert re.match(pattern, rate), rate
    assert not re.match(pattern, "100 per minute")
    key_forms = rule["key"]["anyOf"]
    assert {"enum": ["principal", "ip", "route"], "type": "string"} in key_forms
