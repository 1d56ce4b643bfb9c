"""Store queries the authorization server needs beyond the store's repositories.

SQLAlchemy Core over the store's own tables, bound parameters only, through ``Store.connect``
and ``Store.begin`` so that a failing database is ``StoreUnavailableError`` (fail closed).

- ``get_code``: read an authorization code by digest without redeeming it, so that the token
  endpoint can start the grant *before* redeeming (see ``grants.py``: a replay racing the
  first redemption then still finds a grant to revoke).
- ``remember_assertion``: RFC 7523 §3 item 7 replay protection for ``private_key_jwt``. A
  client assertion's ``jti`` is recorded until its ``exp`` as a row of ``access_tokens``
  (the store's table of JWT ids), under an id no access token can have: the SHA-256 of
  ``client-assertion|<client>|<jti>`` (64 hex digits, where our own jtis are 22 base64url
  characters). The primary key makes the check atomic across gateway instances, and
  ``purge_expired`` removes the rows with the other expired ones. A dedicated table would be
  tidier; this keeps the schema as it is.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from apishield.store.records import AuthorizationCodeRecord
from apishield.store.tables import access_tokens, authorization_codes

if TYPE_CHECKING:
    from apishield.store.engine import Store


async def get_code(store: Store, code_hash: str) -> AuthorizationCodeRecord | None:
    """The authorization code with this digest, used or not, or None."""
    codes = authorization_codes
    async with store.connect() as conn:
        row = (
            (await conn.execute(select(codes).where(codes.c.code_hash == code_hash)))
            .mappings()
            .first()
        )
    return None if row is None else AuthorizationCodeRecord.from_row(row)


def assertion_id(client_id: str, jti: str) -> str:
    """The row id under which a client assertion's ``jti`` is remembered."""
    return hashlib.sha256(f"client-assertion|{client_id}|{jti}".encode()).hexdigest()


async def remember_assertion(
    store: Store, *, client_id: str, jti: str, expires_at: datetime
) -> bool:
    """Record a client assertion's ``jti`` until ``expires_at``; False when it was seen."""
    try:
        async with store.begin() as conn:
            await conn.execute(
                insert(access_tokens).values(
                    jti=assertion_id(client_id, jti),
                    client_id=None,  # not the client's: deleting it must not drop the record
                    user_id=None,
                    family_id=None,
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
    except IntegrityError:
        return False
    return True
