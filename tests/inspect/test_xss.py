"""Cross-site scripting in HTML, attribute and JavaScript contexts, and markup that is fine."""

from __future__ import annotations

import pytest

from apishield.inspect import Inspector

ATTACKS = [
    pytest.param("<script>alert(1)</script>", id="script-tag"),
    pytest.param("<ScRiPt src=//evil.example/x.js>", id="script-src-mixed-case"),
    pytest.param("<img src=x onerror=alert(1)>", id="img-onerror"),
    pytest.param("<svg/onload=alert(1)>", id="slash-separated-handler"),
    pytest.param("<img/src='x'onerror=alert(1)>", id="quote-separated-handler"),
    pytest.param('"><svg onload=alert(1)//', id="attribute-breakout-tag"),
    pytest.param('" autofocus onfocus=alert(1) x="', id="attribute-breakout-handler"),
    pytest.param("javascript:alert(document.cookie)", id="javascript-url"),
    pytest.param("javascr\tipt:alert(1)", id="javascript-url-split-by-a-tab"),
    pytest.param("java\nscript:alert(1)", id="javascript-url-split-by-a-newline"),
    pytest.param("java\tscript:alert(1)", id="javascript-url-with-tab"),
    pytest.param("&#106;avascript&colon;alert(1)", id="javascript-url-entities"),
    pytest.param('<a href="vbscript:msgbox(1)">x</a>', id="vbscript-url"),
    pytest.param("<iframe src=https://evil.example>", id="iframe"),
    pytest.param("<base href=//evil.example/>", id="base-tag"),
    pytest.param("'-alert(1)-'", id="js-string-breakout"),
    pytest.param('";alert(String.fromCharCode(88,83,83))//', id="js-string-fromcharcode"),
    pytest.param("%3Cscript%3Ealert(1)%3C%2Fscript%3E", id="percent-encoded"),
    pytest.param("%253Cscript%253E", id="double-percent-encoded"),
    pytest.param("\uff1cscript\uff1ealert(1)", id="fullwidth-brackets"),
    pytest.param("<x onxxx=1", id="unknown-tag-and-handler"),
    pytest.param("<iframe srcdoc=<svg/o&#x6Eload&equals;alert&lpar;1)&gt;>", id="srcdoc-entities"),
]
BENIGN = [
    pytest.param("**Bold** and <b>HTML</b> tags", id="formatting-tags"),
    pytest.param('See <a href="https://docs.example.com/guide">the guide</a>', id="https-link"),
    pytest.param(
        '<img src="https://cdn.example.com/p/42.jpg" alt="Red shoe">', id="img-no-handler"
    ),
    pytest.param("x < y && y > z", id="comparisons"),
    pytest.param("I <3 this product", id="heart"),
    pytest.param("Javascript: The Good Parts", id="book-title"),
    pytest.param("Set the onclick handler in your template", id="prose-onclick"),
    pytest.param("List<String> names = new ArrayList<>();", id="generics"),
    pytest.param("<details><summary>Specs</summary>2kg</details>", id="details"),
    pytest.param('<p style="color: red">Sale!</p>', id="inline-style"),
]


@pytest.mark.parametrize("value", ATTACKS)
def test_attacks_are_found(inspector: Inspector, value: str) -> None:
    assert "xss" in [c for c, _ in inspector.score_value(value)]


@pytest.mark.parametrize("value", BENIGN)
def test_near_misses_pass(inspector: Inspector, value: str) -> None:
    assert inspector.score_value(value) == []
