"""Issuing tokens (RFC 9068 access tokens, opaque refresh tokens) and the token response.

Access tokens (AUTH 19): a JWT with ``typ: at+jwt``, ES256, and the claims ``iss``, ``sub``,
``aud``, ``exp``, ``iat``, ``jti``, ``client_id``, ``scope`` (RFC 9068 §2.2), plus ``roles``
for users who have some (RFC 9068 §2.2.3.1). Every ``jti`` is recorded in the store with its
client, user and grant before the token leaves, so revoking any of them can deny it (AUTH 26,
28). Refresh tokens and codes are 256 random bits, stored only as keyed digests (AUTH 24).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from apishield.authserver.http import Response, json_response
from apishield.store.hashing import token_digest

if TYPE_CHECKING:
    from apishield.authserver.config import ServerConfig
    from apishield.authserver.signing import Signer
    from apishield.store.engine import Store

CLIENT_SUBJECT_PREFIX = "client:"  # AUTH 20: user ids are hex, so never start with this


def new_secret_token() -> str:
    """256 random bits, base64url: refresh tokens and authorization codes (AUTH 16, 24)."""
    return secrets.token_urlsafe(32)


def new_jti() -> str:
    """128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def client_subject(client_id: str) -> str:
    """The ``sub`` of a client-credentials token (AUTH 20)."""
    return CLIENT_SUBJECT_PREFIX + client_id


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An issued access token; ``repr`` never shows the token."""

    token: str = field(repr=False)
    jti: str
    expires_at: datetime
    scope: tuple[str, ...]


class TokenIssuer:
    """Mints access tokens with the store's signing key and records their ``jti``."""

    def __init__(self, store: Store, signer: Signer, config: ServerConfig) -> None:
        self.store = store
        self.signer = signer
        self.config = config

    async def access_token(
        self,
        *,
        subject: str,
        client_id: str,
        audience: Sequence[str],
        scope: Sequence[str],
        user_id: str | None = None,
        family_id: str | None = None,
        roles: Sequence[str] = (),
    ) -> AccessToken:
        """Sign and record an access token for ``subject``."""
        now = self.store.now()
        expires_at = now + timedelta(seconds=self.config.access_token_ttl)
        jti = new_jti()
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": subject,
            "aud": audience[0] if len(audience) == 1 else list(audience),
            "exp": int(expires_at.timestamp()),
            "iat": int(now.timestamp()),
            "jti": jti,
            "client_id": client_id,
            "scope": " ".join(scope),
        }
        if roles:
            claims["roles"] = sorted(roles)
        await self.store.access_tokens.record(
            jti, expires_at=expires_at, client_id=client_id, user_id=user_id, family_id=family_id
        )
        token = await self.signer.sign(claims)
        return AccessToken(token, jti, expires_at, tuple(scope))


def digest(pepper: bytes, secret: str) -> str:
    """The keyed digest a code or refresh token is stored and looked up by."""
    return token_digest(pepper, secret)


def token_response(
    access: AccessToken, *, ttl: float, refresh_token: str | None = None
) -> Response:
    """The successful token response (RFC 6749 §5.1), ``no-store`` and ``no-cache``."""
    document: dict[str, Any] = {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": int(ttl),
        "scope": " ".join(access.scope),
    }
    if refresh_token is not None:
        document["refresh_token"] = refresh_token
    return json_response(200, document)
