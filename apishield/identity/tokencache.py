"""A bounded cache of verified bearer tokens, so a token's signature is checked once.

DESIGN's budget: an ES256 verification costs about 150 µs of CPU, a cache hit a few µs.
Entries are keyed by the SHA-256 of the token (the cache never holds a token, so a memory
dump or a debugger shows no credential), kept no longer than the token's ``exp`` (nor any
shorter limit the caller gives, such as an introspection ``cache_ttl``), and evicted least
recently used first beyond ``max_size``.

Trust assumption: what is stored was verified by a ``BearerVerifier``; a hit returns the same
``Principal`` without checking the token again. What is stored must therefore not depend on
the request: the audience a route asks for (AUTH 6) is checked by the caller on every use,
against the principal's claims. Revocation, likewise, must be asked on every use, hit or
not: ``is_revoked(jti)`` (sync or async, provided by the store) runs each time
``check_revoked`` is called, and a revoked token is dropped from the cache (AUTH 26's jti
denylist wins over the cache).
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from apishield.identity.jwt import invalid_token
from apishield.identity.principal import Principal

RevocationCheck = Callable[[str], bool | Awaitable[bool]]
"""``is_revoked(jti)``: True when the token with this ``jti`` has been revoked."""


def token_key(token: str) -> bytes:
    """The cache key of a token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).digest()


class TokenCache:
    """LRU cache of verified principals by token hash, each kept until its deadline.

    ``max_size`` 0 turns caching off (every token is verified every time). ``clock`` is
    unix seconds, the same clock as the tokens' ``exp``; injectable for tests.
    """

    def __init__(
        self,
        max_size: int,
        *,
        clock: Callable[[], float] = time.time,
        is_revoked: RevocationCheck | None = None,
    ) -> None:
        if max_size < 0:
            raise ValueError("max_size must be 0 or more")
        self.max_size = max_size
        self.is_revoked = is_revoked
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> Principal | None:
        """The cached principal of ``token``, or None (absent or past its deadline)."""
        key = token_key(token)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        principal, until = entry
        if self._clock() >= until:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return principal

    def put(self, token: str, principal: Principal, *, until: float | None = None) -> None:
        """Keep ``principal`` until ``until`` or its ``expires_at``, whichever is sooner.

        A principal without ``expires_at`` and no ``until`` is not cached: "until exp" has
        no meaning for it.
        """
        deadline = min((t for t in (until, principal.expires_at) if t is not None), default=None)
        if self.max_size == 0 or deadline is None or deadline <= self._clock():
            return
        key = token_key(token)
        self._entries[key] = (principal, deadline)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        self._entries.pop(token_key(token), None)

    def clear(self) -> None:
        self._entries.clear()

    async def check_revoked(self, token: str, principal: Principal) -> None:
        """Raise 401 ``token_revoked`` when the hook says the principal's ``jti`` is revoked.

        Tokens without a ``jti`` cannot be revoked one by one, so they pass.
        """
        if self.is_revoked is None or principal.credential_id is None:
            return
        answer = self.is_revoked(principal.credential_id)
        revoked = await answer if inspect.isawaitable(answer) else answer
        if revoked:
            self.discard(token)
            raise invalid_token("the token has been revoked", code="token_revoked")
