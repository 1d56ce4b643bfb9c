"""The store's tables, as SQLAlchemy Core ``Table`` objects (the migrations create them).

What is secret never lands here in clear: API keys, refresh tokens and authorization codes as
keyed hashes (HMAC-SHA-256 with a pepper from the secret key), client secrets and passwords as
Argon2id hashes, signing keys sealed with AES-GCM. A stolen database therefore yields nothing a
caller could present (DESIGN "State", AUTH 17, 24, 30).

Times are stored in UTC; lists (scopes, redirect URIs, CIDRs) as JSON arrays.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.engine import Dialect

# Named constraints keep migrations reproducible on both backends (SQLite cannot alter an
# unnamed constraint, and PostgreSQL would invent names of its own).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class Timestamp(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` in, an aware UTC ``datetime`` out, on every backend.

    SQLite keeps no zone: values are stored as naive UTC text in one fixed format, so that
    comparing them in SQL (``expires_at > :now``) compares instants.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store takes aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError("unexpected timestamp value from the store")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id(name: str = "id") -> Column[str]:
    return Column(name, String(64), primary_key=True)


def _digest(name: str) -> Column[str]:
    """A hex SHA-256 / HMAC-SHA-256 digest."""
    return Column(name, String(64), nullable=False)


clients = Table(
    "clients",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("secret_hash", Text, nullable=True),  # Argon2id; None for public/private_key_jwt
    Column("redirect_uris", JSON, nullable=False),
    Column("grant_types", JSON, nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("resources", JSON, nullable=False),
    Column("token_endpoint_auth_method", String(32), nullable=False),
    Column("jwks", JSON, nullable=True),  # public keys for private_key_jwt (RFC 7523)
    Column("created_at", Timestamp, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
)

users = Table(
    "users",
    metadata,
    _id(),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),  # Argon2id
    Column("roles", JSON, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    Column("owner", String(200), nullable=False, index=True),
    Column("name", String(200), nullable=True),
    Column("environment", String(16), nullable=False),
    Column("display_prefix", String(40), nullable=False),  # e.g. "ask_live_Ab12"
    Column("last4", String(4), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),  # HMAC-SHA-256(pepper, key)
    Column("scopes", JSON, nullable=False),
    Column("ip_allowlist", JSON, nullable=False),
    Column("expires_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("last_used_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
    Column("grace_expires_at", Timestamp, nullable=True),  # set when the key was rolled
    Column("replaced_by", String(64), nullable=True),
)

authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("scope", JSON, nullable=False),
    Column("resource", JSON, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_authorization_codes_client_id", "client_id"),
    Index("ix_authorization_codes_user_id", "user_id"),
)

# A grant: what one authorization (a code redemption) allowed. Its refresh tokens rotate within
# it, and its access tokens carry its id, so revoking the family kills them all (AUTH 25, 26).
refresh_token_families = Table(
    "refresh_token_families",
    metadata,
    _id(),
    Column("client_id", String(64), ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("scope", JSON, nullable=False),
    Column("resource", JSON, nullable=False),
    # the code this grant came from: presenting the code again revokes the grant (AUTH 16)
    Column("code_hash", String(64), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("absolute_expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Column("revoked_reason", String(32), nullable=True),
    Index("ix_refresh_token_families_client_id", "client_id"),
    Index("ix_refresh_token_families_code_hash", "code_hash"),
    Index("ix_refresh_token_families_user_id", "user_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "family_id",
        String(64),
        ForeignKey("refresh_token_families.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scope", JSON, nullable=False),
    Column("resource", JSON, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("spent_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
    Index("ix_refresh_tokens_family_id", "family_id"),
)

# Issued access tokens by `jti`, and the denylist: a row with `revoked_at` set refuses the token
# until its `exp`. No foreign keys on purpose: deleting a client or user must not delete the
# denylist entries that keep their tokens dead (AUTH 26, 28).
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("client_id", String(64), nullable=True),
    Column("user_id", String(64), nullable=True),
    Column("family_id", String(64), nullable=True),
    Column("expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Index("ix_access_tokens_client_id", "client_id"),
    Index("ix_access_tokens_user_id", "user_id"),
    Index("ix_access_tokens_family_id", "family_id"),
    Index("ix_access_tokens_expires_at", "expires_at"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("private_key", LargeBinary, nullable=False),  # AES-GCM sealed, see identity.secretkey
    Column("public_jwk", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("not_before", Timestamp, nullable=False),
    Column("retire_after", Timestamp, nullable=True),
)

ALL_TABLES = (
    clients,
    users,
    api_keys,
    authorization_codes,
    refresh_token_families,
    refresh_tokens,
    access_tokens,
    signing_keys,
)
