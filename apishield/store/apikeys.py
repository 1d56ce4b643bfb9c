"""API keys as stored: the keyed digest, a display prefix, the last four characters (AUTH 30).

The key itself is never written: ``apishield.identity.apikeys`` makes it, shows it once and
hands this repository its HMAC-SHA-256 digest. Lookups go by digest (a unique index).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from apishield.store.errors import ConflictError, NotFoundInStoreError
from apishield.store.records import ApiKeyRecord
from apishield.store.tables import api_keys

if TYPE_CHECKING:
    from apishield.store.engine import Store


class ApiKeyRepository:
    """API key records: create, find by digest, list, roll, revoke, note last use."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self,
        *,
        key_id: str,
        owner: str,
        digest: str,
        environment: str,
        display_prefix: str,
        last4: str,
        scopes: Sequence[str] = (),
        ip_allowlist: Sequence[str] = (),
        expires_at: datetime | None = None,
        name: str | None = None,
    ) -> ApiKeyRecord:
        """Store a new key's record; ``ConflictError`` when the id or digest exists."""
        values = self._values(
            key_id=key_id,
            owner=owner,
            digest=digest,
            environment=environment,
            display_prefix=display_prefix,
            last4=last4,
            scopes=scopes,
            ip_allowlist=ip_allowlist,
            expires_at=expires_at,
            name=name,
        )
        try:
            async with self.store.begin() as conn:
                await conn.execute(insert(api_keys).values(**values))
        except IntegrityError as exc:
            raise ConflictError("an API key with this id or digest exists") from exc
        return ApiKeyRecord.from_row(values)

    def _values(
        self,
        *,
        key_id: str,
        owner: str,
        digest: str,
        environment: str,
        display_prefix: str,
        last4: str,
        scopes: Sequence[str],
        ip_allowlist: Sequence[str],
        expires_at: datetime | None,
        name: str | None,
    ) -> dict[str, Any]:
        return {
            "id": key_id,
            "owner": owner,
            "name": name,
            "environment": environment,
            "display_prefix": display_prefix,
            "last4": last4,
            "digest": digest,
            "scopes": list(scopes),
            "ip_allowlist": list(ip_allowlist),
            "expires_at": expires_at,
            "created_at": self.store.now(),
            "last_used_at": None,
            "revoked_at": None,
            "grace_expires_at": None,
            "replaced_by": None,
        }

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, or None."""
        async with self.store.connect() as conn:
            rows = await conn.execute(select(api_keys).where(api_keys.c.id == key_id))
            row = rows.mappings().first()
        return None if row is None else ApiKeyRecord.from_row(row)

    async def get_by_digest(self, digest: str) -> ApiKeyRecord | None:
        """The key whose HMAC digest this is, or None (the hot-path lookup)."""
        async with self.store.connect() as conn:
            rows = await conn.execute(select(api_keys).where(api_keys.c.digest == digest))
            row = rows.mappings().first()
        return None if row is None else ApiKeyRecord.from_row(row)

    async def all(self, *, owner: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of ``owner``), oldest first."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if owner is not None:
            query = query.where(api_keys.c.owner == owner)
        async with self.store.connect() as conn:
            rows = await conn.execute(query)
            return [ApiKeyRecord.from_row(r) for r in rows.mappings()]

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        """Revoke now (idempotent: a revoked key keeps its first revocation time)."""
        now = self.store.now()
        async with self.store.begin() as conn:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            rows = await conn.execute(select(api_keys).where(api_keys.c.id == key_id))
            row = rows.mappings().first()
        if row is None:
            raise NotFoundInStoreError(f"no such API key {key_id!r}")
        return ApiKeyRecord.from_row(row)

    async def roll(
        self,
        old_id: str,
        *,
        new_key_id: str,
        digest: str,
        display_prefix: str,
        last4: str,
        grace: timedelta,
    ) -> ApiKeyRecord:
        """Store a successor of ``old_id`` with the same owner, scopes, expiry and allowlist,
        and give the old key ``grace`` to live (zero revokes it now), in one transaction."""
        now = self.store.now()
        async with self.store.begin() as conn:
            rows = await conn.execute(select(api_keys).where(api_keys.c.id == old_id))
            found = rows.mappings().first()
            if found is None:
                raise NotFoundInStoreError(f"no such API key {old_id!r}")
            old = ApiKeyRecord.from_row(found)
            state = old.state(now)
            if state != "active":
                raise ConflictError(f"API key {old_id!r} is {state}: only an active key rolls")
            changes: dict[str, Any] = {"replaced_by": new_key_id}
            if grace > timedelta(0):
                changes["grace_expires_at"] = now + grace
            else:
                changes["revoked_at"] = now
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == old_id, api_keys.c.replaced_by.is_(None))
                .values(**changes)
            )
            if result.rowcount != 1:
                raise ConflictError(f"API key {old_id!r} was rolled at the same time")
            values = self._values(
                key_id=new_key_id,
                owner=old.owner,
                digest=digest,
                environment=old.environment,
                display_prefix=display_prefix,
                last4=last4,
                scopes=old.scopes,
                ip_allowlist=old.ip_allowlist,
                expires_at=old.expires_at,
                name=old.name,
            )
            try:
                await conn.execute(insert(api_keys).values(**values))
            except IntegrityError as exc:
                raise ConflictError("an API key with this id or digest exists") from exc
        return ApiKeyRecord.from_row(values)

    async def touch(self, key_id: str, *, every: timedelta = timedelta(minutes=1)) -> bool:
        """Set ``last_used_at`` unless it was set less than ``every`` ago, so a busy key costs
        one small write a minute however many instances serve it. True when written."""
        now = self.store.now()
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == key_id,
                    or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < now - every),
                )
                .values(last_used_at=now)
            )
        return result.rowcount == 1
