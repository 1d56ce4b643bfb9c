from __future__ import annotations

import pytest

from apishield.ratelimit.rates import Rate, parse_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("100/minute", Rate(100, 60), id="minute"),
        pytest.param("20/second", Rate(20, 1), id="second"),
        pytest.param("10000/day", Rate(10000, 86_400), id="day"),
        pytest.param("5/10s", Rate(5, 10), id="multiplier"),
        pytest.param("1 / 2 hours", Rate(1, 7200), id="spaces-plural"),
        pytest.param("30/M", Rate(30, 60), id="case"),
        pytest.param("7/366d", Rate(7, 366 * 86_400), id="longest"),
    ],
)
def test_rates_parse(text: str, expected: Rate) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        pytest.param("100/minit", "unknown unit 'minit'", id="typo-unit"),
        pytest.param("0/minute", "at least 1", id="zero-count"),
        pytest.param("-5/minute", "is not a rate", id="negative"),
        pytest.param("100", "is not a rate", id="no-period"),
        pytest.param("100/0s", "between 1 second and 366 days", id="zero-period"),
        pytest.param("1/367d", "between 1 second and 366 days", id="too-long"),
        pytest.param("1.5/second", "is not a rate", id="fraction"),
        pytest.param(100, "is not a rate", id="number"),
        pytest.param("100/minute; DROP", "is not a rate", id="trailing-garbage"),
    ],
)
def test_bad_rates_say_what_is_accepted(value: object, says: str) -> None:
    with pytest.raises(ValueError, match="use COUNT/PERIOD|at least 1|between") as info:
        parse_rate(value)
    assert says in str(info.value)


def test_rates_print_as_written() -> None:
    assert str(parse_rate("100/min")) == "100/minute"
    assert str(parse_rate("5/10s")) == "5/10s"
    assert parse_rate("100/minute").interval_us == 600_000
