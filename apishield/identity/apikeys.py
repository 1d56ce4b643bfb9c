"""API keys (AUTH 29-32): format, issuing, rolling, revoking, and the verifier.

A key reads ``<prefix>_<30 base62 characters><6 base62 characters of CRC32>``, for example
``ask_live_…``. The 30 random characters carry ~178 bits (AUTH 29 asks for ≥ 128). The prefix
names the environment, and the checksum lets secret scanners (and this module) recognise a real
key without a lookup: a key whose checksum fails is refused before the store is asked.

Only HMAC-SHA-256(pepper, key) is stored, with a display prefix and the last four characters;
the key is returned once, when issued. The trust assumption: the pepper (derived from the
secret key) is not in the database, so a stolen table cannot be matched against guesses.

The verifier caches verified records in memory, bounded (LRU) and for ``cache_ttl`` seconds
(default 5 s): the hot path asks the store about a key at most once per TTL per process, and a
revocation made elsewhere (another gateway, ``apishield apikeys revoke``) takes effect within
that TTL at most — the same 5 s bound as revoked access tokens (``RevocationList``). The cost
is one indexed lookup per active key per process every 5 s. Expiry and IP allowlists are
checked on every request, cached or not.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apishield.errors import HTTPError, StoreUnavailableError
from apishield.identity.principal import Principal
from apishield.identity.verifier import ApiKeyVerifier
from apishield.store.errors import InvalidRecordError
from apishield.store.hashing import token_digest
from apishield.store.records import ApiKeyRecord

if TYPE_CHECKING:
    from apishield.store.engine import Store

logger = logging.getLogger("apishield.identity.apikeys")

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 30
CHECKSUM_CHARS = 6  # 62**6 > 2**32: every CRC32 value fits
MAX_KEY_LENGTH = 128  # anything longer is refused before any work
API_KEY_ISSUER = "apikey"
DEFAULT_CACHE_TTL = 5.0
_BASE62_SET = frozenset(BASE62)
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3
_OWNER = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ApiKeyRefusal(HTTPError):
    """A refused API key. ``reason`` (format, checksum, unknown, revoked, expired, ip) goes to
    the log only; the client sees the code."""

    status = 401
    code = "api_key_invalid"
    title = "Unauthorized"

    def __init__(self, reason: str, *, code: str = "api_key_invalid", status: int = 401) -> None:
        super().__init__(
            code=code,
            status=status,
            hint=_HINTS.get(code),
            headers={"WWW-Authenticate": 'ApiKey realm="apishield"'} if status == 401 else None,
        )
        self.reason = reason


_HINTS = {
    "api_key_invalid": "the API key is malformed, unknown or revoked",
    "api_key_expired": "the API key has expired (or its grace period after a roll ended)",
    "api_key_ip_not_allowed": "the API key may not be used from this address",
}


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_CHARS)


def environment_of(prefix: str) -> str:
    """``ask_live`` → ``live``."""
    return prefix.rpartition("_")[2]


def generate_api_key(prefix: str) -> str:
    """A new key: ``prefix``, an underscore, 30 random base62 characters, a CRC32 checksum."""
    body = f"{prefix}_" + "".join(secrets.choice(BASE62) for _ in range(RANDOM_CHARS))
    return body + _checksum(body)


def checksum_ok(candidate: str, prefix: str) -> bool:
    """True when ``candidate`` has the shape and a correct checksum of a ``prefix`` key."""
    head = f"{prefix}_"
    if len(candidate) != len(head) + RANDOM_CHARS + CHECKSUM_CHARS:
        return False
    if not candidate.startswith(head):
        return False
    tail = candidate[len(head) :]
    if not _BASE62_SET.issuperset(tail):
        return False
    body, check = candidate[:-CHECKSUM_CHARS], candidate[-CHECKSUM_CHARS:]
    return hmac.compare_digest(_checksum(body), check)


def parse_api_key(key: str, *, prefix: str) -> None:
    """Raise ``ApiKeyRefusal`` unless ``key`` is a well-formed ``prefix`` key (no I/O)."""
    if len(key) > MAX_KEY_LENGTH or not key.isascii():
        raise ApiKeyRefusal("format")
    if not key.startswith(f"{prefix}_"):
        raise ApiKeyRefusal("prefix")
    if not checksum_ok(key, prefix):
        raise ApiKeyRefusal("checksum")


def find_api_keys(text: str, prefix: str) -> bool:
    """True when ``text`` (a URL, a query string) contains a checksum-valid ``prefix`` key."""
    head = f"{prefix}_"
    start = text.find(head)
    size = len(head) + RANDOM_CHARS + CHECKSUM_CHARS
    while start != -1:
        if checksum_ok(text[start : start + size], prefix):
            return True
        start = text.find(head, start + 1)
    return False


def check_api_key_record(
    record: ApiKeyRecord, networks: Sequence[Network], *, now: datetime, client_ip: str
) -> None:
    """Raise ``ApiKeyRefusal`` when the stored key may not be used now, from ``client_ip``."""
    if record.revoked_at is not None and record.revoked_at <= now:
        raise ApiKeyRefusal("revoked")
    expiry = record.effective_expiry()
    if expiry is not None and expiry <= now:
        reason = "grace_expired" if expiry == record.grace_expires_at else "expired"
        raise ApiKeyRefusal(reason, code="api_key_expired")
    if networks and not _address_allowed(client_ip, networks):
        raise ApiKeyRefusal("ip", code="api_key_ip_not_allowed", status=403)


def _address_allowed(client_ip: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False  # no usable address: an allowlist cannot be satisfied
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def parse_allowlist(cidrs: Sequence[str]) -> list[Network]:
    """CIDRs (or single addresses) as networks; ``InvalidRecordError`` names a bad one."""
    networks: list[Network] = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise InvalidRecordError(f"{cidr!r} is not an IP address or CIDR block") from None
    return networks


def principal_for(record: ApiKeyRecord) -> Principal:
    """The principal an API key stands for: its owner, its scopes, no roles (AUTH 31)."""
    expiry = record.effective_expiry()
    return Principal(
        issuer=API_KEY_ISSUER,
        subject=record.owner,
        kind="api_key",
        scopes=frozenset(record.scopes),
        credential_id=record.id,
        expires_at=expiry.timestamp() if expiry is not None else None,
        claims={"environment": record.environment},
    )


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A key as issued: ``key`` exists here and nowhere else; show it once."""

    key: str = field(repr=False)
    record: ApiKeyRecord


