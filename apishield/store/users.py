"""Users of the built-in authorization server's login page.

Passwords are stored with Argon2id (m = 19 MiB, t = 2, p = 1) and rehashed at the next good
sign-in when the parameters change (AUTH 17). Signing in as an unknown user costs the same
hash verification as a wrong password, so neither the answer nor its timing tells them apart
(AUTH 22). Disabling a user revokes all of their grants in the same transaction (AUTH 28).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from apishield.store.errors import ConflictError, InvalidRecordError, NotFoundInStoreError
from apishield.store.grants import revoke_all_grants
from apishield.store.hashing import hash_secret, needs_rehash, verify_secret
from apishield.store.records import UserRecord
from apishield.store.tables import users

if TYPE_CHECKING:
    from apishield.store.engine import Store

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # Argon2 takes any length; an upper bound stops hash-flooding requests


def validate_password(password: str) -> None:
    """At least 12 characters (NIST SP 800-63B §3.1.1.2 asks for 8; ASVS 5.0 6.2.1 for 12)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidRecordError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidRecordError(f"the password is longer than {MAX_PASSWORD} characters")


class UserRepository:
    """Users: create, look up, authenticate, disable."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self, username: str, password: str, *, roles: Sequence[str] = ()
    ) -> UserRecord:
        """Store a user with an Argon2id hash of ``password``; the password is not kept."""
        if not _USERNAME.match(username):
            raise InvalidRecordError(
                f"{username!r} is not a username (letters, digits and . _ @ + -)"
            )
        for role in roles:
            if not _ROLE.match(role):
                raise InvalidRecordError(f"{role!r} is not a role name")
        validate_password(password)
        values = {
            "id": secrets.token_hex(12),
            "username": username,
            "password_hash": await hash_secret(password),
            "roles": list(roles),
            "created_at": self.store.now(),
            "disabled": False,
        }
        try:
            async with self.store.begin() as conn:
                await conn.execute(insert(users).values(**values))
        except IntegrityError as exc:
            raise ConflictError(f"the username {username!r} is taken") from exc
        return UserRecord.from_row(values)

    async def get(self, user_id: str) -> UserRecord | None:
        """The user with this id, or None."""
        async with self.store.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings()
            found = row.first()
        return None if found is None else UserRecord.from_row(found)

    async def get_by_username(self, username: str) -> UserRecord | None:
        """The user with this username, or None."""
        async with self.store.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).mappings()
            found = row.first()
        return None if found is None else UserRecord.from_row(found)

    async def all(self) -> list[UserRecord]:
        """Every user, by username."""
        async with self.store.connect() as conn:
            rows = await conn.execute(select(users).order_by(users.c.username))
            return [UserRecord.from_row(r) for r in rows.mappings()]

    async def authenticate(self, username: str, password: str) -> UserRecord | None:
        """The user when the password is right and the account enabled; else None."""
        if len(password) > MAX_PASSWORD:
            return None
        user = await self.get_by_username(username)
        encoded = user.password_hash if user is not None else None
        if not await verify_secret(encoded, password) or user is None or encoded is None:
            return None
        if user.disabled:
            return None
        if needs_rehash(encoded):
            await self.set_password(user.id, password)
        return user

    async def set_password(self, user_id: str, password: str) -> None:
        """Replace the user's password hash (the password is checked for length first)."""
        validate_password(password)
        encoded = await hash_secret(password)
        async with self.store.begin() as conn:
            result = await conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=encoded)
            )
            if result.rowcount == 0:
                raise NotFoundInStoreError("no such user")

    async def disable(self, username: str) -> UserRecord:
        """Disable the user and revoke every grant they hold, in one transaction (AUTH 28)."""
        async with self.store.begin() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).mappings()
            found = row.first()
            if found is None:
                raise NotFoundInStoreError(f"no such user {username!r}")
            user = UserRecord.from_row(found)
            await conn.execute(update(users).where(users.c.id == user.id).values(disabled=True))
            await revoke_all_grants(
                conn, now=self.store.now(), reason="user_disabled", user_id=user.id
            )
        return UserRecord.from_row({**found, "disabled": True})
