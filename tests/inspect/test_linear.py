"""No input makes inspection super-linear.

Each case below is a long string built to hurt a particular kind of code: many quotes for the
SQL quote contexts, unclosed tags and handlers for XSS, separators for command segments,
template openers, nested percent-encoding, traversal segments. At 100,000 characters a
quadratic step would take minutes, so the timeout (far above what a linear pass needs) is what
fails; nothing here measures time. The hypothesis test mixes the same fragments at random.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apishield.inspect import InspectionSettings, Inspector, RequestParts

SIZE = 100_000
FRAGMENTS = [
    "'",
    '"',
    "`",
    "' or ",
    "1=1",
    "--",
    "/*",
    "*/",
    "/*!",
    "(",
    ")",
    ";",
    "|",
    "&&",
    "$(",
    "<",
    "<a ",
    " onx=",
    "javascript:",
    "{{",
    "${",
    "<%",
    "../",
    "..\\",
    "%25",
    "%c0%ae",
    "&#",
    "\\x27",
    "union ",
    "select ",
    "sleep(",
    " ",
    "a",
    "0",
    "\n",
    "[$ne]",
    "$where:",
]
WORST = [
    pytest.param(fragment * (SIZE // len(fragment)), id=repr(fragment)) for fragment in FRAGMENTS
]
WORST += [
    pytest.param("a" * SIZE + "'", id="long-word-then-quote"),
    pytest.param("' " + "x" * SIZE, id="quote-then-long-word"),
    pytest.param("<a" + " b" * (SIZE // 2), id="tag-with-many-attributes"),
    pytest.param("'" + "''" * (SIZE // 2), id="escaped-quotes"),
    pytest.param(";" + " " * SIZE + "id", id="separator-far-from-command"),
    pytest.param(";ls " + "1" * SIZE, id="command-with-long-number"),
    pytest.param("<" + " " * SIZE, id="tag-opener-then-spaces"),
    pytest.param("'" + " " * SIZE + "x", id="quote-then-spaces"),
    pytest.param(")" * (SIZE // 2) + " or 1=1" * 1000, id="parentheses-then-logic"),
    pytest.param("&#" + "1" * SIZE + ";", id="huge-character-reference"),
]
PARANOID = Inspector(InspectionSettings(paranoia=3))


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", WORST)
def test_worst_cases_stay_linear(value: str) -> None:
    PARANOID.score_value(value)
    PARANOID.inspect(RequestParts(json={"v": value}), first_only=False)


@pytest.mark.slow
@pytest.mark.timeout(120)
@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=40), st.integers(500, 3000))
def test_random_mixes_stay_linear(pieces: list[str], repeat: int) -> None:
    value = "".join(pieces) * repeat
    PARANOID.score_value(value)
    PARANOID.score_value(value, plus=True)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "document",
    [
        pytest.param(["x'"] * 50_000, id="list-of-picked-values"),
        pytest.param({f"k{i}": "<b>" for i in range(50_000)}, id="object-of-picked-values"),
        pytest.param({f"k'{i}": 1 for i in range(50_000)}, id="object-of-picked-keys"),
    ],
)
def test_a_body_of_many_values_a_screen_picks_stays_linear(document: object) -> None:
    # Each picked value needs its field; finding them one at a time walked the container
    # again for each (50,000 values: about half an hour). The timeout turns that into a failure.
    assert PARANOID.inspect(RequestParts(json=document), first_only=False) == []
