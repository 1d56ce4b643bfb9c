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

from apishield.inspect import InspectionSettings, Inspector, RequestParts, screen
from apishield.inspect.decode import canonical
from apishield.inspect.engine import _RUNNERS, parse_cookies, parse_form
from apishield.inspect.screen import ascii_form, candidates, request_screen

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
    assert candidates("en-US,en;q=0.9,de-CH;q=0.8") == []  # "=" but no "on" of a handler
    assert candidates("https://app.example.com/orders?status=open&page=2") == []
    assert candidates("Anna O'Neil") == []  # a quote before a plain word: prose
    assert candidates("Please gift-wrap the socks & cap, it's a present! :)") == []
    assert candidates("gzip, deflate, br") == []
    assert "sqli" in candidates("1 union select 1,2")
    assert "cmdi" in candidates("x; cat /etc/passwd")
    assert "traversal" in candidates("..%2f..%2fetc/passwd")


WORDS = [
    "or",
    "and",
    "union",
    "select",
    "order",
    "by",
    "sleep",
    "xp_cmdshell",
    "exec",
    "declare",
    "waitfor",
    "delay",
    "where",
    "having",
    "limit",
    "into",
    "outfile",
    "cat",
    "ls",
    "id",
    "whoami",
    "bash",
    "sh",
    "nc",
    "cmd",
    "bin",
    "usr",
    "etc",
    "passwd",
    "windows",
    "win",
    "ini",
    "system32",
    "proc",
    "self",
    "environ",
    "boot",
    "web",
    "config",
    "inf",
    "meta",
    "git",
    "env",
    "htaccess",
    "id_rsa",
    "javascript",
    "script",
    "data",
    "text",
    "html",
    "expression",
    "moz",
    "binding",
    "behavior",
    "url",
    "onerror",
    "alert",
    "this",
    "db",
    "return",
    "function",
    "while",
    "var",
    "it",
    "true",
    "null",
    "1",
    "0",
    "x",
    "php",
    "system",
    "eval",
    "IFS",
    "ping",
    "type",
    "net",
    "user",
    "python3",
    "powershell",
    "prompt",
    "document",
    "window",
    "top",
    "location",
    "import",
    "fetch",
    "like",
    "is",
    "in",
    "not",
    "between",
    "div",
    "mod",
    "false",
    "table",
    "from",
    "case",
    "if",
    "set",
    "all",
    "n",
    "e",
    "b",
    "file",
    "zip",
    "glob",
    "gopher",
    "s",
    "neil",
    "a.b",
    "@v",
    "$v",
    "do",
    "let",
    "const",
    "1e5",
    "0x1f",
    "base64",
    "-moz-binding",
    "url",
    "text/html",
]
CHARS = list(" \t\n\r\x0b\x0c\x1c'\"`;|&$(){}[]<>=!#*/\\.,:-+@%_?~^\x01")
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
    assert ascii_form("Zürich") == "Z\x01rich"
    assert ascii_form("Łódź ЖΩ") == "\x01\x01d\x01 \x01\x01"
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


# What may follow a quote: the SQL screen reads a quote's follower (test_screen's SQL cases).
FOLLOWERS = [
    *" )(,'\"`.:;!=-#/*<>|&^~+%?[]{}\\@$_\t\x0b\x1c\x01",
    "1",
    "e",
    "n",
    "x",
    "b",
    "or",
    "and",
    "like",
    "null",
    "true",
    "union",
    "select",
    "sleep",
    "s",
    "neil",
    "abc",
    "a.b",
    "@v",
    "$v",
    "ü",
    "İ",
    "::",
    ":=",
    "--",
    "/*",
    "order by",
]


@settings(max_examples=5000, deadline=None)
@given(st.lists(st.sampled_from(FOLLOWERS), min_size=0, max_size=7), st.sampled_from("'\""))
def test_what_follows_a_quote_is_screened_soundly(pieces: list[str], quote: str) -> None:
    for value in (quote + "".join(pieces), "x" + quote + "".join(pieces)):
        assert unscreened(value) == []


def test_quotes_in_prose_and_sql_after_a_quote() -> None:
    for prose in ("Anna O'Neil", "it's a birthday present", 'a "quoted" word', "Rock 'n' roll"):
        assert "sqli" not in candidates(prose), prose
    for risky in (
        "x' or '1'='1",
        "admin'--",
        "x'; drop table t",
        "a')))b",
        "x'",
        "it''s",
        "x' sleep(5)",
        "x'\tor 1",
        "x' union select",
        "x'::text",
    ):
        assert "sqli" in candidates(risky), risky


