"""Token revocation (RFC 7009; AUTH 26).

The client authenticates as at the token endpoint (§2.1) and names a token it holds. A
refresh token revokes its whole grant: the family's refresh tokens and every access token
issued from it, which stay on the store's ``jti`` denylist until they expire. An access token
is put on the denylist until its ``exp``. A token the server does not know, or no longer
honours, is answered 200 all the same (§2.2): the client's goal — the token is unusable — is
met, and the answer tells a prober nothing. A token issued to another client is refused
(§2.1) without effect.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apishield.authserver.clientauth import ClientAuthenticator, authenticated_token_request
from apishield.authserver.config import REVOKE_PATH, ServerConfig
from apishield.authserver.errors import unauthorized_client
from apishield.authserver.http import NO_STORE, Request, Response
from apishield.authserver.tokens import digest
from apishield.authserver.verification import read_own_access_token
from apishield.identity.jwks import KeyProvider
from apishield.identity.verifier import fingerprint

if TYPE_CHECKING:
    from apishield.store.engine import Store
    from apishield.store.revocations import RevocationList

logger = logging.getLogger("apishield.authserver")


class RevocationEndpoint:
    """``POST /oauth2/revoke``."""

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        *,
        clients: ClientAuthenticator,
        keys: KeyProvider,
        pepper: bytes,
        revocations: RevocationList | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clients = clients
        self.keys = keys
        self.pepper = pepper
        self.revocations = revocations

    async def handle(self, request: Request) -> Response:
        client, token, hint = await authenticated_token_request(
            request, self.clients, endpoint=self.config.url(REVOKE_PATH)
        )
        kinds = ("access", "refresh") if hint == "access_token" else ("refresh", "access")
        for kind in kinds:
            if kind == "refresh" and await self._revoke_refresh(client.id, token, request):
                break
            if kind == "access" and await self._revoke_access(client.id, token, request):
                break
        return Response(200, list(NO_STORE))

    async def _revoke_refresh(self, client_id: str, token: str, request: Request) -> bool:
        token_hash = digest(self.pepper, token)
        record = await self.store.refresh_tokens.get(token_hash)
        if record is None:
            return False
        if record.client_id != client_id:
            raise unauthorized_client("token_of_other_client", "the token is another client's")
        await self.store.refresh_tokens.revoke(token_hash)
        logger.info(
            "grant revoked family=%s client=%s credential=%s request_id=%s",
            record.family_id,
            client_id,
            fingerprint(token),
            request.request_id,
        )
        return True

    async def _revoke_access(self, client_id: str, token: str, request: Request) -> bool:
        claims = await read_own_access_token(token, keys=self.keys, issuer=self.config.issuer)
        if claims is None:
            return False
        if claims.get("client_id") != client_id:
            raise unauthorized_client("token_of_other_client", "the token is another client's")
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        if expires_at > self.store.now():
            await self.store.access_tokens.revoke(claims["jti"], expires_at=expires_at)
            if self.revocations is not None:
                self.revocations.note(claims["jti"], expires_at)
            logger.info(
                "access token revoked jti=%s client=%s request_id=%s",
                claims["jti"],
                client_id,
                request.request_id,
            )
        return True
