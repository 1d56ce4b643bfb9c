"""The policy file: typed models, loading with located errors, and the audit (`check`)."""

from __future__ import annotations

from apishield.policy.load import coerce_policy, load_policy, parse_policy
from apishield.policy.models import Policy

__all__ = ["Policy", "coerce_policy", "load_policy", "parse_policy"]
