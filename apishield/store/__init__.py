"""apishield's persistent state: SQLAlchemy Core tables, Alembic migrations, repositories.

``Store(url)`` opens ``sqlite:///PATH`` (aiosqlite) or ``postgresql://…`` (asyncpg); every
query uses bound parameters (SQLAlchemy Core), never formatted SQL. Any failure of the
database becomes ``StoreUnavailableError`` (503), so the gateway fails closed.
"""

from __future__ import annotations

from apishield.errors import StoreUnavailableError
from apishield.store.engine import Store, utcnow
from apishield.store.errors import (
    ConflictError,
    InvalidRecordError,
    NotFoundInStoreError,
    StoreError,
)
from apishield.store.grants import CodeRedemption, Rotation, purge_expired
from apishield.store.migrate import current_revision, migrate
from apishield.store.records import (
    ApiKeyRecord,
    AuthorizationCodeRecord,
    ClientRecord,
    GrantRecord,
    RefreshTokenRecord,
    SigningKeyRecord,
    UserRecord,
)
from apishield.store.revocations import RevocationList
from apishield.store.urls import parse_store_url, redact_url, store_url

__all__ = [
    "ApiKeyRecord",
    "AuthorizationCodeRecord",
    "ClientRecord",
    "CodeRedemption",
    "ConflictError",
    "GrantRecord",
    "InvalidRecordError",
    "NotFoundInStoreError",
    "RefreshTokenRecord",
    "RevocationList",
    "Rotation",
    "SigningKeyRecord",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "UserRecord",
    "current_revision",
    "migrate",
    "parse_store_url",
    "purge_expired",
    "redact_url",
    "store_url",
    "utcnow",
]
