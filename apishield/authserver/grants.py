"""The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6; AUTH 13–21, 24–25).

Grants: ``client_credentials``, ``authorization_code`` with PKCE ``S256``, ``refresh_token``.
Nothing else: the implicit and password grants are gone (RFC 9700 §2.1.2, §2.4), and
``unsupported_grant_type`` says so.

Authorization codes are single use, and every presentation counts as the use: a code whose
check fails (wrong client, redirect URI or verifier, expired) is burnt. The grant is written
*before* the code is redeemed, with the code's digest on it, so a second redemption — even
one racing the first — finds it and revokes it with every token issued from it (RFC 6749
§4.1.2, RFC 9700 §4.2.4; AUTH 16).

Refresh tokens rotate on every use, atomically in the store; a spent token presented again
revokes its whole family (RFC 9700 §4.14.2; AUTH 25). A refresh may narrow the scope and the
audience of the new access token, never widen them; the grant's absolute expiry never moves.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from apishield.authserver.clientauth import ClientAuthenticator, parse_client_credentials
from apishield.authserver.errors import (
    OAuthError,
    invalid_grant,
    invalid_request,
    oauth_form,
    unauthorized_client,
    unsupported_grant_type,
)
from apishield.authserver.pkce import valid_challenge, verify_pkce
from apishield.authserver.scopes import grant_resource, grant_scope
from apishield.authserver.storage import get_code
from apishield.authserver.tokens import (
    AccessToken,
    TokenIssuer,
    client_subject,
    digest,
    new_secret_token,
    token_response,
)
from apishield.identity.verifier import fingerprint
from apishield.store.records import AuthorizationCodeRecord, ClientRecord, UserRecord

if TYPE_CHECKING:
    from apishield.authserver.config import ServerConfig
    from apishield.authserver.http import Params, Request, Response
    from apishield.store.engine import Store

logger = logging.getLogger("apishield.authserver")

GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token")


class TokenEndpoint:
    """``POST /oauth2/token``."""

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        *,
        clients: ClientAuthenticator,
        issuer: TokenIssuer,
        pepper: bytes,
    ) -> None:
        self.store = store
        self.config = config
        self.clients = clients
        self.issuer = issuer
        self.pepper = pepper

    async def handle(self, request: Request) -> Response:
        params = oauth_form(request)
        presented = parse_client_credentials(request, params)
        request.log["client"] = presented.client_id
        if presented.credential is not None:
            request.log["client_credential"] = fingerprint(presented.credential)
        client = await self.clients.authenticate(presented, endpoint=self.config.token_endpoint)
        grant_type = params.get("grant_type")
        request.log["grant"] = grant_type or "-"
        if grant_type is None:
            raise invalid_request("grant_type_missing", "grant_type is required")
        if grant_type not in GRANT_TYPES:
            raise unsupported_grant_type(
                "grant_type_unsupported", f"supported grant types: {', '.join(GRANT_TYPES)}"
            )
        if grant_type not in client.grant_types:
            raise unauthorized_client(
                "grant_not_registered", "the client is not registered for this grant type"
            )
        if grant_type != "authorization_code" and "code_verifier" in params:
            # A verifier with no code and no challenge to prove: a confused or probing client.
            raise invalid_request("code_verifier_without_code", "code_verifier is for code grants")
        if grant_type == "client_credentials":
            return await self._client_credentials(client, params)
        if grant_type == "authorization_code":
            return await self._authorization_code(request, client, params)
        return await self._refresh(request, client, params)

    async def _client_credentials(self, client: ClientRecord, params: Params) -> Response:
        """RFC 6749 §4.4: the client acts for itself; no refresh token (§4.4.3, AUTH 20)."""
        scope = grant_scope(params.get("scope"), client.scopes)
        audience = grant_resource(params.all("resource"), client.resources)
        access = await self.issuer.access_token(
            subject=client_subject(client.id),
            client_id=client.id,
            audience=audience,
            scope=scope,
        )
        return token_response(access, ttl=self.config.access_token_ttl)

    async def _user(self, user_id: str) -> UserRecord | None:
        user = await self.store.users.get(user_id)
        return None if user is None or user.disabled else user

    def _code_problem(
        self, record: AuthorizationCodeRecord, client: ClientRecord, params: Params
    ) -> str | None:
        """Why the code cannot be exchanged by this request, or None. Pure."""
        if record.client_id != client.id:
            return "code_client_mismatch"
        if params.get("redirect_uri") != record.redirect_uri:
            return "redirect_uri_mismatch"
        verifier = params.get("code_verifier")
        if not valid_challenge(record.code_challenge, record.code_challenge_method):
            return "pkce_no_challenge"  # AUTH 14: a verifier proves nothing without one
        if verifier is None:
            return "pkce_verifier_missing"
        if not verify_pkce(verifier, record.code_challenge, record.code_challenge_method):
            return "pkce_mismatch"
        if record.expires_at <= self.store.now():
            return "code_expired"
        return None

    async def _authorization_code(
        self, request: Request, client: ClientRecord, params: Params
    ) -> Response:
        """RFC 6749 §4.1.3 with RFC 7636 §4.5–4.6."""
        code = params.get("code")
        if code is None:
            raise invalid_request("code_missing", "code is required")
        if params.get("redirect_uri") is None:
            raise invalid_request("redirect_uri_missing", "redirect_uri is required")
        request.log["credential"] = fingerprint(code)
        code_hash = digest(self.pepper, code)
        record = await get_code(self.store, code_hash)
        if record is None:
            raise invalid_grant("code_unknown", "the code is unknown, used or expired")
        if record.used_at is not None:
            await self.store.codes.redeem(code_hash)  # revokes what the code gave (AUTH 16)
            raise _replayed_code(request)
        problem = self._code_problem(record, client, params)
        user = await self._user(record.user_id) if problem is None else None
        if problem is None and user is None:
            problem = "user_disabled"
        if problem is not None or user is None:
            outcome = await self.store.codes.redeem(code_hash)  # burnt: one presentation each
            if outcome.status == "replayed":
                raise _replayed_code(request)
            raise invalid_grant(problem or "user_disabled", "the code cannot be exchanged")
        audience = grant_resource(params.all("resource"), record.resource)
        family_id = secrets.token_hex(12)
        refresh = new_secret_token()
        await self.store.refresh_tokens.start_family(
            family_id=family_id,
            token_hash=digest(self.pepper, refresh),
            client_id=client.id,
            user_id=user.id,
            scope=record.scope,
            resource=record.resource,
            absolute_expires_at=self.store.now() + timedelta(seconds=self.config.refresh_token_ttl),
            code_hash=code_hash,
        )
        access = await self.issuer.access_token(
            subject=user.id,
            client_id=client.id,
            audience=audience,
            scope=record.scope,
            user_id=user.id,
            family_id=family_id,
            roles=user.roles,
        )
        outcome = await self.store.codes.redeem(code_hash)
        if outcome.status != "ok":
            await self.store.refresh_tokens.revoke_family(family_id, reason="code_replay")
            if outcome.status == "replayed":
                raise _replayed_code(request)
            raise invalid_grant(f"code_{outcome.status}", "the code cannot be exchanged")
        await self._still_alive(family_id, access)
        with_refresh = "refresh_token" in client.grant_types
        return token_response(
            access,
            ttl=self.config.access_token_ttl,
            refresh_token=refresh if with_refresh else None,
        )

    async def _refresh(self, request: Request, client: ClientRecord, params: Params) -> Response:
        """RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2)."""
        presented = params.get("refresh_token")
        if presented is None:
            raise invalid_request("refresh_token_missing", "refresh_token is required")
        request.log["credential"] = fingerprint(presented)
        token_hash = digest(self.pepper, presented)
        record = await self.store.refresh_tokens.get(token_hash)
        if record is None:
            raise invalid_grant("refresh_unknown", "the refresh token is unknown")
        if record.client_id != client.id:
            raise invalid_grant("refresh_client_mismatch", "the refresh token is another client's")
        scope = grant_scope(params.get("scope"), record.scope)  # never wider (AUTH 24)
        audience = grant_resource(params.all("resource"), record.resource)
        user = await self._user(record.user_id)
        if user is None:
            await self.store.refresh_tokens.revoke_family(record.family_id, reason="user_disabled")
            raise invalid_grant("user_disabled", "the grant's user is disabled")
        new_refresh = new_secret_token()
        rotation = await self.store.refresh_tokens.rotate(
            token_hash, digest(self.pepper, new_refresh)
        )
        if rotation.status == "reused":
            logger.warning(
                "refresh token reused: grant revoked family=%s client=%s credential=%s "
                "request_id=%s",
                record.family_id,
                client.id,
                fingerprint(presented),
                request.request_id,
            )
            raise invalid_grant("refresh_reused", "the refresh token was already used")
        if rotation.status != "rotated":
            raise invalid_grant(f"refresh_{rotation.status}", "the refresh token is not valid")
        access = await self.issuer.access_token(
            subject=user.id,
            client_id=client.id,
            audience=audience,
            scope=scope,
            user_id=user.id,
            family_id=record.family_id,
            roles=user.roles,
        )
        await self._still_alive(record.family_id, access)
        return token_response(access, ttl=self.config.access_token_ttl, refresh_token=new_refresh)

    async def _still_alive(self, family_id: str, access: AccessToken) -> None:
        """The grant was not revoked while its tokens were being made (a user disabled, a
        replay) — if it was, the new access token is denied too and nothing is returned."""
        family = await self.store.refresh_tokens.get_family(family_id)
        if family is None or family.revoked_at is not None:
            await self.store.access_tokens.revoke(access.jti, expires_at=access.expires_at)
            raise invalid_grant("grant_revoked", "the grant was revoked")


def _replayed_code(request: Request) -> OAuthError:
    logger.warning(
        "authorization code presented again: its grant is revoked client=%s credential=%s "
        "request_id=%s",
        request.log.get("client", "-"),
        request.log.get("credential", "-"),
        request.request_id,
    )
    return invalid_grant("code_replayed", "the code was already used")