class ApiKeyManager:
    """Issues, rolls, revokes and lists API keys in ``store`` (AUTH 29-31)."""

    def __init__(self, store: Store, *, pepper: bytes, prefix: str) -> None:
        self.store = store
        self.pepper = pepper
        self.prefix = prefix

    def _new(self) -> tuple[str, str, dict[str, str]]:
        key = generate_api_key(self.prefix)
        key_id = f"key_{secrets.token_hex(8)}"
        shown = {
            "digest": token_digest(self.pepper, key),
            "display_prefix": key[: len(self.prefix) + 5],
            "last4": key[-4:],
        }
        return key, key_id, shown

    async def create(
        self,
        owner: str,
        *,
        scopes: Sequence[str] = (),
        expires_at: datetime | None = None,
        ip_allowlist: Sequence[str] = (),
        name: str | None = None,
    ) -> IssuedApiKey:
        """A new key for ``owner``. With no scopes it passes only public routes."""
        if not _OWNER.match(owner):
            raise InvalidRecordError("the owner must be 1-200 printable characters")
        for scope in scopes:
            if not _SCOPE_TOKEN.match(scope):
                raise InvalidRecordError(f"{scope!r} is not a scope token (RFC 6749 §3.3)")
        networks = parse_allowlist(ip_allowlist)
        if expires_at is not None and expires_at <= self.store.now():
            raise InvalidRecordError("the expiry is in the past")
        key, key_id, shown = self._new()
        record = await self.store.api_keys.create(
            key_id=key_id,
            owner=owner,
            environment=environment_of(self.prefix),
            scopes=scopes,
            ip_allowlist=[str(n) for n in networks],
            expires_at=expires_at,
            name=name,
            **shown,
        )
        logger.info("API key %s created for owner %r", record.id, owner)
        return IssuedApiKey(key, record)

    async def roll(self, key_id: str, *, grace: timedelta = timedelta(hours=24)) -> IssuedApiKey:
        """A successor with the same owner, scopes, expiry and allowlist; the old key keeps
        working for ``grace`` (zero: revoked at once) so clients can switch (AUTH 31)."""
        key, new_id, shown = self._new()
        record = await self.store.api_keys.roll(key_id, new_key_id=new_id, grace=grace, **shown)
        logger.info("API key %s rolled to %s (grace %ss)", key_id, new_id, grace.total_seconds())
        return IssuedApiKey(key, record)

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        """Revoke a key now; running verifiers notice within their cache TTL."""
        record = await self.store.api_keys.revoke(key_id)
        logger.info("API key %s revoked", key_id)
        return record

    async def all(self, *, owner: str | None = None) -> list[ApiKeyRecord]:
        """Every key's record (of ``owner``); never the keys themselves."""
        return await self.store.api_keys.all(owner=owner)


