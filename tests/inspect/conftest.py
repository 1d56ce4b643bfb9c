from __future__ import annotations

import pytest

from apishield.inspect import InspectionSettings, Inspector


@pytest.fixture(scope="session")
def inspector() -> Inspector:
    """The default inspector: every detector, paranoia level 1, enforcing."""
    return Inspector(InspectionSettings())
