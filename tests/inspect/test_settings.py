"""The inspection section of the policy: secure defaults and located validation errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from apishield.inspect import DETECTORS, InspectionSettings


def test_defaults_are_on_enforcing_level_one_all_detectors() -> None:
    settings = InspectionSettings()
    assert (settings.enabled, settings.mode, settings.paranoia) == (True, "enforce", 1)
    assert tuple(settings.detectors) == DETECTORS
    assert settings.exclude == []


INVALID = [
    pytest.param({"paranoia": 4}, id="paranoia-out-of-range"),
    pytest.param({"mode": "log"}, id="unknown-mode"),
    pytest.param({"detectors": ["sqli", "sqli"]}, id="detector-twice"),
    pytest.param({"detectors": ["ldap"]}, id="unknown-detector"),
    pytest.param({"exclude": [{"field": "json.snippet"}]}, id="unknown-location"),
    pytest.param({"exclude": [{"route": "v2/items"}]}, id="route-without-slash"),
    pytest.param({"exclude": [{"detectors": []}]}, id="empty-detector-list"),
    pytest.param({"exclude": [{"fields": "body.x"}]}, id="typo-in-key"),
    pytest.param({"paranioa": 2}, id="typo-in-section"),
]


@pytest.mark.parametrize("data", INVALID)
def test_invalid_settings_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InspectionSettings.model_validate(data)


def test_header_fields_are_case_blind() -> None:
    settings = InspectionSettings.model_validate({"exclude": [{"field": "header.X-Debug"}]})
    assert settings.exclude[0].field == "header.x-debug"
