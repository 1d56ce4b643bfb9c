"""Signing keys of the built-in issuer (AUTH 23), sealed with the secret key's AES-GCM subkey.

A key moves through ``next`` (published in the JWKS, not signing yet) → ``active`` (signing)
→ ``retiring`` (published until its last token expires, ``retire_after``) → ``retired``.
Publishing the next key before it signs lets every verifier's JWKS cache learn it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from apishield.store.errors import ConflictError, InvalidRecordError, NotFoundInStoreError
from apishield.store.records import SigningKeyRecord, SigningKeyState
from apishield.store.tables import signing_keys

if TYPE_CHECKING:
    from apishield.store.engine import Store

_STATES = ("next", "active", "retiring", "retired")


class SigningKeyRepository:
    """Signing keys: add, publish (JWKS), pick the signing key, change state."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(
        self,
        *,
        kid: str,
        alg: str,
        sealed_private_key: bytes,
        public_jwk: Mapping[str, Any],
        state: SigningKeyState = "next",
        not_before: datetime | None = None,
        retire_after: datetime | None = None,
    ) -> SigningKeyRecord:
        """Store a key, its private half already sealed; ``ConflictError`` on a known kid."""
        if state not in _STATES:
            raise InvalidRecordError(f"{state!r} is not a signing key state")
        if set(public_jwk) & {"d", "p", "q", "dp", "dq", "qi", "k"}:
            raise InvalidRecordError("the public JWK holds private key material")
        now = self.store.now()
        values = {
            "kid": kid,
            "alg": alg,
            "private_key": sealed_private_key,
            "public_jwk": dict(public_jwk),
            "state": state,
            "created_at": now,
            "not_before": not_before or now,
            "retire_after": retire_after,
        }
        try:
            async with self.store.begin() as conn:
                await conn.execute(insert(signing_keys).values(**values))
        except IntegrityError as exc:
            raise ConflictError(f"a signing key with kid {kid!r} exists") from exc
        return SigningKeyRecord.from_row(values)

    async def get(self, kid: str) -> SigningKeyRecord | None:
        """The key with this kid, or None."""
        async with self.store.connect() as conn:
            rows = await conn.execute(select(signing_keys).where(signing_keys.c.kid == kid))
            row = rows.mappings().first()
        return None if row is None else SigningKeyRecord.from_row(row)

    async def all(self) -> list[SigningKeyRecord]:
        """Every key, retired ones included, oldest first."""
        async with self.store.connect() as conn:
            rows = await conn.execute(
                select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.kid)
            )
            return [SigningKeyRecord.from_row(r) for r in rows.mappings()]

    async def published(self) -> list[SigningKeyRecord]:
        """The keys the JWKS lists: next, active, and retiring ones not past ``retire_after``."""
        now = self.store.now()
        sk = signing_keys
        query = (
            select(sk)
            .where(
                sk.c.state.in_(("next", "active", "retiring")),
                or_(sk.c.retire_after.is_(None), sk.c.retire_after > now),
            )
            .order_by(sk.c.created_at, sk.c.kid)
        )
        async with self.store.connect() as conn:
            rows = await conn.execute(query)
            return [SigningKeyRecord.from_row(r) for r in rows.mappings()]

    async def signing_key(self) -> SigningKeyRecord | None:
        """The newest active key whose ``not_before`` has come."""
        now = self.store.now()
        sk = signing_keys
        query = (
            select(sk)
            .where(sk.c.state == "active", sk.c.not_before <= now)
            .order_by(sk.c.not_before.desc(), sk.c.created_at.desc())
            .limit(1)
        )
        async with self.store.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else SigningKeyRecord.from_row(row)

    async def set_state(
        self, kid: str, state: SigningKeyState, *, retire_after: datetime | None = None
    ) -> None:
        """Move a key to ``state`` (and set when it leaves the JWKS)."""
        if state not in _STATES:
            raise InvalidRecordError(f"{state!r} is not a signing key state")
        changes: dict[str, Any] = {"state": state}
        if retire_after is not None:
            changes["retire_after"] = retire_after
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(signing_keys).where(signing_keys.c.kid == kid).values(**changes)
            )
            if result.rowcount == 0:
                raise NotFoundInStoreError(f"no such signing key {kid!r}")
