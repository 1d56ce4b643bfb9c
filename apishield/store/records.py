"""What the repositories return: frozen records, one per table row.

Hashes are kept out of ``repr`` so that a record printed in a log or a debugger shows no
material an attacker could try offline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

GrantType = Literal["client_credentials", "authorization_code", "refresh_token"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
SigningKeyState = Literal["next", "active", "retiring", "retired"]

GRANT_TYPES: tuple[GrantType, ...] = ("client_credentials", "authorization_code", "refresh_token")
AUTH_METHODS: tuple[AuthMethod, ...] = (
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
)


def strings(value: Iterable[Any] | None) -> tuple[str, ...]:
    """A JSON array from the store as a tuple of strings."""
    return tuple(str(v) for v in (value or ()))


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """An OAuth 2.0 client of the built-in authorization server (RFC 6749 §2)."""

    id: str
    name: str
    secret_hash: str | None = field(repr=False)
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    token_endpoint_auth_method: str
    jwks: dict[str, Any] | None = field(repr=False)
    created_at: datetime
    disabled: bool

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ClientRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            redirect_uris=strings(row["redirect_uris"]),
            grant_types=strings(row["grant_types"]),
            scopes=strings(row["scopes"]),
            resources=strings(row["resources"]),
            token_endpoint_auth_method=row["token_endpoint_auth_method"],
            jwks=row["jwks"],
            created_at=row["created_at"],
            disabled=bool(row["disabled"]),
        )


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user who can sign in to the built-in authorization server."""

    id: str
    username: str
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]
    created_at: datetime
    disabled: bool

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> UserRecord:
        return cls(
            id=row["id"],
            username=row["username"],
            password_hash=row["password_hash"],
            roles=strings(row["roles"]),
            created_at=row["created_at"],
            disabled=bool(row["disabled"]),
        )


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: never the key, only its keyed digest (AUTH 30, 31)."""

    id: str
    owner: str
    name: str | None
    environment: str
    display_prefix: str
    last4: str
    digest: str = field(repr=False)
    scopes: tuple[str, ...]
    ip_allowlist: tuple[str, ...]
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    grace_expires_at: datetime | None
    replaced_by: str | None

    @property
    def masked(self) -> str:
        """How the key is shown after creation: ``ask_live_Ab12…wxyz``."""
        return f"{self.display_prefix}…{self.last4}"

    def effective_expiry(self) -> datetime | None:
        """The earlier of the key's own expiry and the grace expiry a roll gave it."""
        times = [t for t in (self.expires_at, self.grace_expires_at) if t is not None]
        return min(times) if times else None

    def state(self, now: datetime) -> Literal["active", "rolled", "expired", "revoked"]:
        """``active``, ``rolled`` (in its grace period), ``expired`` or ``revoked`` at ``now``."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        expiry = self.effective_expiry()
        if expiry is not None and expiry <= now:
            return "expired"
        return "rolled" if self.grace_expires_at is not None else "active"

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ApiKeyRecord:
        return cls(
            id=row["id"],
            owner=row["owner"],
            name=row["name"],
            environment=row["environment"],
            display_prefix=row["display_prefix"],
            last4=row["last4"],
            digest=row["digest"],
            scopes=strings(row["scopes"]),
            ip_allowlist=strings(row["ip_allowlist"]),
            expires_at=row["expires_at"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
            grace_expires_at=row["grace_expires_at"],
            replaced_by=row["replaced_by"],
        )


@dataclass(frozen=True, slots=True)
class AuthorizationCodeRecord:
    """An authorization code, bound to client, user, redirect URI and PKCE challenge."""

    code_hash: str = field(repr=False)
    client_id: str
    user_id: str
    redirect_uri: str
    code_challenge: str = field(repr=False)
    code_challenge_method: str
    scope: tuple[str, ...]
    resource: tuple[str, ...]
    expires_at: datetime
    used_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuthorizationCodeRecord:
        return cls(
            code_hash=row["code_hash"],
            client_id=row["client_id"],
            user_id=row["user_id"],
            redirect_uri=row["redirect_uri"],
            code_challenge=row["code_challenge"],
            code_challenge_method=row["code_challenge_method"],
            scope=strings(row["scope"]),
            resource=strings(row["resource"]),
            expires_at=row["expires_at"],
            used_at=row["used_at"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A refresh-token family: one authorization, its rotating tokens and access tokens."""

    id: str
    client_id: str
    user_id: str
    scope: tuple[str, ...]
    resource: tuple[str, ...]
    code_hash: str | None = field(repr=False)
    created_at: datetime
    absolute_expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> GrantRecord:
        return cls(
            id=row["id"],
            client_id=row["client_id"],
            user_id=row["user_id"],
            scope=strings(row["scope"]),
            resource=strings(row["resource"]),
            code_hash=row["code_hash"],
            created_at=row["created_at"],
            absolute_expires_at=row["absolute_expires_at"],
            revoked_at=row["revoked_at"],
            revoked_reason=row["revoked_reason"],
        )


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    """One refresh token of a family; spent once used (AUTH 24, 25)."""

    token_hash: str = field(repr=False)
    family_id: str
    client_id: str
    user_id: str
    scope: tuple[str, ...]
    resource: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    spent_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RefreshTokenRecord:
        return cls(
            token_hash=row["token_hash"],
            family_id=row["family_id"],
            client_id=row["client_id"],
            user_id=row["user_id"],
            scope=strings(row["scope"]),
            resource=strings(row["resource"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            spent_at=row["spent_at"],
            revoked_at=row["revoked_at"],
        )


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """A signing key of the built-in issuer; the private key stays sealed (AUTH 23)."""

    kid: str
    alg: str
    private_key: bytes = field(repr=False)  # sealed with the secret key's AES-GCM subkey
    public_jwk: dict[str, Any]
    state: str
    created_at: datetime
    not_before: datetime
    retire_after: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> SigningKeyRecord:
        return cls(
            kid=row["kid"],
            alg=row["alg"],
            private_key=bytes(row["private_key"]),
            public_jwk=dict(row["public_jwk"]),
            state=row["state"],
            created_at=row["created_at"],
            not_before=row["not_before"],
            retire_after=row["retire_after"],
        )
