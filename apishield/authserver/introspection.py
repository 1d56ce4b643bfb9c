"""Token introspection (RFC 7662; AUTH 27).

The caller must authenticate as a confidential client (§2.1: the endpoint is protected, so
that it cannot be used to scan for tokens). A client learns about tokens issued to itself;
clients listed in ``ServerConfig.introspectors`` (resource servers) about any token. Every
other answer — unknown, expired, revoked, spent, another client's — is exactly
``{"active": false}`` (§2.2: nothing more may be said about an inactive token).
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from apishield.authserver.clientauth import ClientAuthenticator, authenticated_token_request
from apishield.authserver.config import INTROSPECT_PATH, ServerConfig
from apishield.authserver.http import Request, Response, json_response
from apishield.authserver.tokens import digest
from apishield.authserver.verification import read_own_access_token
from apishield.identity.jwks import KeyProvider

if TYPE_CHECKING:
    from apishield.store.engine import Store

INACTIVE = {"active": False}
_ACCESS_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")


class IntrospectionEndpoint:
    """``POST /oauth2/introspect``."""

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        *,
        clients: ClientAuthenticator,
        keys: KeyProvider,
        pepper: bytes,
    ) -> None:
        self.store = store
        self.config = config
        self.clients = clients
        self.keys = keys
        self.pepper = pepper

    async def handle(self, request: Request) -> Response:
        client, token, hint = await authenticated_token_request(
            request, self.clients, endpoint=self.config.url(INTROSPECT_PATH), allow_public=False
        )
        may_see_all = client.id in self.config.introspectors
        if hint == "refresh_token":
            document = await self._refresh(token) or await self._access(token)
        else:
            document = await self._access(token) or await self._refresh(token)
        if document is None or (not may_see_all and document.get("client_id") != client.id):
            return json_response(200, INACTIVE)
        return json_response(200, document)

    async def _access(self, token: str) -> dict[str, Any] | None:
        claims = await read_own_access_token(token, keys=self.keys, issuer=self.config.issuer)
        if claims is None or claims["exp"] <= self.store.now().timestamp():
            return None
        if await self.store.access_tokens.is_revoked(claims["jti"]):
            return None
        document: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        document.update({name: claims[name] for name in _ACCESS_CLAIMS if name in claims})
        return document

    async def _refresh(self, token: str) -> dict[str, Any] | None:
        record = await self.store.refresh_tokens.get(digest(self.pepper, token))
        now = self.store.now()
        if (
            record is None
            or record.spent_at is not None
            or record.revoked_at is not None
            or record.expires_at <= now
        ):
            return None
        family = await self.store.refresh_tokens.get_family(record.family_id)
        if family is None or family.revoked_at is not None:
            return None
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": " ".join(record.scope),
            "client_id": record.client_id,
            "sub": record.user_id,
            "aud": list(record.resource),
            "iss": self.config.issuer,
            "exp": int(record.expires_at.timestamp()),
            "iat": int(record.created_at.astimezone(UTC).timestamp()),
        }
