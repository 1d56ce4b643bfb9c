"""SQL injection: breaks out of a string or number into SQL, and prose that only looks like it."""

from __future__ import annotations

import pytest

from apishield.inspect import Inspector
from apishield.inspect.sqli import score_sqli, tokenize

ATTACKS = [
    pytest.param("' or 'x'='x", id="tautology-single-quote"),
    pytest.param('" or "x"="x', id="tautology-double-quote"),
    pytest.param("') or ('x')=('x", id="tautology-parenthesised"),
    pytest.param("admin'--", id="comment-truncation"),
    pytest.param("admin' #", id="hash-comment-truncation"),
    pytest.param("admin'/*", id="block-comment-truncation"),
    pytest.param("1 or 1=1", id="numeric-tautology"),
    pytest.param("1)) or ((1=1", id="numeric-parenthesised"),
    pytest.param("42 UNION ALL SELECT 1,2,3", id="union-numeric"),
    pytest.param("' UNION SELECT username, password FROM users--", id="union-string"),
    pytest.param("x' union/**/select 1,2--", id="union-inline-comment"),
    pytest.param("1 /*!50000UNION*/ /*!50000SELECT*/ 1,2", id="mysql-executable-comment"),
    pytest.param("'; DROP TABLE users;--", id="stacked-drop"),
    pytest.param("1; exec master..xp_cmdshell 'ping 10.0.0.1'--", id="stacked-xp-cmdshell"),
    pytest.param("';waitfor delay '0:0:5'--", id="mssql-time-delay"),
    pytest.param("1 and sleep(5)", id="mysql-sleep"),
    pytest.param("'||pg_sleep(5)--", id="postgres-sleep-concat"),
    pytest.param("+benchmark(3200,SHA1(1))+'", id="benchmark-concat"),
    pytest.param("1 ORDER BY 5--", id="order-by-probe"),
    pytest.param("1 group by userid having 1=1--", id="having"),
    pytest.param("'-'", id="mysql-string-arithmetic-bypass"),
    pytest.param("x' AND email IS NULL; --", id="is-null-stacked"),
    pytest.param("/**/or/**/1/**/=/**/1", id="comments-as-spaces"),
    pytest.param("1 or 'text' = n'text'", id="nchar-literal"),
    pytest.param(
        "declare @s varchar(200) select @s = 0x77616974 exec(@s)", id="mssql-declare-exec"
    ),
    pytest.param("(SELECT * FROM (SELECT(SLEEP(5)))ecMj)", id="subquery-sleep"),
    pytest.param("%27%20or%201%3D1--", id="percent-encoded"),
    pytest.param("%2527%2520or%25201%253D1--", id="double-percent-encoded"),
    pytest.param("&#39; or &#39;1&#39;=&#39;1", id="html-entities"),
    pytest.param("\u2019 or \u20191\u2019=\u20191", id="smart-quotes-best-fit"),
    pytest.param("\\x27 UNION SELECT 1,2", id="backslash-hex-escape"),
    pytest.param("\uff07 or 1=1--", id="fullwidth-apostrophe"),
    pytest.param("admin' or '", id="open-string-closed-by-the-application"),
    pytest.param("' or '' '", id="empty-string-operand"),
    pytest.param('"a"" or 1=1--"', id="doubled-quote-breakout"),
    pytest.param('"hi"") or (""a""=""a"', id="doubled-quote-tautology"),
]

BENIGN = [
    pytest.param("O'Brien", id="irish-name"),
    pytest.param("Conan O'Brien & Andy Richter", id="names-with-ampersand"),
    pytest.param("It's Tom's and Jerry's", id="possessives"),
    pytest.param("Rock 'n' roll never dies", id="quoted-letter"),
    pytest.param("Please select your size and drop me a line", id="prose-select-drop"),
    pytest.param("I tried to drop table reservations for Friday", id="prose-drop-table"),
    pytest.param("The union of both sets is larger", id="prose-union"),
    pytest.param("Group by team and then order by score, thanks!", id="prose-group-order-by"),
    pytest.param("Having trouble logging in; the page says 'invalid token'.", id="prose-having"),
    pytest.param("Where is my order? It's been 5 days", id="prose-where"),
    pytest.param("Is it true or false that returns are free?", id="prose-true-or-false"),
    pytest.param("The students' or teachers' lounge", id="plural-possessive-or"),
    pytest.param("5' or 6'", id="heights"),
    pytest.param('She said "hello" and then "goodbye" -- classic.', id="quotes-and-dash"),
    pytest.param("H<sub>2</sub>O and E=mc<sup>2</sup>", id="formula"),
    pytest.param("2 > 1 and 1 < 2", id="math"),
    pytest.param("Select 3 colours and 2 sizes", id="select-number-prose"),
    pytest.param("Sleep (deep) mask", id="sleep-product"),
    pytest.param("Exec (executive) summary", id="exec-prose"),
    pytest.param("If (you) want, call me", id="if-prose"),
    pytest.param("Tea or coffee -- your choice", id="double-dash-prose"),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
        id="user-agent",
    ),
    pytest.param('"Chromium";v="124", "Not-A.Brand";v="99"', id="sec-ch-ua"),
    pytest.param("john.o'reilly@example.com", id="email-apostrophe"),
    pytest.param("Union Square, San Francisco", id="place-name"),
    pytest.param("'Yes' or 'No'", id="quoted-choices"),
    pytest.param('He said ""hi"" or so', id="doubled-quotes-in-prose"),
    pytest.param("O''Brien or O''Neil", id="doubled-apostrophes"),
]


@pytest.mark.parametrize("value", ATTACKS)
def test_attacks_are_found(inspector: Inspector, value: str) -> None:
    assert "sqli" in [category for category, _ in inspector.score_value(value)]


@pytest.mark.parametrize("value", BENIGN)
def test_near_misses_pass(inspector: Inspector, value: str) -> None:
    assert inspector.score_value(value) == []


def test_quote_then_bareword_is_prose_not_sql() -> None:
    # The rule that keeps names with apostrophes clear: SQL after a break never starts with a
    # bare word, because "'O'Brien'" does not parse.
    assert score_sqli("O'Brien") == 0
    assert score_sqli("O' or 1=1--") >= 70


def test_tokens_of_an_injection() -> None:
    assert [t for t, _ in tokenize("1 union select @@version, sleep(5)--")] == list("nUkv,f(n)C")


def test_escaped_quotes_stay_inside_the_literal() -> None:
    assert score_sqli("it''s fine or is it") == 0
    assert score_sqli("it\\'s fine or 1=1") < 70
