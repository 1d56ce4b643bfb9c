"""Rate limits, quotas, concurrency caps and bans, over ``memory://`` or ``redis://``.

The decisions are pure functions (``algorithms``); storages (``memory``, ``redisstore``) apply
them atomically; the ``Limiter`` turns a request's identity into checks and a verdict; the
``RateLimitGuard`` holds it all for the pipeline stages in ``apishield.pipeline.ratelimit``
and ``apishield.pipeline.bans``.
"""

from __future__ import annotations

from apishield.errors import TooManyRequestsError
from apishield.ratelimit.bans import BanList, parse_subject
from apishield.ratelimit.guard import RateLimitGuard, limit_settings
from apishield.ratelimit.limiter import Limiter, Verdict
from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.metrics import LimiterMetrics
from apishield.ratelimit.rates import Rate, parse_rate
from apishield.ratelimit.settings import LimitRule, LimitSettings
from apishield.ratelimit.storage import (
    BanRecord,
    Check,
    LimitStorage,
    Outcome,
    Storage,
    StorageUnavailable,
    open_storage,
)

__all__ = [
    "BanList",
    "BanRecord",
    "Check",
    "LimitRule",
    "LimitSettings",
    "LimitStorage",
    "Limiter",
    "LimiterMetrics",
    "MemoryStorage",
    "Outcome",
    "Rate",
    "RateLimitGuard",
    "Storage",
    "StorageUnavailable",
    "TooManyRequestsError",
    "Verdict",
    "limit_settings",
    "open_storage",
    "parse_rate",
    "parse_subject",
]
