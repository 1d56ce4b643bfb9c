"""A keep-alive pool of HTTP/1.1 connections to one upstream origin.

Built on ``asyncio.Protocol`` and httptools' response parser because the upstream client is
the largest cost of a gateway: this pool costs about a third of aiohttp's client per request
(DESIGN, "Performance budget"). It owns every upstream failure mode, translated at the
boundary into the error tree with nothing of the cause in the client-facing detail:

=========================  ======  ==========================
what                       status  ``code``
=========================  ======  ==========================
refused, reset, DNS, TLS,  502     ``upstream_unavailable``
malformed response
connect, read, total       504     ``upstream_timeout``
timeout
no free connection within  503     ``upstream_pool_exhausted``
the connect timeout                (``Retry-After: 1``)
=========================  ======  ==========================

Connections are reused (RFC 9112 §9.3) only after a complete HTTP/1.1 response without
``Connection: close``, a request written in full, and no error. Timeouts are kept by one
timer per pool that ticks every quarter of the shortest timeout (at most once a second) while
connections are open or exchanges watched (:mod:`apishield.proxy.deadline`), instead of a
timer per request or per chunk: a timeout therefore fires up to two ticks late, and a request
costs no timer allocation.

Trust assumption: the upstream is trusted to run the API but not to speak HTTP correctly; the
parser is strict (no leniency flags), and anything it refuses fails the request with 502.
"""

from __future__ import annotations

import asyncio
import collections
import math
import ssl
from typing import Final

from apishield.errors import UpstreamError, UpstreamTimeoutError
from apishield.proxy.connection import TIMEOUT, UNAVAILABLE, UpstreamConnection
from apishield.proxy.deadline import Exchange

EXHAUSTED: Final = "The upstream service is busy; try again shortly."