@pytest.mark.parametrize(
    "value",
    [
        "1;let\tx submit=1",  # "it=" only inside a word, "let" before a tab
        "1;var\tx athis.y",
        "1; it  = 2 awhile",
        "1;const\nx=mydb.y",
        "x';var\tq=1 returned",
    ],
)
def test_javascript_after_a_separator_is_screened_whatever_the_spacing(value: str) -> None:
    assert unscreened(value) == []
    assert "nosqli" in candidates(value)


def test_xss_screens_need_what_the_detector_needs() -> None:
    assert candidates("a = b") == []  # "=" without "on": no handler
    assert "xss" in candidates("x onerror=alert(1)")
    assert candidates("'quoted' words") == []  # a quote, but no sink to call
    assert "xss" in candidates("'-alert(1)-'")
    assert "xss" in candidates("javascr\tipt:alert(1)")  # browsers drop the tab


def forms_of(values: list[str]) -> list[str] | None:
    forms = []
    for value in values:
        form = ascii_form(canonical(value)[0])
        if form is None:
            return None
        forms.append(form)
    return forms


def check_request_screen(values: list[str]) -> None:
    """Every value the request screen leaves out has no candidate detector of its own."""
    forms = forms_of(values)
    if forms is None:
        return
    picked = set(request_screen(forms))
    missed = [value for i, value in enumerate(values) if i not in picked and candidates(forms[i])]
    assert missed == []


CORPUS_VALUES = corpus_values()


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(CORPUS_VALUES), min_size=1, max_size=40))
def test_the_request_screen_leaves_out_no_corpus_value_that_needs_a_look(
    values: list[str],
) -> None:
    check_request_screen(values)


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(WORDS) | st.sampled_from(CHARS), min_size=0, max_size=6).map(
            "".join
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_request_screen_leaves_out_no_generated_value_that_needs_a_look(
    values: list[str],
) -> None:
    check_request_screen(values)


def test_the_request_screen_picks_only_what_needs_a_look() -> None:
    values = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "gzip, deflate, br",
        "en-US,en;q=0.9",
        "https://app.example.com/orders?status=open&page=2",
        "Please gift-wrap the socks & cap, it's a present",
        "x; cat /etc/passwd",
        "Anna O'Neil",
    ]
    # "gzip" is a command and ";" a separator, but never in the same value; "=" and "on"
    # likewise: only the attack is picked.
    assert request_screen(values) == [5]
    assert request_screen(values[:5]) == []


# A letter whose case mapping reaches ASCII ("ı" upper-cases to "I"): a case-blind pattern
# reads "javascrıpt:" as "javascript:", so such letters must never be screened as plain.
FOLDS = {"ı": "i", "İ": "i", "ſ": "s", "K": "k"}
MANGLED = st.builds(
    lambda word, letter: (
        word.replace(FOLDS[letter], letter) if letter in FOLDS else word[:1] + letter + word[2:]
    ),
    st.sampled_from(WORDS),
    st.sampled_from(LETTERS),
)
WITH_LETTERS = st.lists(
    MANGLED | st.sampled_from(WORDS) | st.sampled_from(CHARS), min_size=1, max_size=8
)


@settings(max_examples=3000, deadline=None)
@given(WITH_LETTERS)
def test_words_with_non_ascii_letters_are_screened_soundly(pieces: list[str]) -> None:
    assert unscreened("".join(pieces)) == []


def mangled_corpus_values() -> list[str]:
    """Corpus values with each i, s, k and e written with a non-ASCII letter: dotless and
    dotted I (which case-blind patterns read as i), and plain letters."""
    values = []
    for value in CORPUS_VALUES:
        for ascii_letter, letter in (("i", "ı"), ("i", "İ"), ("e", "é"), ("s", "ш")):
            if ascii_letter in value:
                values.append(value.replace(ascii_letter, letter))
    return values


def test_corpus_values_with_non_ascii_letters_are_screened_soundly() -> None:
    values = mangled_corpus_values()
    assert len(values) > 2000
    wrong = {value: missed for value in values if (missed := unscreened(value))}
    assert wrong == {}


def test_the_letter_tests_find_an_unsound_letter_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests above must be able to fail: with "ı", "İ", "ſ" and "K" read as plain letters
    # (their case mappings reach ASCII), they find values that a detector scores and the
    # screens pass by ("'-confİrm(1)": a case-blind pattern reads confirm).
    unsound = dict(screen._LETTERS_TO_MARK)
    unsound.update({ord(c): "\x01" for c in "ıİſK"})
    monkeypatch.setattr(screen, "_LETTERS_TO_MARK", unsound)
    assert [value for value in mangled_corpus_values() if unscreened(value)] != []
