"""Identity: API keys, bearer JWTs, introspection, and the Principal later stages read."""

from __future__ import annotations

from apishield.identity.principal import Principal

__all__ = ["Principal"]
