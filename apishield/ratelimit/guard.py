"""What the limits and bans stages share in one gateway process: storage, limiter, ban list.

Built once per pipeline from the policy (``RateLimitGuard.from_policy``). Connections and
background tasks start lazily on the first request, in the serving event loop, and are closed
when the application's lifespan ends (``lifespan``) or by ``aclose``.
"""

from __future__ import annotations

from typing import Any

from apishield.ratelimit.bans import BanList
from apishield.ratelimit.fallback import FallbackStorage
from apishield.ratelimit.limiter import Limiter
from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.metrics import LimiterMetrics
from apishield.ratelimit.settings import LimitSettings
from apishield.ratelimit.storage import LimitStorage, Storage, open_storage
from apishield.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key"})


def credential_headers(policy: Any) -> frozenset[bytes]:
    """The request headers that carry credentials under ``policy`` (lower-case)."""
    names = {b"authorization"}
    identity = getattr(policy, "identity", None)
    api_keys = getattr(identity, "api_keys", None)
    header = getattr(api_keys, "header", None)
    names.add(header.lower().encode("latin-1") if isinstance(header, str) else b"x-api-key")
    return frozenset(names)


def limit_settings(policy: Any) -> LimitSettings:
    """The policy's ``limits:`` section, or the secure defaults when it has none."""
    settings = getattr(policy, "limits", None)
    return settings if isinstance(settings, LimitSettings) else LimitSettings()


class RateLimitGuard:
    """The limiter and the ban list over the storage at ``cache_url``.

    ``credential_headers``: where requests carry credentials (``Authorization`` and the API-key
    header), which decides the counter a ``when: anonymous`` rule uses before authentication.

    With ``redis://`` the limiter falls back to per-process limits while Redis is unreachable
    (``FallbackStorage``); the ban list keeps its last copy instead.
    """

    def __init__(
        self,
        settings: LimitSettings,
        cache_url: str = "memory://",
        *,
        storage: Storage | None = None,
        credential_headers: frozenset[bytes] = DEFAULT_CREDENTIAL_HEADERS,
    ) -> None:
        self.settings = settings
        self.credential_headers = credential_headers
        self.metrics = LimiterMetrics()
        if storage is None:
            storage = open_storage(
                cache_url,
                timeout=settings.storage_timeout,
                max_keys=settings.max_keys,
                key_prefix=settings.key_prefix,
            )
        shared = storage
        self.shared = shared
        limits: LimitStorage = shared
        if not isinstance(shared, MemoryStorage):
            limits = FallbackStorage(
                shared,
                MemoryStorage(max_keys=settings.max_keys),
                metrics=self.metrics,
                probe_interval=settings.probe_interval,
            )
        self.storage = limits
        self.limiter = Limiter(settings, limits, metrics=self.metrics)
        self.bans = BanList(shared, refresh=settings.ban_refresh)
        self._closed = False

    @classmethod
    def from_policy(cls, policy: Any) -> RateLimitGuard:
        """The guard for a ``Policy``: its ``limits:`` and its ``state.cache``."""
        return cls(
            limit_settings(policy),
            policy.state.cache,
            credential_headers=credential_headers(policy),
        )

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Stop background work and close connections; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await self.bans.aclose()
        await self.storage.aclose()

    async def lifespan(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan to ``app``; close the guard once the app has shut down."""

        async def closing_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        await app(scope, receive, closing_send)
