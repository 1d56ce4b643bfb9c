"""The ``inspection:`` section of the policy: paranoia level, mode, detectors, exclusions.

Absent, the section means the secure default: inspection on, enforcing, paranoia level 1 (only
strong evidence refuses), every detector. Exclusions are narrow by construction: one route
template, one field (or a ``*`` pattern), and the detectors they switch off, so that a route
that legitimately takes SQL in a ``snippet`` field does not lose SQL inspection on its query
string, nor XSS inspection on that same field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DETECTORS", "DetectorName", "InspectionExclusion", "InspectionSettings"]

DetectorName = Literal["sqli", "nosqli", "cmdi", "xss", "traversal", "ssti"]
DETECTORS: tuple[DetectorName, ...] = ("sqli", "nosqli", "cmdi", "xss", "traversal", "ssti")
LOCATIONS = ("path", "query", "header", "cookie", "body")
_FIELD = re.compile(r"^(path|query|header|cookie|body)(\.[^.\s]+)*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InspectionExclusion(_Model):
    """Turns detectors off for one field of one route (OWASP CRS calls these rule exclusions)."""

    route: str | None = Field(
        default=None,
        description="a route template from 'routes' (e.g. /v2/snippets/{id}); absent: every route",
    )
    field: str | None = Field(
        default=None,
        description="body.snippet, query.q, header.x-trace, cookie.prefs, path.id; '*' matches "
        "one segment, a final '**' the rest; absent: every field of the route",
    )
    detectors: list[DetectorName] | None = Field(
        default=None, description="the detectors to switch off; absent: all of them"
    )

    @field_validator("route")
    @classmethod
    def _check_route(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} is not a route template (it must start with '/')")
        return value

    @field_validator("field")
    @classmethod
    def _check_field(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _FIELD.match(value):
            raise ValueError(
                f"{value!r}: a field starts with path, query, header, cookie or body "
                "(for example body.snippet or header.x-trace)"
            )
        head, _, rest = value.partition(".")
        if head == "header":
            return head + "." + rest.lower() if rest else head  # header names are case-blind
        return value

    @field_validator("detectors")
    @classmethod
    def _check_detectors(cls, value: list[DetectorName] | None) -> list[DetectorName] | None:
        if value is not None and not value:
            raise ValueError("list at least one detector, or leave 'detectors' out for all")
        return value


class InspectionSettings(_Model):
    """Stage 11: injection detectors over every value of the request."""

    enabled: bool = True
    mode: Literal["enforce", "report"] = "enforce"
    paranoia: Literal[1, 2, 3] = Field(
        default=1,
        description="1: refuse on strong evidence only; 2 and 3 also on weaker evidence, "
        "with more false positives",
    )
    detectors: list[DetectorName] = Field(default_factory=lambda: list(DETECTORS))
    exclude: list[InspectionExclusion] = []

    @field_validator("detectors")
    @classmethod
    def _check_detectors(cls, value: list[DetectorName]) -> list[DetectorName]:
        if len(value) != len(set(value)):
            raise ValueError("a detector is listed twice")
        return value
