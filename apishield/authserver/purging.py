"""The periodic purge of expired grants in a gateway that runs the built-in server.

Expired access-token records, spent codes and dead refresh-token families are useless once
expired (``apishield.store.grants.purge_expired``), but they are never read again either, so
without a purge the tables only grow. ``PurgeScheduler`` runs the purge every ``every``
seconds (default 10 minutes) with ±``jitter`` spread, the first run at a random point of the
first period: N instances started together by one deployment do not all purge at once. On
PostgreSQL the purge takes an advisory lock and the instances that find it held skip their
turn. A failed purge is logged and retried at the next turn; it never stops the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from apishield.store.grants import purge_expired

if TYPE_CHECKING:
    from apishield.store.engine import Store

logger = logging.getLogger("apishield.authserver.purge")

DEFAULT_PURGE_EVERY = 600.0
_random = secrets.SystemRandom()


class PurgeScheduler:
    """Runs ``purge_expired`` on ``store`` in the background between ``start`` and ``aclose``.

    ``runs`` counts finished turns (purged, skipped or failed), for operators and tests.
    """

    def __init__(
        self,
        store: Store,
        *,
        every: float = DEFAULT_PURGE_EVERY,
        jitter: float = 0.1,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if every <= 0 or not 0 <= jitter < 1:
            raise ValueError("every must be positive and jitter in [0, 1)")
        self.store = store
        self.every = every
        self.jitter = jitter
        self.random = random
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background task on the running loop (idempotent)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        delay = self.every * self.random()
        while True:
            await asyncio.sleep(delay)
            await self.run_once()
            delay = self.every * (1 + self.jitter * (2 * self.random() - 1))

    async def run_once(self) -> int | None:
        """One purge; the number of rows removed, or None when skipped or failed."""
        try:
            removed = await purge_expired(self.store)
        except Exception as exc:  # a purge must never take the gateway down
            # The class name only: a driver's message may quote stored values.
            logger.warning("purge of expired grants failed: %s", type(exc).__name__)
            removed = None
        else:
            if removed is None:
                logger.info("purge of expired grants skipped: another instance is purging")
            else:
                logger.info("purge of expired grants removed %d rows", removed)
        self.runs += 1
        return removed

    async def aclose(self) -> None:
        """Cancel the background task and wait for it to end (idempotent)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        # wait() rather than await: the task's own cancellation is expected, not an error of
        # the caller, who may itself be a task being cancelled at loop shutdown.
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            logger.warning("purge scheduler ended: %s", type(task.exception()).__name__)
