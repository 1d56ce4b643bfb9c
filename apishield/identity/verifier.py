"""What the authentication stage asks of each kind of credential.

A verifier takes the credential as the client sent it and returns a ``Principal``, or raises
``UnauthorizedError`` with a specific ``code`` (``token_expired``, ``token_invalid``,
``api_key_invalid``…). It never logs the credential; at most its fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod

from apishield.identity.principal import Principal


def fingerprint(secret: str | bytes) -> str:
    """First 8 hex digits of SHA-256: enough to correlate log lines, useless to an attacker."""
    data = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()[:8]


# A word this long that mixes letters and digits is a key, a token or a reset code far more
# often than a name: clients do paste credentials where names go (AUTH 38 forbids them in logs).
_CREDENTIAL_LIKE = re.compile(r"^(?=[^/]*[A-Za-z])(?=[^/]*\d)[A-Za-z0-9._~+=-]{24,}$")


def redact_credential_like(text: str) -> str:
    """``text``, or ``[redacted:<fingerprint>]`` when it looks like a credential (AUTH 38)."""
    return f"[redacted:{fingerprint(text)}]" if _CREDENTIAL_LIKE.match(text) else text


class ApiKeyVerifier(ABC):
    """Verifies the value of the configured API-key header."""

    @abstractmethod
    async def verify_api_key(self, key: str, *, client_ip: str) -> Principal: ...


class BearerVerifier(ABC):
    """Verifies an ``Authorization: Bearer`` token (RFC 6750)."""

    @abstractmethod
    async def verify_bearer(self, token: str, *, resource: str | None = None) -> Principal:
        """The token's principal, for a request to a route whose resource identifier
        (RFC 8707) is ``resource``: the token's audience must contain it (AUTH 6, RFC 8725
        §3.9). ``None``: the route sets none, and the verifier's own default audience applies
        (for JWTs, the issuer's configured ``audience``)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release fetchers and caches."""
