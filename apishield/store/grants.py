"""Grants: authorization codes, refresh-token families and access-token revocations.

- Codes are single use. Redemption is one conditional ``UPDATE … WHERE used_at IS NULL``, so two
  concurrent redemptions cannot both succeed; presenting a used code again revokes the grant
  that was issued from it (RFC 6749 §4.1.2, RFC 9700 §4.2.4, AUTH 16).
- Refresh tokens rotate on every use, atomically, in the same way; presenting a spent token
  revokes its whole family and the family's access tokens (RFC 9700 §4.14.2, AUTH 25).
- Access tokens are recorded by ``jti``; revoking one keeps it on a denylist until its ``exp``
  (RFC 7009, AUTH 26).

Codes and tokens arrive here as digests (``apishield.store.hashing.token_digest``), never clear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from apishield.store.errors import ConflictError
from apishield.store.records import AuthorizationCodeRecord, GrantRecord, RefreshTokenRecord
from apishield.store.tables import (
    access_tokens,
    authorization_codes,
    refresh_token_families,
    refresh_tokens,
)

if TYPE_CHECKING:
    from apishield.store.engine import Store

RevokeReason = Literal[
    "revoked", "reuse", "code_replay", "client_deleted", "client_disabled", "user_disabled"
]


async def revoke_families(
    conn: AsyncConnection, where: ColumnElement[bool], *, now: datetime, reason: str
) -> int:
    """Revoke the families matching ``where``, their refresh tokens and access tokens."""
    fam = refresh_token_families
    ids = select(fam.c.id).where(where).scalar_subquery()
    result = await conn.execute(
        update(fam)
        .where(where, fam.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id.in_(ids), refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await conn.execute(
        update(access_tokens)
        .where(access_tokens.c.family_id.in_(ids), access_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)


async def revoke_all_grants(
    conn: AsyncConnection,
    *,
    now: datetime,
    reason: str,
    client_id: str | None = None,
    user_id: str | None = None,
) -> None:
    """Revoke every grant of a client or of a user: families, refresh tokens, unused codes,
    and access tokens still alive (AUTH 28). Runs inside the caller's transaction."""
    if (client_id is None) == (user_id is None):
        raise ValueError("give exactly one of client_id or user_id")
    fam, codes, tokens = refresh_token_families, authorization_codes, access_tokens
    if client_id is not None:
        fam_where, code_where = fam.c.client_id == client_id, codes.c.client_id == client_id
        token_where = tokens.c.client_id == client_id
    else:
        fam_where, code_where = fam.c.user_id == user_id, codes.c.user_id == user_id
        token_where = tokens.c.user_id == user_id
    await revoke_families(conn, fam_where, now=now, reason=reason)
    await conn.execute(
        update(codes).where(code_where, codes.c.used_at.is_(None)).values(used_at=now)
    )
    await conn.execute(
        update(tokens)
        .where(token_where, tokens.c.revoked_at.is_(None), tokens.c.expires_at > now)
        .values(revoked_at=now)
    )


@dataclass(frozen=True, slots=True)
class CodeRedemption:
    """The outcome of presenting a code. Only ``status == "ok"`` may issue tokens."""

    status: Literal["ok", "expired", "replayed", "unknown"]
    code: AuthorizationCodeRecord | None = None


class AuthorizationCodeRepository:
    """Authorization codes (RFC 6749 §4.1, PKCE RFC 7636), by digest."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self,
        *,
        code_hash: str,
        client_id: str,
        user_id: str,
        redirect_uri: str,
        code_challenge: str,
        scope: Sequence[str],
        resource: Sequence[str],
        expires_at: datetime,
        code_challenge_method: str = "S256",
    ) -> AuthorizationCodeRecord:
        """Store a code by its digest; ``ConflictError`` when the client or user is unknown."""
        values = {
            "code_hash": code_hash,
            "client_id": client_id,
            "user_id": user_id,
            "redirect_uri": redirect_uri,
            "code_challenge": code_challenge,
            "code_challenge_method": code_challenge_method,
            "scope": list(scope),
            "resource": list(resource),
            "expires_at": expires_at,
            "used_at": None,
            "created_at": self.store.now(),
        }
        try:
            async with self.store.begin() as conn:
                await conn.execute(insert(authorization_codes).values(**values))
        except IntegrityError as exc:
            raise ConflictError("the code's client or user does not exist") from exc
        return AuthorizationCodeRecord.from_row(values)

    async def redeem(self, code_hash: str) -> CodeRedemption:
        """Mark the code used and return it, once. A second redemption revokes the grant
        issued from the first (the family whose ``code_hash`` is this code)."""
        now = self.store.now()
        codes = authorization_codes
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(codes)
                .where(codes.c.code_hash == code_hash, codes.c.used_at.is_(None))
                .values(used_at=now)
            )
            row = (
                (await conn.execute(select(codes).where(codes.c.code_hash == code_hash)))
                .mappings()
                .first()
            )
            if row is None:
                return CodeRedemption("unknown")
            record = AuthorizationCodeRecord.from_row(row)
            if result.rowcount != 1:
                await revoke_families(
                    conn,
                    refresh_token_families.c.code_hash == code_hash,
                    now=now,
                    reason="code_replay",
                )
                return CodeRedemption("replayed", record)
            if record.expires_at <= now:
                return CodeRedemption("expired", record)
            return CodeRedemption("ok", record)


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of presenting a refresh token. Only ``"rotated"`` carries a new token."""

    status: Literal["rotated", "reused", "revoked", "expired", "unknown"]
    token: RefreshTokenRecord | None = None  # the new token when rotated, else the presented one


