"""Settings shared by the whole suite."""

from __future__ import annotations

from hypothesis import settings

# Hypothesis' per-example deadline is a timed assertion: on a loaded CI machine it fails
# tests that are correct. Speed is measured in bench/, never asserted here.
settings.register_profile("apishield", deadline=None)
settings.load_profile("apishield")
