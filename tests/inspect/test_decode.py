"""Canonical decoding: every encoding a later decoder might undo, bounded and linear."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apishield.inspect.decode import MAX_ROUNDS, canonical, decode_utf8, percent_decode

CASES = [
    pytest.param("%27", "'", id="percent"),
    pytest.param("%2527", "'", id="double-percent"),
    pytest.param("%252527", "'", id="triple-percent"),
    pytest.param("%%32%65", ".", id="percent-of-percent-digits"),
    pytest.param("%u0027", "'", id="iis-u-escape"),
    pytest.param("%c0%ae%c0%af", "./", id="overlong-two-bytes"),
    pytest.param("%e0%80%ae", ".", id="overlong-three-bytes"),
    pytest.param("&lt;script&gt;", "<script>", id="named-entities"),
    pytest.param("&#x3c;&#60;", "<<", id="numeric-entities"),
    pytest.param("%26lt%3B", "<", id="entity-inside-percent"),
    pytest.param("\\x3cb\\u003e", "<b>", id="backslash-escapes"),
    pytest.param("\uff1cscript\uff1e", "<script>", id="fullwidth"),
    pytest.param("\u2018quoted\u2019", "'quoted'", id="smart-quotes"),
    pytest.param("100%", "100%", id="lone-percent"),
    pytest.param("%zz", "%zz", id="invalid-escape"),
    pytest.param("caf\u00e9", "caf\u00e9", id="non-ascii-kept"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_canonical(raw: str, expected: str) -> None:
    assert canonical(raw)[0] == expected


def test_plus_is_a_space_only_in_form_encoding() -> None:
    assert canonical("a+b", plus=True)[0] == "a b"
    assert canonical("a+b")[0] == "a+b"
    assert canonical("a%2Bb", plus=True)[0] == "a+b"


def test_nul_bytes_are_removed_and_reported() -> None:
    assert canonical("passwd%00.png") == ("passwd.png", True)
    assert canonical("passwd.png") == ("passwd.png", False)


def test_decoding_rounds_are_bounded() -> None:
    value = "'"
    for _ in range(MAX_ROUNDS + 1):
        value = value.replace("%", "%25") if "%" in value else "%27"
    assert canonical(value)[0] != "'"  # one level deeper than any real decoder stack


def test_invalid_utf8_falls_back_to_latin1() -> None:
    assert decode_utf8(b"\xff\xfe") == "\xff\xfe"
    assert percent_decode(b"%41%4") == b"A%4"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_canonical_never_fails_and_is_stable(value: str) -> None:
    once, _ = canonical(value)
    assert isinstance(once, str)
    assert "\x00" not in once


def test_huge_character_references_do_not_reach_int() -> None:
    # int() refuses strings over 4300 digits; a crafted reference must not turn into an error
    # or keep the rest of the value from being decoded.
    value, _ = canonical("&#" + "9" * 5000 + ";&#60;script&#62;")
    assert value == "\ufffd<script>"


def test_what_follows_an_ampersand_that_is_never_a_reference() -> None:
    # The engine skips decoding a value whose only "&" are followed by one of these.
    import html

    from apishield.inspect.decode import NOT_A_REFERENCE

    assert html.unescape("a&") == "a&"  # "" : the value ends there
    for follower in NOT_A_REFERENCE - {""}:
        for rest in ("amp;", "lt;", "#39;", ""):
            text = "a&" + follower + rest
            if follower == "&":  # the first "&" stays; the second is looked at on its own
                assert html.unescape(text).startswith("a&")
            else:
                assert html.unescape(text) == text
    # "#" and a letter start one, and html's pattern admits "\r": those values are decoded.
    assert html.unescape("a&#39;") == "a'" and html.unescape("a&amp;") == "a&"
    assert NOT_A_REFERENCE.isdisjoint({"#", "a", "\r"})
