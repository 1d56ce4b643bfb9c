"""Where limit counters and bans live, behind two small ABCs; chosen by URL.

``memory://`` keeps them in the process (exact within it, bounded in size); ``redis://`` keeps
them in Redis, shared by every gateway process (atomic scripts, one round trip per request).

Key layout (``Check.key``): ``<prefix>{<partition>}:<rule>:<kind>``. The partition in braces
is the Redis Cluster hash tag: every counter of one caller (one IP, one principal, one route)
lands in one slot, so the checks of one caller run in one script. Subjects are hashed into the
key: the store never holds a principal or an address in clear, and keys stay short.

Semantics every storage keeps: ``apply`` evaluates the checks of one partition together and
writes them only when all allow (all or nothing), and answers every partition of a call in one
round trip. A refusal never consumes anything in its own partition.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from apishield.errors import ApiShieldError, ConfigError

CheckKind = Literal["gcra", "sliding", "fixed", "concurrency"]


class StorageUnavailable(ApiShieldError):
    """The shared storage did not answer in time or failed; carries no library message."""

    def __init__(self, storage: str, reason: str) -> None:
        self.storage = storage
        self.reason = reason  # the kind of failure: "timeout", "connection lost"...
        super().__init__(f"{storage}: {reason}")


class Check(NamedTuple):
    """One counter to test and, when the whole partition allows, to update.

    ``a`` and ``b`` by kind: gcra — emission interval (µs), burst; sliding and fixed — window
    (µs), limit; concurrency — lease (µs), limit, with ``member`` naming the lease.
    """

    key: str
    kind: CheckKind
    a: int
    b: int
    member: str = ""
    cost: int = 1
    dry: bool = False  # decide only: never written, even when the partition allows

    @property
    def partition(self) -> str:
        start = self.key.find("{")
        end = self.key.find("}", start + 1)
        return self.key[start + 1 : end] if start >= 0 and end > start else self.key


class Outcome(NamedTuple):
    """A check's answer. ``applied``: it was written (its partition allowed everything)."""

    allowed: bool
    applied: bool
    remaining: int
    reset: float  # seconds until the limit is whole again
    retry_after: float  # seconds until a refused request would be allowed; 0 when allowed


@dataclass(frozen=True, slots=True)
class BanRecord:
    """A stored ban: ``subject`` is ``ip:ADDRESS``, ``ip:NETWORK/BITS`` or ``principal:KEY``."""

    subject: str
    reason: str
    created: float  # unix time
    expires: float  # unix time


def partitions(checks: Sequence[Check]) -> dict[str, list[int]]:
    """Indexes of ``checks`` grouped by partition, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, check in enumerate(checks):
        groups.setdefault(check.partition, []).append(i)
    return groups


def subject_hash(value: str) -> str:
    """A short, stable digest of a subject (address, principal key, route) for storage keys."""
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def display_url(url: str) -> str:
    """``url`` without credentials, safe to log."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class LimitStorage(ABC):
    """Counters for rate limits, quotas and concurrency."""

    url: str = ""

    @abstractmethod
    async def apply(self, checks: Sequence[Check]) -> list[Outcome]:
        """Test and update ``checks``; outcomes in the same order. Raises ``StorageUnavailable``.

        A ``dry`` check takes part in its partition's decision but is never written.
        """

    @abstractmethod
    async def refund(self, checks: Sequence[Check]) -> None:
        """Give back what applied checks consumed (concurrency checks release their lease)."""

    async def ping(self) -> None:  # noqa: B027 - an in-process storage is always there
        """Raise ``StorageUnavailable`` when the storage cannot be reached."""

    async def aclose(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections and tasks."""


class BanStorage(ABC):
    """The shared ban list: a mapping of subject to ``BanRecord`` with a change counter."""

    url: str = ""

    @abstractmethod
    async def ban_put(self, record: BanRecord) -> None: ...

    @abstractmethod
    async def ban_delete(self, subject: str) -> bool:
        """Remove a ban; False when there was none."""

    @abstractmethod
    async def ban_load(self) -> tuple[int, list[BanRecord]]:
        """The change counter and every unexpired ban (expired ones are purged)."""

    @abstractmethod
    async def ban_version(self) -> int:
        """The change counter alone: cheap to poll, moves on every put and delete."""


class Storage(LimitStorage, BanStorage):
    """Both roles, which every built-in storage plays."""


def open_storage(
    url: str,
    *,
    timeout: float = 0.1,
    max_keys: int = 1_000_000,
    key_prefix: str = "apishield:",
) -> Storage:
    """The storage for ``url`` (``memory://`` or ``redis://…``); raises ``ConfigError``."""
    if url == "memory://":
        from apishield.ratelimit.memory import MemoryStorage

        return MemoryStorage(max_keys=max_keys)
    if url.startswith(("redis://", "rediss://")):
        from apishield.ratelimit.redisstore import RedisStorage

        return RedisStorage(url, timeout=timeout, key_prefix=key_prefix)
    raise ConfigError(f"{display_url(url)!r}: limits need memory:// or redis://HOST:PORT/DB")
