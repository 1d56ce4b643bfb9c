"""Counters of the rate limiter, read by tests, the admin API and (later) Prometheus.

Plain integers on one object per gateway process: the event loop is single-threaded, so an
increment needs no lock. Labels are codes and storage names only, never a caller's identity.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class LimiterMetrics:
    """What the limits did, and how their storage fared."""

    allowed: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by refusal code
    reported: Counter[str] = field(default_factory=Counter)  # report mode: would have refused
    storage_errors: int = 0  # calls to the shared storage that failed
    fallbacks: int = 0  # switches to per-process limits
    recoveries: int = 0  # switches back to the shared storage
    degraded: bool = False  # per-process limits in force right now
    banned: int = 0  # requests refused by the ban list

    def snapshot(self) -> dict[str, object]:
        """A JSON-able copy."""
        return {
            "allowed": self.allowed,
            "refused": dict(self.refused),
            "reported": dict(self.reported),
            "storage_errors": self.storage_errors,
            "fallbacks": self.fallbacks,
            "recoveries": self.recoveries,
            "degraded": self.degraded,
            "banned": self.banned,
        }
