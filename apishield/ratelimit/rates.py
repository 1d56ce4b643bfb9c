"""Rates as the policy file writes them: ``100/minute``, ``20/second``, ``10000/day``, ``5/10s``.

Parsing is strict: a rate is a positive count, a slash, and a period (an optional positive
multiplier and one unit). Anything else is refused with a message that shows the accepted
forms, because a rate the gateway misreads is a limit that silently does not hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{1,6})?\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86_400,
    "day": 86_400,
    "days": 86_400,
}
_CANONICAL = {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}
MAX_PERIOD = 366 * 86_400  # a year and a day: longer windows are quotas nobody can reason about
_HELP = "use COUNT/PERIOD, for example '100/minute', '20/second', '10000/day' or '5/10s'"
RATE_PATTERN = r"^\s*\d{1,9}\s*/\s*\d{0,6}\s*[A-Za-z]+\s*$"


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` events per ``period`` seconds."""

    limit: int
    period: int

    def __str__(self) -> str:
        unit = _CANONICAL.get(self.period)
        return f"{self.limit}/{unit}" if unit else f"{self.limit}/{self.period}s"

    @property
    def interval_us(self) -> int:
        """Microseconds between two events at the steady rate (GCRA's emission interval)."""
        return max(1, self.period * 1_000_000 // self.limit)

    @property
    def period_us(self) -> int:
        return self.period * 1_000_000


def parse_rate(value: Any) -> Rate:
    """``'100/minute'`` → ``Rate(100, 60)``; raises ``ValueError`` saying what is accepted."""
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a rate: {_HELP}")
    match = _RATE.match(value.lower())
    if match is None:
        raise ValueError(f"{value!r} is not a rate: {_HELP}")
    count, multiplier, unit = match.groups()
    if unit not in _UNITS:
        raise ValueError(f"{value!r}: unknown unit {unit!r}; {_HELP}")
    limit = int(count)
    period = int(multiplier or 1) * _UNITS[unit]
    if limit < 1:
        raise ValueError(f"{value!r}: the count must be at least 1")
    if period < 1 or period > MAX_PERIOD:
        raise ValueError(f"{value!r}: the period must be between 1 second and 366 days")
    return Rate(limit, period)


RateField = Annotated[
    Rate,
    BeforeValidator(parse_rate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": RATE_PATTERN, "examples": ["100/minute"]}),
]
