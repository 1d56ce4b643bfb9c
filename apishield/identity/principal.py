"""The verified caller, as the authentication stage leaves it in ``RequestContext.principal``.

Later stages (rate limits, authorization, upstream identity headers) read only this: they
never look at a credential again. A principal is identified by (``issuer``, ``subject``)
(AUTH-10): the same ``sub`` from two issuers is two different callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CredentialKind = Literal["api_key", "jwt", "opaque"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, what they may do, and how they proved it."""

    issuer: str  # "apikey" for API keys, the `iss` for tokens
    subject: str  # the key's owner, or the token's `sub`
    kind: CredentialKind
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    client_id: str | None = None
    credential_id: str | None = None  # key id or token `jti`: never the secret itself
    expires_at: float | None = None  # unix time
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """A stable identifier for limits and logs: ``issuer`` and ``subject`` together."""
        return f"{self.issuer}|{self.subject}"
