"""The screens are safe: a detector they skip would have scored the value 0.

The engine runs a detector on a value only when ``candidates`` names it, and skips values that
are one plain word. Both shortcuts must never hide a score: checked on every value of the
corpus (attacks and benign traffic, after canonical decoding) and on generated strings mixing
the words and characters the detectors look for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apishield.inspect import InspectionSettings, Inspector, RequestParts
from apishield.inspect.decode import canonical
from apishield.inspect.engine import _RUNNERS, parse_cookies, parse_form
from apishield.inspect.screen import ascii_form, candidates

CORPUS = Path(__file__).parents[2] / "bench" / "corpus" / "corpus.jsonl"
PARANOID = Inspector(InspectionSettings(paranoia=3))


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, child in node.items():
            yield str(key)
            yield from _strings(child)
    elif isinstance(node, list):
        for child in node:
            yield from _strings(child)


def corpus_values() -> list[str]:
    values: set[str] = set()
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for name, value in parse_form(record["query"].encode()):
            values.update((name, value))
        for name, value in record["headers"]:
            if name.lower() == "cookie":
                for cookie_name, cookie in parse_cookies(value):
                    values.update((cookie_name, cookie))
            else:
                values.add(value)
        values.update(_strings(record["json"]))
        values.update(record["path"].split("/"))
    return sorted(values)


def unscreened(value: str) -> list[tuple[str, int]]:
    """(detector, score) for each detector that the screen skips but scores ``value`` above 0."""
    decoded, nul = canonical(value)
    screened = ascii_form(decoded)
    if screened is None:
        return []  # not screened: every detector runs
    allowed = candidates(screened)
    missed = []
    for name, run in _RUNNERS.items():
        if name not in allowed and not (nul and name == "traversal"):
            score = run(decoded, nul)
            if score:
                missed.append((name, score))
    return missed


def test_no_corpus_value_is_screened_out_wrongly() -> None:
    values = corpus_values()
    assert len(values) > 1500
    wrong = {value: missed for value in values if (missed := unscreened(value))}
    assert wrong == {}


def test_the_screens_skip_typical_header_values() -> None:
    user_agent = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
    )
    assert candidates(user_agent) == []
    assert candidates("application/json, text/plain, */*") == []
    assert candidates("en-US,en;q=0.9,de-CH;q=0.8") == ["xss"]  # "=": a handler's sign
    assert candidates("gzip, deflate, br") == []
    assert "sqli" in candidates("1 union select 1,2")
    assert "cmdi" in candidates("x; cat /etc/passwd")
    assert "traversal" in candidates("..%2f..%2fetc/passwd")


WORDS = [
    "or", "and", "union", "select", "order", "by", "sleep", "xp_cmdshell", "exec", "declare",
    "waitfor", "delay", "where", "having", "limit", "into", "outfile", "cat", "ls", "id",
    "whoami", "bash", "sh", "nc", "cmd", "bin", "usr", "etc", "passwd", "windows", "win",
    "ini", "system32", "proc", "self", "environ", "boot", "web", "config", "inf", "meta",
    "git", "env", "htaccess", "id_rsa", "javascript", "script", "data", "text", "html",
    "expression", "moz", "binding", "behavior", "url", "onerror", "alert", "this", "db",
    "return", "function", "while", "var", "it", "true", "null", "1", "0", "x", "php",
    "system", "eval", "IFS", "ping", "type", "net", "user", "python3", "powershell",
]
CHARS = list(" \t\n'\"`;|&$(){}[]<>=!#*/\\.,:-+@%_?~^")
# Plain letters the screens read as separators, and letters whose case mappings reach ASCII.
LETTERS = list("üéÉłŁжЖΩωçñØ") + list("İıßſK")


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(WORDS) | st.sampled_from(CHARS), min_size=1, max_size=14))
def test_generated_values_are_never_screened_out_wrongly(pieces: list[str]) -> None:
    value = "".join(pieces)
    assert unscreened(value) == []


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.sampled_from(WORDS) | st.sampled_from(CHARS) | st.sampled_from(LETTERS),
        min_size=1,
        max_size=14,
    )
)
def test_generated_values_with_letters_are_never_screened_out_wrongly(pieces: list[str]) -> None:
    value = "".join(pieces)
    assert unscreened(value) == []


@pytest.mark.parametrize("letter", ["İ", "ı", "ß", "ſ", "µ", "²", "\u2028", "\u0301"])
def test_letters_with_ascii_case_mappings_and_other_characters_are_not_screened(
    letter: str,
) -> None:
    assert ascii_form(f"Zürich {letter}") is None


def test_plain_letters_are_screened_as_separators() -> None:
    assert ascii_form("Zürich") == "Z rich"
    assert ascii_form("Łódź ЖΩ") == "  d    "
    assert candidates(ascii_form("Zürich") or "") == []
    assert "sqli" in candidates(ascii_form("Müller' OR 'a'='a") or "")


@settings(max_examples=3000, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_]*", fullmatch=True))
def test_one_plain_word_gets_no_score(value: str) -> None:
    assert all(run(value, False) == 0 for run in _RUNNERS.values())


@pytest.mark.slow
@pytest.mark.timeout(60)
@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.sampled_from(WORDS) | st.sampled_from(CHARS), min_size=1, max_size=30),
    st.integers(1000, 5000),
)
def test_screens_stay_linear_on_long_values(pieces: list[str], repeat: int) -> None:
    # Each screen is a fixed number of C-level passes over the value; a super-linear step at
    # this size would take minutes, which the timeout turns into a failure.
    value = " ".join(pieces) * repeat
    candidates(value.encode("ascii", "replace").decode("ascii"))
    PARANOID.inspect(RequestParts(json={"v": value}), first_only=False)
