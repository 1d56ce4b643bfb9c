"""``memory://``: counters and bans in this process; exact within it, bounded in size.

Exact because the event loop runs one ``apply`` at a time to completion (no ``await`` inside),
which is what Redis's single-threaded script execution gives the shared storage. Bounded
because every counter carries an expiry and lives in a one-second expiry bucket: each call
drops the buckets that have passed, and past ``max_keys`` the counters closest to expiring are
dropped first (they hold the least: a GCRA counter about to expire is a nearly full bucket).
Without the bound, a flood of distinct callers (IPv6 makes addresses cheap) would grow memory
without limit. It also serves as the per-process fallback when Redis is unreachable.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from apishield.ratelimit import algorithms as alg
from apishield.ratelimit.storage import BanRecord, Check, Outcome, Storage, partitions

logger = logging.getLogger("apishield.ratelimit")
US = 1_000_000


def _wall_clock_us() -> int:
    return time.time_ns() // 1000


class MemoryStorage(Storage):
    """In-process storage. ``clock`` returns unix time in µs (tests pass their own)."""

    url = "memory://"

    def __init__(
        self, *, max_keys: int = 1_000_000, clock: Callable[[], int] = _wall_clock_us
    ) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self.evictions = 0
        self._data: dict[str, Any] = {}
        self._expires: dict[str, int] = {}  # key -> expiry bucket (unix second, rounded up)
        self._buckets: dict[int, set[str]] = {}
        self._heap: list[int] = []
        self._bans: dict[str, BanRecord] = {}
        self._ban_version = 0

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Forget every counter (bans are kept)."""
        self._data.clear()
        self._expires.clear()
        self._buckets.clear()
        self._heap.clear()

    # -- counters --------------------------------------------------------------------------

    async def apply(self, checks: Sequence[Check]) -> list[Outcome]:
        return self.apply_now(checks, self.clock())

    def apply_now(self, checks: Sequence[Check], now: int) -> list[Outcome]:
        """``apply`` at a given time (µs); synchronous, for the event loop and for tests."""
        self._expire(now)
        if len(checks) == 1:  # the usual request: one rule, one counter
            check = checks[0]
            decision, state, ttl = self._decide(check, now)
            applied = decision.allowed and not check.dry
            if applied:
                self._store(check.key, state, now + ttl)
                self._bound()
            return [
                Outcome(
                    decision.allowed,
                    applied,
                    decision.remaining,
                    decision.reset_us / US,
                    decision.retry_us / US,
                )
            ]
        outcomes: list[Outcome | None] = [None] * len(checks)
        for indexes in partitions(checks).values():
            pending: list[tuple[str, Any, int]] = []
            decisions: list[alg.Decision] = []
            for i in indexes:
                decision, state, ttl = self._decide(checks[i], now)
                decisions.append(decision)
                if not checks[i].dry:
                    pending.append((checks[i].key, state, ttl))
            applied = all(d.allowed for d in decisions)
            if applied:
                for key, state, ttl in pending:
                    self._store(key, state, now + ttl)
            for i, decision in zip(indexes, decisions, strict=True):
                outcomes[i] = Outcome(
                    decision.allowed,
                    applied and not checks[i].dry,
                    decision.remaining,
                    decision.reset_us / US,
                    decision.retry_us / US,
                )
        self._bound()
        return [o for o in outcomes if o is not None]

    def _decide(self, check: Check, now: int) -> tuple[alg.Decision, Any, int]:
        stored = self._data.get(check.key)
        if check.kind == "gcra":
            decision, tat = alg.gcra(now, stored, check.a, check.b, check.cost)
            return decision, tat, tat - now
        if check.kind == "sliding":
            decision, window_state = alg.sliding_window(now, stored, check.a, check.b, check.cost)
            return decision, window_state, 2 * check.a
        if check.kind == "fixed":
            decision, fixed_state = alg.fixed_window(now, stored, check.a, check.b, check.cost)
            return decision, fixed_state, (fixed_state[0] + 1) * check.a - now
        decision, leases = alg.concurrency(now, stored or {}, check.b, check.member, check.a)
        return decision, leases, check.a

    async def refund(self, checks: Sequence[Check]) -> None:
        now = self.clock()
        for check in checks:
            stored = self._data.get(check.key)
            if stored is None:
                continue
            if check.kind == "gcra":
                state: Any = alg.gcra_refund(now, stored, check.a, check.cost)
            elif check.kind == "sliding":
                state = alg.sliding_refund(now, stored, check.a, check.cost)
            elif check.kind == "fixed":
                state = alg.fixed_refund(now, stored, check.a, check.cost)
            else:
                stored.pop(check.member, None)
                state = stored if stored else None
            if state is None:
                self._drop(check.key)
            else:
                self._data[check.key] = state

    def _store(self, key: str, state: Any, expires: int) -> None:
        bucket = -(-expires // US)
        self._data[key] = state
        old = self._expires.get(key)
        if old == bucket:
            return
        if old is not None:
            self._buckets[old].discard(key)
        self._expires[key] = bucket
        keys = self._buckets.get(bucket)
        if keys is None:
            keys = self._buckets[bucket] = set()
            heapq.heappush(self._heap, bucket)
        keys.add(key)

    def _drop(self, key: str) -> None:
        self._data.pop(key, None)
        bucket = self._expires.pop(key, None)
        if bucket is not None:
            self._buckets[bucket].discard(key)

    def _expire(self, now: int) -> None:
        second = now // US
        heap = self._heap
        while heap and heap[0] <= second:
            for key in self._buckets.pop(heapq.heappop(heap), ()):
                self._data.pop(key, None)
                self._expires.pop(key, None)

    def _bound(self) -> None:
        if len(self._data) <= self.max_keys:
            return
        heap = self._heap
        while heap and len(self._data) > self.max_keys:
            bucket = heap[0]
            keys = self._buckets[bucket]
            while keys and len(self._data) > self.max_keys:
                key = keys.pop()
                self._data.pop(key, None)
                self._expires.pop(key, None)
                self.evictions += 1
            if not keys:
                heapq.heappop(heap)
                del self._buckets[bucket]
        if self.evictions == 1 or self.evictions % 100_000 == 0:
            logger.warning(
                "memory:// rate-limit storage is full (%d counters): dropping the counters "
                "closest to expiry; %d dropped so far",
                self.max_keys,
                self.evictions,
            )

    # -- bans ------------------------------------------------------------------------------

    async def ban_put(self, record: BanRecord) -> None:
        self._bans[record.subject] = record
        self._ban_version += 1

    async def ban_delete(self, subject: str) -> bool:
        found = self._bans.pop(subject, None) is not None
        if found:
            self._ban_version += 1
        return found

    async def ban_load(self) -> tuple[int, list[BanRecord]]:
        now = self.clock() / US
        for subject in [s for s, r in self._bans.items() if r.expires <= now]:
            del self._bans[subject]
        return self._ban_version, list(self._bans.values())

    async def ban_version(self) -> int:
        return self._ban_version
