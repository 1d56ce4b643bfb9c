"""Per-process limits when the shared storage fails; the shared one again when it returns.

No request fails because Redis died (DESIGN, "State"): the call that meets the failure is
answered from the in-process storage, and so is every later one while Redis stays away. The
switch raises one alert event (logger ``apishield.alerts``) and counts in ``LimiterMetrics``;
the way back raises another. Redis is probed at most every ``probe_interval`` seconds, in the
background and only while requests arrive, so a dead Redis costs the request path nothing.

While degraded each process enforces every limit on its own: N gateway processes admit up to
N times a limit. That is the trade the issue asks for (availability over exactness); the alert
is how the operator learns of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence

from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.metrics import LimiterMetrics
from apishield.ratelimit.storage import Check, LimitStorage, Outcome, StorageUnavailable

alerts = logging.getLogger("apishield.alerts")


def alert(name: str, **fields: object) -> None:
    """Log one alert event as a JSON line: ``{"event": "alert", "alert": NAME, ...}``."""
    event = {"event": "alert", "alert": name, "ts": round(time.time(), 3), **fields}
    alerts.warning("%s", json.dumps(event, separators=(",", ":"), default=str))


class FallbackStorage(LimitStorage):
    """``primary`` while it answers, ``fallback`` (in-process) while it does not.

    Trust assumption: the fallback is local and always available; the primary may fail at any
    call, and its failures arrive as ``StorageUnavailable``.
    """

    def __init__(
        self,
        primary: LimitStorage,
        fallback: MemoryStorage,
        *,
        metrics: LimiterMetrics,
        probe_interval: float = 2.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.metrics = metrics
        self.probe_interval = probe_interval
        self.url = primary.url
        self._down_since: float | None = None
        self._last_probe = 0.0
        self._probe: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    async def apply(self, checks: Sequence[Check]) -> list[Outcome]:
        if self._down_since is None:
            try:
                return await self.primary.apply(checks)
            except StorageUnavailable as exc:
                self._degrade(exc)
        else:
            self._maybe_probe()
        return await self.fallback.apply(checks)

    async def refund(self, checks: Sequence[Check]) -> None:
        # A refund goes where its checks were applied: while degraded, to the fallback. A
        # refund that meets the outage is lost, which only ever errs on the strict side.
        if self._down_since is None:
            try:
                await self.primary.refund(checks)
                return
            except StorageUnavailable as exc:
                self._degrade(exc)
                return
        await self.fallback.refund(checks)

    def _degrade(self, exc: StorageUnavailable) -> None:
        self.metrics.storage_errors += 1
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self._last_probe = self._down_since
        self.metrics.fallbacks += 1
        self.metrics.degraded = True
        alert(
            "ratelimit_storage_unavailable",
            storage=self.url,
            error=exc.reason,
            action="per-process limits in force until it answers again",
        )

    def _maybe_probe(self) -> None:
        now = time.monotonic()
        if self._probe is not None or now - self._last_probe < self.probe_interval:
            return
        self._last_probe = now
        self._probe = asyncio.get_running_loop().create_task(self._run_probe())

    async def _run_probe(self) -> None:
        try:
            await self.primary.ping()
        except StorageUnavailable:
            self.metrics.storage_errors += 1
            return
        finally:
            self._probe = None
        down = time.monotonic() - (self._down_since or time.monotonic())
        self._down_since = None
        self.metrics.recoveries += 1
        self.metrics.degraded = False
        # The per-process counters describe the outage only; the next outage starts afresh.
        self.fallback.clear()
        alert("ratelimit_storage_recovered", storage=self.url, down_seconds=round(down, 3))

    async def ping(self) -> None:
        await self.primary.ping()

    async def aclose(self) -> None:
        probe = self._probe
        if probe is not None:
            probe.cancel()
            try:
                await probe
            except asyncio.CancelledError:
                pass
        await self.primary.aclose()
        await self.fallback.aclose()
