"""OAuth 2.0 clients of the built-in authorization server (RFC 6749 §2).

Registration refuses what RFC 9700 retires: the implicit and password grants (§2.1.2, §2.4),
redirect URIs that are not exact absolute URIs (§4.1.3: no wildcards, no fragments, plain HTTP
only on loopback), and refresh tokens for the client-credentials grant (RFC 6749 §4.4.3).
Secrets are ≥ 256 random bits, shown once, and stored with Argon2id (AUTH 17).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from apishield.store.errors import ConflictError, InvalidRecordError, NotFoundInStoreError
from apishield.store.grants import revoke_all_grants
from apishield.store.hashing import hash_secret, needs_rehash, verify_secret
from apishield.store.records import AUTH_METHODS, GRANT_TYPES, ClientRecord
from apishield.store.tables import clients

if TYPE_CHECKING:
    from apishield.store.engine import Store

_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_redirect_uri(uri: str) -> str:
    """An exact redirect URI: https, or http on a loopback IP literal (RFC 8252 §7.3)."""
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise InvalidRecordError(f"redirect URI {uri!r} has a fragment (RFC 6749 §3.1.2)")
    if "*" in uri:
        raise InvalidRecordError(f"redirect URI {uri!r}: wildcards are not allowed")
    if parts.username is not None or parts.password is not None:
        raise InvalidRecordError(f"redirect URI {uri!r} carries credentials")
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return uri
    if parts.scheme == "http" and _loopback(host):
        return uri
    raise InvalidRecordError(
        f"redirect URI {uri!r} must be https://, or http:// on 127.0.0.1 or [::1]"
    )


def validate_registration(
    *,
    grant_types: Sequence[str],
    redirect_uris: Sequence[str],
    scopes: Sequence[str],
    resources: Sequence[str],
    auth_method: str,
    jwks: dict[str, Any] | None,
) -> None:
    """Raise ``InvalidRecordError`` for a client that must not be registered."""
    if not grant_types:
        raise InvalidRecordError("name at least one grant type")
    for grant in grant_types:
        if grant not in GRANT_TYPES:
            raise InvalidRecordError(
                f"grant type {grant!r} is not supported (use {', '.join(GRANT_TYPES)})"
            )
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        raise InvalidRecordError("refresh_token needs authorization_code (RFC 6749 §4.4.3)")
    if "authorization_code" in grant_types and not redirect_uris:
        raise InvalidRecordError("authorization_code needs at least one redirect URI")
    for uri in redirect_uris:
        validate_redirect_uri(uri)
    for scope in scopes:
        if not _SCOPE_TOKEN.match(scope):
            raise InvalidRecordError(f"{scope!r} is not a scope token (RFC 6749 §3.3)")
    for resource in resources:
        parts = urlsplit(resource)
        if not parts.scheme or not parts.netloc or parts.fragment:
            raise InvalidRecordError(
                f"resource {resource!r} must be an absolute URI without fragment (RFC 8707 §2)"
            )
    if auth_method not in AUTH_METHODS:
        raise InvalidRecordError(
            f"auth method {auth_method!r} is not one of {', '.join(AUTH_METHODS)}"
        )
    if auth_method == "none" and "client_credentials" in grant_types:
        raise InvalidRecordError("a public client (auth method none) cannot use client_credentials")
    if auth_method == "private_key_jwt":
        keys = (jwks or {}).get("keys")
        if not isinstance(keys, list) or not keys:
            raise InvalidRecordError("private_key_jwt needs a JWK set with at least one key")
        for key in keys:
            if not isinstance(key, dict) or "kty" not in key:
                raise InvalidRecordError("every JWK needs a 'kty'")
            if _PRIVATE_JWK_MEMBERS & key.keys():
                raise InvalidRecordError("the JWK set holds private key material: give public keys")
    elif jwks is not None:
        raise InvalidRecordError("a JWK set is only used with private_key_jwt")


def new_client_secret() -> str:
    """A client secret of 256 random bits (AUTH 17 asks for at least 128)."""
    return secrets.token_urlsafe(32)


class ClientRepository:
    """Clients: register, look up, authenticate, delete (which revokes their grants)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def register(
        self,
        *,
        name: str,
        grant_types: Sequence[str],
        redirect_uris: Sequence[str] = (),
        scopes: Sequence[str] = (),
        resources: Sequence[str] = (),
        auth_method: str = "client_secret_basic",
        jwks: dict[str, Any] | None = None,
        client_id: str | None = None,
    ) -> tuple[ClientRecord, str | None]:
        """Validate and store a client. Returns it and its secret, the only time the secret
        exists in clear (None for ``private_key_jwt`` and public clients)."""
        validate_registration(
            grant_types=grant_types,
            redirect_uris=redirect_uris,
            scopes=scopes,
            resources=resources,
            auth_method=auth_method,
            jwks=jwks,
        )
        secret = new_client_secret() if auth_method.startswith("client_secret") else None
        values = {
            # hex: an id starting with "-" would read as an option on a command line
            "id": client_id or secrets.token_hex(12),
            "name": name,
            "secret_hash": await hash_secret(secret) if secret is not None else None,
            "redirect_uris": list(redirect_uris),
            "grant_types": list(grant_types),
            "scopes": list(scopes),
            "resources": list(resources),
            "token_endpoint_auth_method": auth_method,
            "jwks": jwks,
            "created_at": self.store.now(),
            "disabled": False,
        }
        try:
            async with self.store.begin() as conn:
                await conn.execute(insert(clients).values(**values))
        except IntegrityError as exc:
            raise ConflictError(f"a client with id {values['id']!r} exists") from exc
        return ClientRecord.from_row(values), secret

    async def get(self, client_id: str) -> ClientRecord | None:
        """The client with this id, or None."""
        async with self.store.connect() as conn:
            row = (
                (await conn.execute(select(clients).where(clients.c.id == client_id)))
                .mappings()
                .first()
            )
        return None if row is None else ClientRecord.from_row(row)

    async def all(self) -> list[ClientRecord]:
        """Every client, oldest first."""
        async with self.store.connect() as conn:
            rows = await conn.execute(select(clients).order_by(clients.c.created_at, clients.c.id))
            return [ClientRecord.from_row(r) for r in rows.mappings()]

    async def authenticate(self, client_id: str, secret: str) -> ClientRecord | None:
        """The client, when ``secret`` is its secret and it is enabled; else None. Unknown
        clients cost the same Argon2id verification, so timing does not reveal ids."""
        client = await self.get(client_id)
        encoded = client.secret_hash if client is not None else None
        if not await verify_secret(encoded, secret) or client is None or encoded is None:
            return None
        if client.disabled:
            return None
        if needs_rehash(encoded):
            rehashed = await hash_secret(secret)
            async with self.store.begin() as conn:
                await conn.execute(
                    update(clients).where(clients.c.id == client_id).values(secret_hash=rehashed)
                )
        return client

    async def set_disabled(self, client_id: str, disabled: bool) -> None:
        """Disable (revoking every grant) or enable a client."""
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(clients).where(clients.c.id == client_id).values(disabled=disabled)
            )
            if result.rowcount == 0:
                raise NotFoundInStoreError(f"no such client {client_id!r}")
            if disabled:
                await revoke_all_grants(
                    conn, now=self.store.now(), reason="client_disabled", client_id=client_id
                )

    async def delete(self, client_id: str) -> None:
        """Delete a client and revoke all its grants in one transaction (AUTH 28). Its access
        tokens stay on the denylist until they expire."""
        async with self.store.begin() as conn:
            found = await conn.execute(select(clients.c.id).where(clients.c.id == client_id))
            if found.first() is None:
                raise NotFoundInStoreError(f"no such client {client_id!r}")
            await revoke_all_grants(
                conn, now=self.store.now(), reason="client_deleted", client_id=client_id
            )
            await conn.execute(delete(clients).where(clients.c.id == client_id))