class RefreshTokenRepository:
    """Refresh-token families and their rotating tokens, by digest (AUTH 24, 25)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def start_family(
        self,
        *,
        family_id: str,
        token_hash: str,
        client_id: str,
        user_id: str,
        scope: Sequence[str],
        resource: Sequence[str],
        absolute_expires_at: datetime,
        code_hash: str | None = None,
    ) -> RefreshTokenRecord:
        """Record a new grant and its first refresh token (RT0)."""
        now = self.store.now()
        family = {
            "id": family_id,
            "client_id": client_id,
            "user_id": user_id,
            "scope": list(scope),
            "resource": list(resource),
            "code_hash": code_hash,
            "created_at": now,
            "absolute_expires_at": absolute_expires_at,
            "revoked_at": None,
            "revoked_reason": None,
        }
        token = {
            "token_hash": token_hash,
            "family_id": family_id,
            "client_id": client_id,
            "user_id": user_id,
            "scope": list(scope),
            "resource": list(resource),
            "created_at": now,
            "expires_at": absolute_expires_at,
            "spent_at": None,
            "revoked_at": None,
        }
        try:
            async with self.store.begin() as conn:
                await conn.execute(insert(refresh_token_families).values(**family))
                await conn.execute(insert(refresh_tokens).values(**token))
        except IntegrityError as exc:
            raise ConflictError("the grant's client or user does not exist") from exc
        return RefreshTokenRecord.from_row(token)

    async def get_family(self, family_id: str) -> GrantRecord | None:
        """The grant (refresh-token family) with this id, or None."""
        fam = refresh_token_families
        async with self.store.connect() as conn:
            row = (await conn.execute(select(fam).where(fam.c.id == family_id))).mappings().first()
        return None if row is None else GrantRecord.from_row(row)

    async def get(self, token_hash: str) -> RefreshTokenRecord | None:
        """The refresh token with this digest, or None."""
        async with self.store.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else RefreshTokenRecord.from_row(row)

    async def rotate(self, token_hash: str, new_token_hash: str) -> Rotation:
        """Spend ``token_hash`` and issue ``new_token_hash`` in its family, atomically.

        The new token keeps the family's scope and resource and its absolute expiry: a
        refresh never widens or extends a grant. Presenting a spent token revokes the family.
        """
        now = self.store.now()
        rt, fam = refresh_tokens, refresh_token_families
        alive_family = (
            select(fam.c.id).where(fam.c.id == rt.c.family_id, fam.c.revoked_at.is_(None)).exists()
        )
        async with self.store.begin() as conn:
            spent = await conn.execute(
                update(rt)
                .where(
                    rt.c.token_hash == token_hash,
                    rt.c.spent_at.is_(None),
                    rt.c.revoked_at.is_(None),
                    rt.c.expires_at > now,
                    alive_family,
                )
                .values(spent_at=now)
            )
            row = (await conn.execute(select(rt).where(rt.c.token_hash == token_hash))).mappings()
            found = row.first()
            if found is None:
                return Rotation("unknown")
            old = RefreshTokenRecord.from_row(found)
            if spent.rowcount == 1:
                new = {
                    "token_hash": new_token_hash,
                    "family_id": old.family_id,
                    "client_id": old.client_id,
                    "user_id": old.user_id,
                    "scope": list(old.scope),
                    "resource": list(old.resource),
                    "created_at": now,
                    "expires_at": old.expires_at,
                    "spent_at": None,
                    "revoked_at": None,
                }
                await conn.execute(insert(rt).values(**new))
                return Rotation("rotated", RefreshTokenRecord.from_row(new))
            if old.spent_at is not None and old.revoked_at is None:
                # A spent token came back: either the client or an attacker holds a copy.
                # Nobody can tell which, so the whole family dies (RFC 9700 §4.14.2).
                await revoke_families(conn, fam.c.id == old.family_id, now=now, reason="reuse")
                return Rotation("reused", old)
            if old.expires_at <= now and old.revoked_at is None:
                return Rotation("expired", old)
            return Rotation("revoked", old)

    async def revoke(self, token_hash: str, *, reason: str = "revoked") -> bool:
        """Revoke the family of a refresh token (RFC 7009 §2.1); False when unknown."""
        now = self.store.now()
        fam = refresh_token_families
        family_of = (
            select(refresh_tokens.c.family_id)
            .where(refresh_tokens.c.token_hash == token_hash)
            .scalar_subquery()
        )
        async with self.store.begin() as conn:
            found = await conn.execute(
                select(refresh_tokens.c.family_id).where(refresh_tokens.c.token_hash == token_hash)
            )
            if found.first() is None:
                return False
            await revoke_families(conn, fam.c.id == family_of, now=now, reason=reason)
        return True

    async def revoke_family(self, family_id: str, *, reason: str = "revoked") -> None:
        """Revoke a grant: its refresh tokens and its access tokens."""
        now = self.store.now()
        async with self.store.begin() as conn:
            await revoke_families(
                conn, refresh_token_families.c.id == family_id, now=now, reason=reason
            )


class AccessTokenRepository:
    """Issued access tokens by ``jti`` and the denylist of revoked ones (AUTH 26)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(
        self,
        jti: str,
        *,
        expires_at: datetime,
        client_id: str | None = None,
        user_id: str | None = None,
        family_id: str | None = None,
    ) -> None:
        """Note an issued token, so revoking its grant, client or user can deny it."""
        async with self.store.begin() as conn:
            await conn.execute(
                insert(access_tokens).values(
                    jti=jti,
                    client_id=client_id,
                    user_id=user_id,
                    family_id=family_id,
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )

    async def revoke(self, jti: str, *, expires_at: datetime) -> None:
        """Deny ``jti`` until ``expires_at``, recorded or not (idempotent)."""
        now = self.store.now()
        at = access_tokens
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(at).where(at.c.jti == jti, at.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            if result.rowcount == 0:
                exists = await conn.execute(select(at.c.jti).where(at.c.jti == jti))
                if exists.first() is None:
                    await conn.execute(
                        insert(at).values(jti=jti, expires_at=expires_at, revoked_at=now)
                    )

    async def is_revoked(self, jti: str) -> bool:
        """True while a revoked token has not expired yet."""
        now = self.store.now()
        at = access_tokens
        async with self.store.connect() as conn:
            found = await conn.execute(
                select(at.c.jti).where(
                    at.c.jti == jti, at.c.revoked_at.is_not(None), at.c.expires_at > now
                )
            )
            return found.first() is not None

    async def revoked_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """``(jti, exp)`` of tokens revoked after ``since`` and still unexpired: what a
        verifier's cache must forget."""
        now = self.store.now()
        at = access_tokens
        async with self.store.connect() as conn:
            rows = await conn.execute(
                select(at.c.jti, at.c.expires_at).where(
                    at.c.revoked_at > since, at.c.expires_at > now
                )
            )
            return [(r.jti, r.expires_at) for r in rows]


PURGE_LOCK_NAMESPACE = b"apishield-purge|"


def purge_lock_key(store: Store) -> int:
    """The PostgreSQL advisory-lock key that makes purges exclusive: one per schema, so two
    deployments sharing a database (in separate schemas) never wait on each other."""
    schema = (store.location.schema or "public").encode()
    digest = hashlib.sha256(PURGE_LOCK_NAMESPACE + schema).digest()
    return int.from_bytes(digest[:8], "big", signed=True)  # advisory keys are signed bigints


async def purge_expired(
    store: Store, *, code_retention: timedelta = timedelta(days=1)
) -> int | None:
    """Delete what can no longer matter: expired access tokens, families past their absolute
    expiry (with their tokens), and codes expired for longer than ``code_retention`` (kept
    that long so that a late replay is still recognised and revokes its grant). Returns the
    number of rows removed.

    On PostgreSQL the purge holds a transaction-level advisory lock; when another instance
    holds it (it is purging now), nothing is done and None is returned, so N gateways never
    delete the same rows at once. SQLite has one writer at a time anyway: it always runs.
    """
    now = store.now()
    removed = 0
    async with store.begin() as conn:
        if store.location.backend == "postgresql":
            key = purge_lock_key(store)
            locked = await conn.scalar(select(func.pg_try_advisory_xact_lock(key)))
            if not locked:
                return None
        for statement in (
            delete(access_tokens).where(access_tokens.c.expires_at <= now),
            delete(authorization_codes).where(
                authorization_codes.c.expires_at <= now - code_retention
            ),
            delete(refresh_tokens).where(refresh_tokens.c.expires_at <= now),
            delete(refresh_token_families).where(
                refresh_token_families.c.absolute_expires_at <= now
            ),
        ):
            result = await conn.execute(statement)
            removed += int(result.rowcount or 0)
    return removed