@dataclass(slots=True)
class _Entry:
    record: ApiKeyRecord
    networks: list[Network]
    fetched: float
    touched: float | None = None


class StoreApiKeyVerifier(ApiKeyVerifier):
    """Verifies API keys against the store, with a small in-memory cache.

    ``cache_ttl`` bounds how long a revocation made by another process can go unnoticed;
    ``cache_size`` bounds memory (least recently used entries go first). Entries are keyed by
    the keyed digest, so the cache holds no key. A store failure on a cache miss raises
    ``StoreUnavailableError`` (503): a key is never accepted unverified.
    """

    def __init__(
        self,
        store: Store,
        *,
        pepper: bytes,
        prefix: str,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = 10_000,
        touch_every: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl < 0 or cache_size < 0:
            raise ValueError("cache_ttl and cache_size cannot be negative")
        self.store = store
        self.pepper = pepper
        self.prefix = prefix
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.touch_every = touch_every
        self.monotonic = monotonic
        self._cache: OrderedDict[str, _Entry] = OrderedDict()

    async def verify_api_key(self, key: str, *, client_ip: str) -> Principal:
        """The key's principal, or ``ApiKeyRefusal``; the checksum is checked before any
        lookup, and the stored digest is compared in constant time (AUTH 30)."""
        parse_api_key(key, prefix=self.prefix)
        digest = token_digest(self.pepper, key)
        entry = await self._lookup(digest)
        check_api_key_record(
            entry.record, entry.networks, now=self.store.now(), client_ip=client_ip
        )
        await self._touch(entry)
        return principal_for(entry.record)

    async def _lookup(self, digest: str) -> _Entry:
        now = self.monotonic()
        entry = self._cache.get(digest)
        if entry is not None and now - entry.fetched < self.cache_ttl:
            self._cache.move_to_end(digest)
            return entry
        record = await self.store.api_keys.get_by_digest(digest)
        # The index found the row by digest; comparing again in constant time keeps the
        # decision independent of how any backend compares strings.
        if record is None or not hmac.compare_digest(record.digest, digest):
            self._cache.pop(digest, None)
            raise ApiKeyRefusal("unknown")
        fresh = _Entry(
            record,
            parse_allowlist(record.ip_allowlist),
            now,
            entry.touched if entry is not None else None,
        )
        if self.cache_size:
            self._cache[digest] = fresh
            self._cache.move_to_end(digest)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return fresh

    async def _touch(self, entry: _Entry) -> None:
        now = self.monotonic()
        if entry.touched is not None and now - entry.touched < self.touch_every:
            return
        entry.touched = now
        try:
            await self.store.api_keys.touch(
                entry.record.id, every=timedelta(seconds=self.touch_every)
            )
        except StoreUnavailableError:
            # Last-use time is bookkeeping: the key was verified, the request goes on.
            logger.warning("could not note the last use of API key %s", entry.record.id)

    def forget(self, key_id: str | None = None) -> None:
        """Drop one key (or every key) from the cache, e.g. right after revoking it here."""
        if key_id is None:
            self._cache.clear()
            return
        for digest in [d for d, e in self._cache.items() if e.record.id == key_id]:
            del self._cache[digest]