class ConnectionPool:
    """Keep-alive connections to one origin, at most ``max_connections`` open at once.

    ``acquire`` hands out an idle connection (most recently used first, the least likely to
    have been closed by the upstream), else opens one, else waits up to the connect timeout
    for one to be released and then raises ``UpstreamError`` 503 ``upstream_pool_exhausted``.
    ``release`` keeps the connection for reuse or closes it. Idle connections are closed after
    ``idle_timeout``; one the upstream closes while idle is dropped at once.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        idle_timeout: float,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
    ) -> None:
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self._tick = min(max(min(read_timeout, total_timeout, idle_timeout) / 4, 0.01), 1.0)
        self._idle_ticks = max(1, math.ceil(idle_timeout / self._tick))
        self._idle: collections.deque[UpstreamConnection] = collections.deque()
        self._conns: set[UpstreamConnection] = set()
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[UpstreamConnection | None]] = (
            collections.deque()
        )
        self._exchanges: set[Exchange] = set()
        self._ticker: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections open or being opened."""
        return len(self._conns) + self._connecting

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for a request."""
        return len(self._idle)

    def acquire_idle(self) -> UpstreamConnection | None:
        """An idle connection, or ``None``: the hot path, without a coroutine."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.busy = True
                return conn
            self._forget(conn)
        return None

    async def acquire(self, *, fresh: bool = False) -> UpstreamConnection:
        """A connection for one request; ``fresh`` skips idle ones (used for the retry)."""
        if self._closed:
            raise UpstreamError(UNAVAILABLE)
        if not fresh:
            conn = self.acquire_idle()
            if conn is not None:
                return conn
        if len(self._conns) + self._connecting < self._max:
            self._connecting += 1
            return await self._connect()
        return await self._wait_for_slot(fresh)

    def watch(self) -> Exchange:
        """Start watching the current task's exchange; :meth:`unwatch` it when it ends.

        The ticker cancels the task once the exchange is past a deadline (see
        :class:`~apishield.proxy.deadline.Exchange`); the task must be inside the exchange's
        own ``try`` until :meth:`unwatch`, so that the cancellation lands there.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        exchange = Exchange(asyncio.current_task(loop))
        self._exchanges.add(exchange)
        if self._ticker is None and not self._closed:
            self._ticker = loop.call_later(self._tick, self._on_tick)
        return exchange

    def unwatch(self, exchange: Exchange) -> None:
        """Stop watching ``exchange``: no cancellation can reach its task after this."""
        self._exchanges.discard(exchange)

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection back after its request: kept when reusable, else closed."""
        if conn.reusable() and not self._closed:
            conn.park()
            self._hand_over(conn)
        else:
            conn.abort()
            self._forget(conn)

    async def aclose(self) -> None:
        """Close every connection and refuse new requests; in-flight requests fail with 502."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamError(UNAVAILABLE))
        conns = list(self._conns)
        self._idle.clear()
        for conn in conns:
            conn.fail(UpstreamError(UNAVAILABLE))
        pending = [conn.lost_waiter() for conn in conns if conn._transport is not None]
        if pending:
            # Let the transports finish closing, so no socket outlives the pool.
            await asyncio.wait(pending, timeout=1.0)

    # -- internals -------------------------------------------------------------------------------

    async def _connect(self) -> UpstreamConnection:
        """Open a connection in a slot already counted in ``_connecting``."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        conn = UpstreamConnection(loop, self._lost)
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._ssl is None:
                    await loop.create_connection(lambda: conn, self._host, self._port)
                else:
                    await loop.create_connection(
                        lambda: conn,
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host,
                    )
        except TimeoutError as exc:
            self._connecting -= 1
            self._slot_freed()
            raise UpstreamTimeoutError(TIMEOUT) from exc
        except (OSError, ValueError) as exc:
            # ssl.CertificateError is a ValueError; socket.gaierror and ssl.SSLError OSErrors.
            self._connecting -= 1
            self._slot_freed()
            raise UpstreamError(UNAVAILABLE) from exc
        except BaseException:
            self._connecting -= 1
            self._slot_freed()
            conn.abort()
            raise
        self._connecting -= 1
        if self._closed:
            conn.abort()
            raise UpstreamError(UNAVAILABLE)
        self._conns.add(conn)
        if self._ticker is None:
            self._ticker = loop.call_later(self._tick, self._on_tick)
        return conn

    async def _wait_for_slot(self, fresh: bool) -> UpstreamConnection:
        loop = self._loop or asyncio.get_running_loop()
        waiter: asyncio.Future[UpstreamConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._connect_timeout):
                conn = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            if isinstance(exc, TimeoutError):
                raise UpstreamError(
                    EXHAUSTED,
                    status=503,
                    code="upstream_pool_exhausted",
                    headers={"Retry-After": "1"},
                ) from exc
            raise
        if conn is None:
            return await self._connect()
        if fresh:
            conn.abort()
            self._conns.discard(conn)
            self._connecting += 1
            return await self._connect()
        return conn

    def _give_back(self, conn: UpstreamConnection | None) -> None:
        if conn is None:
            self._connecting -= 1
            self._slot_freed()
        else:
            self._hand_over(conn)

    def _hand_over(self, conn: UpstreamConnection) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                conn.busy = True
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _slot_freed(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._connecting += 1
                waiter.set_result(None)
                return

    def _forget(self, conn: UpstreamConnection) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
            self._slot_freed()

    def _lost(self, conn: UpstreamConnection) -> None:
        """An idle connection was closed (by the upstream, or by us when it expired)."""
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        self._forget(conn)

    def _on_tick(self) -> None:
        self._ticker = None
        assert self._loop is not None  # noqa: S101 - set before the first connection
        now = self._loop.time()
        read_timeout, total_timeout = self.read_timeout, self.total_timeout
        expired = False
        for conn in self._conns:
            if conn.busy:
                conn.check_timeouts(now, read_timeout, total_timeout)
            else:
                conn.idle_ticks += 1
                expired = expired or conn.idle_ticks >= self._idle_ticks
        if expired:
            for conn in [c for c in self._idle if c.idle_ticks >= self._idle_ticks]:
                self._idle.remove(conn)
                conn.abort()
                self._forget(conn)
        if self._exchanges:
            late = [e for e in self._exchanges if e.check(now, read_timeout, total_timeout)]
            for exchange in late:
                self._exchanges.discard(exchange)
                if exchange.task is not None:
                    exchange.task.cancel()
        if (self._conns or self._connecting or self._exchanges) and not self._closed:
            self._ticker = self._loop.call_later(self._tick, self._on_tick)
