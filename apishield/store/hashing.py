"""Hashes of secrets at rest.

- Passwords and client secrets: Argon2id (RFC 9106) with m = 19 MiB, t = 2, p = 1, the OWASP
  minimum that AUTH 17 asks for. Hashing takes tens of milliseconds of CPU, so it runs in a
  worker thread and never stalls the event loop.
- High-entropy tokens (API keys, refresh tokens, authorization codes): HMAC-SHA-256 with a
  pepper derived from the secret key (AUTH 24, 30). A slow hash buys nothing for 128+ random
  bits, and the pepper makes a stolen table useless without the key file.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def hash_secret_sync(secret: str) -> str:
    """Argon2id hash of ``secret`` (an encoded string with its own salt and parameters)."""
    return _hasher.hash(secret)


async def hash_secret(secret: str) -> str:
    """``hash_secret_sync`` in a worker thread."""
    return await asyncio.to_thread(_hasher.hash, secret)


def verify_secret_sync(encoded: str, secret: str) -> bool:
    """True when ``secret`` matches ``encoded``; argon2 compares in constant time."""
    try:
        return _hasher.verify(encoded, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_secret(encoded: str | None, secret: str) -> bool:
    """``verify_secret_sync`` in a worker thread. With ``encoded=None`` (unknown user or
    client) a hash is still verified, so the answer takes as long as for a known name."""
    return await asyncio.to_thread(verify_secret_sync, encoded or _dummy_hash(), secret) and (
        encoded is not None
    )


def needs_rehash(encoded: str) -> bool:
    """True when ``encoded`` was made with other parameters than today's (AUTH 17)."""
    try:
        return _hasher.check_needs_rehash(encoded)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("apishield: no such account")


def token_digest(pepper: bytes, token: str) -> str:
    """HMAC-SHA-256(pepper, token) as 64 hex digits: how keys and tokens are looked up."""
    return hmac.new(pepper, token.encode("utf-8"), hashlib.sha256).hexdigest()
