"""The access-token denylist, mirrored in memory for the hot path (AUTH 26).

Asking the store about every token's ``jti`` would put a query on every request. Instead a
``RevocationList`` fetches, at most every ``refresh_every`` seconds, the tokens revoked since
its last look (with an overlap that absorbs clock skew between instances and transactions that
commit late), and answers from memory. A revocation therefore takes effect everywhere within
``refresh_every`` seconds (default 5). Entries leave memory when their token expires.

If the store cannot be read when a refresh is due, ``is_revoked`` raises
``StoreUnavailableError``: an unknown revocation state fails closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apishield.store.engine import Store

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RevocationList:
    """``is_revoked(jti)`` for token verifiers, backed by the store's denylist."""

    def __init__(
        self,
        store: Store,
        *,
        refresh_every: float = 5.0,
        overlap: timedelta = timedelta(minutes=2),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_every = refresh_every
        self.overlap = overlap
        self.monotonic = monotonic
        self._revoked: dict[str, datetime] = {}  # jti → the token's exp
        self._since: datetime | None = None
        self._checked: float | None = None
        self._lock = asyncio.Lock()

    def _due(self) -> bool:
        return self._checked is None or self.monotonic() - self._checked >= self.refresh_every

    async def refresh(self) -> None:
        """Fetch what was revoked since the last look (everything unexpired, the first time)."""
        async with self._lock:
            if not self._due():
                return  # another request refreshed while this one waited
            started = self.store.now()
            since = _EPOCH if self._since is None else self._since - self.overlap
            for jti, expires_at in await self.store.access_tokens.revoked_since(since):
                self._revoked[jti] = expires_at
            for jti in [j for j, exp in self._revoked.items() if exp <= started]:
                del self._revoked[jti]
            self._since = started
            self._checked = self.monotonic()

    async def is_revoked(self, jti: str) -> bool:
        """True when the token ``jti`` was revoked and has not expired yet."""
        if self._due():
            await self.refresh()
        expires_at = self._revoked.get(jti)
        return expires_at is not None and expires_at > self.store.now()

    def note(self, jti: str, expires_at: datetime) -> None:
        """Deny ``jti`` here at once (after revoking it through this process's store)."""
        self._revoked[jti] = expires_at
