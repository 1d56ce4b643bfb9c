"""The lifetime of what a protected app holds open: the store, the built-in server, the purge.

``ResourceLifecycle`` goes outermost around the pipeline. The ASGI lifespan passes through it
to every stage and to the wrapped app unchanged; once the app has started,
the background work starts (the purge scheduler), and once it has shut down, the resources
are closed.

Not every host runs the lifespan protocol (uvicorn with ``lifespan="off"``, some serverless
adapters, in-process test clients). Resources open lazily (the store connects on its first
query), so requests work without it; to not leave pooled connections open (an aiosqlite
connection is a non-daemon thread: left open, it keeps the process from exiting), the first
request seen without a lifespan starts the background work and a watcher task that closes
everything when the event loop ends (``asyncio.run`` and its kin cancel the tasks still
pending, and the watcher's clean-up runs then). A later loop starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from apishield.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("apishield.authserver")

Closer = Callable[[], Awaitable[None]]


class ResourceLifecycle:
    """``app``, with ``start`` run once it has started and ``closers`` run once it has shut
    down (or, without a lifespan, when the event loop serving it ends)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        closers: Sequence[Closer],
        start: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.closers = list(closers)
        self.start = start
        self._state: Literal["idle", "lifespan", "unmanaged"] = "idle"
        self._watcher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if self._state == "idle":
            self._start_unmanaged()
        await self.app(scope, receive, send)

    def _begin(self) -> None:
        if self.start is not None:
            self.start()

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                if self._state == "idle":
                    self._begin()
                self._state = "lifespan"
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return lifespan_send

    def _start_unmanaged(self) -> None:
        self._state = "unmanaged"
        self._begin()
        self._watcher = asyncio.get_running_loop().create_task(self._close_when_loop_ends())

    async def _close_when_loop_ends(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # never set: waits for cancel
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the background work and close every resource; idempotent. A closer that
        fails is logged and the others still run."""
        if self._state == "idle":
            return
        self._state = "idle"
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        for close in self.closers:
            try:
                await close()
            except Exception as exc:  # shutting down: one stuck resource must not keep others open
                logger.warning("closing %s failed: %s", _name(close), type(exc).__name__)


def _name(close: Closer) -> str:
    owner = getattr(close, "__self__", None)
    return type(owner).__name__ if owner is not None else getattr(close, "__name__", "resource")
