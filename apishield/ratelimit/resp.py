"""A lean Redis client for the request path: one connection, commands auto-pipelined.

Why not redis-py's asyncio client, which the rest of the project uses: measured on the
reference machine it costs 40 µs of CPU for a ``PING`` and 73 µs for one ``EVALSHA`` (pool
conditions, two timeout contexts and instrumentation per command), five times nginx's whole
cost per request; this client costs about a sixth of that (``bench/ratelimit_micro.py``). The
same trade as DESIGN's upstream pool on httptools instead of aiohttp.

What it does, and nothing more: RESP2 commands written on one ``asyncio.Protocol`` connection,
every command issued in one event-loop turn sent in one write (auto-pipelining), replies parsed
by hiredis (the C parser redis-py uses too) and matched to their commands in order. The URL is
read by redis-py's own parser. A command without a reply within ``timeout`` fails, and with it
the connection (its replies could no longer be matched); the next command reconnects.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.connection import SSLConnection, parse_url

from apishield.errors import ConfigError

_parse_url = cast(Callable[[str], dict[str, Any]], parse_url)  # untyped in redis-py
_URL_KEYS = frozenset({"username", "password", "host", "port", "db", "connection_class"})


class RespError(Exception):
    """A command failed: no connection, a timeout, or a protocol failure (no server text)."""


def _pack(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis")
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.buffer: list[bytes] = []
        self.closed = False
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, so no isinstance).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise RespError("connection closed")
        future: asyncio.Future[Any] = self.loop.create_future()
        self.pending.append((future, time.monotonic() + self.timeout))
        self.buffer.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self.timeout, self._check_timeouts)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.buffer and self.transport is not None and not self.closed:
            data = b"".join(self.buffer)
            self.buffer.clear()
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.pending:
                self._fail(RespError("reply without a command"))
                return
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_result(reply)

    def _check_timeouts(self) -> None:
        self._watchdog = None
        if not self.pending:
            return
        oldest = self.pending[0][1]
        now = time.monotonic()
        if now >= oldest:
            self._fail(RespError("timeout"))
        else:
            self._watchdog = self.loop.call_later(oldest - now, self._check_timeouts)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RespError("connection lost"))

    def _fail(self, error: RespError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved here: a caller that gave up logs nothing
        if self.transport is not None:
            self.transport.close()


class RespClient:
    """Commands to the Redis at ``url`` (``redis://`` or ``rediss://``, user, password, db).

    Trust assumption: the Redis server is the operator's; its replies are parsed by hiredis
    and only ever matched to our own commands. Error texts from the server are returned as
    ``hiredis.ReplyError`` values for the caller to interpret, never raised with their text.
    """

    def __init__(self, url: str, *, timeout: float = 0.1) -> None:
        try:
            params = _parse_url(url)
        except ValueError as exc:
            raise ConfigError("the cache URL is not a valid redis:// URL") from exc
        unknown = set(params) - _URL_KEYS
        if unknown:
            raise ConfigError(f"unsupported cache URL option(s): {', '.join(sorted(unknown))}")
        self.host: str = params.get("host", "localhost")
        self.port: int = int(params.get("port", 6379))
        self.db = int(params.get("db", 0))
        self.username: str | None = params.get("username")
        self.password: str | None = params.get("password")
        self.tls = params.get("connection_class") is SSLConnection
        self.timeout = timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def _connected(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done():
                self._connecting = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.tls else None
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self.timeout),
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.host if context else None,
                ),
                max(self.timeout, 1.0),  # a handshake needs more than one round trip
            )
        except (OSError, TimeoutError) as exc:
            raise RespError(type(exc).__name__) from exc
        setup: list[tuple[Any, ...]] = []
        if self.password is not None:
            setup.append(
                ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            )
        if self.db:
            setup.append(("SELECT", self.db))
        setup.append(("CLIENT", "SETNAME", "apishield"))
        replies = [connection.send(_pack(command)) for command in setup]
        for reply in replies:
            if isinstance(await reply, hiredis.ReplyError):
                connection._fail(RespError("connection setup refused"))
                raise RespError("connection setup refused (check the password and database)")
        self._connection = connection
        return connection

    async def call(self, *args: Any) -> Any:
        """One command's reply (a ``hiredis.ReplyError`` for an error reply)."""
        connection = await self._connected()
        return await connection.send(_pack(args))

    async def calls(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one write and one round trip; replies in order."""
        connection = await self._connected()
        futures = [connection.send(_pack(command)) for command in commands]
        return [await future for future in futures]

    async def aclose(self) -> None:
        connecting = self._connecting
        if connecting is not None and not connecting.done():
            connecting.cancel()
            try:
                await connecting
            except (asyncio.CancelledError, RespError):
                pass
        connection = self._connection
        self._connection = None
        if connection is not None and connection.transport is not None:
            connection._fail(RespError("client closed"))
            await asyncio.sleep(0)  # let the transport close before the loop may end
