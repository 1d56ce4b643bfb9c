"""Slow clients (slowloris, slow POST): deadlines for the request head and a minimum body rate.

uvicorn has a keep-alive timeout between requests but none while a request arrives, so a client
that sends one header byte every few seconds holds a connection, and its buffers, for ever; a
few thousand such clients exhaust a server without any bandwidth. ``SlowClientProtocol`` is
uvicorn's httptools protocol with two deadlines added (the same model as Apache's
mod_reqtimeout and nginx's ``client_header_timeout`` / ``client_body_timeout``):

- **head**: the request line and headers must be complete within ``header_timeout`` seconds,
  counted from the connection's opening for its first request and from the first byte of each
  later one (the idle time in between is uvicorn's keep-alive timeout).
- **body**: while a body arrives, every ``body_timeout`` window must bring at least
  ``min_body_rate × body_timeout`` bytes (and at least one byte). Windows in which the
  application is not reading (uvicorn paused the socket, or ``Expect: 100-continue`` is still
  unanswered) do not count against the client.

A client that misses a deadline gets ``408 Request Timeout`` problem+json with code
``request_timeout`` and ``Connection: close`` (RFC 9110 §15.5.9), or just a closed connection
when it never sent a byte or a response has already started. The TLS handshake itself is
bounded by asyncio's ``ssl_handshake_timeout`` (60 s) before this protocol sees the connection.

Deadlines are plain numbers checked by one sweep per event loop, a quarter of the shorter
timeout apart (at most 1 s): a request pays two clock reads, not a timer (see ``_Sweeper``).

Use: ``uvicorn.Config(app, http=slow_client_protocol(SlowClientSettings()))``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from apishield.errors import RequestTimeoutError
from apishield.pipeline.problem import render_problem
from apishield.ratelimit.settings import SlowClientSettings

__all__ = [
    "RequestTimeoutError",
    "SlowClientProtocol",
    "SlowClientSettings",
    "slow_client_protocol",
]

logger = logging.getLogger("apishield.server")


def _timeout_response() -> bytes:
    from apishield.pipeline.errors import new_request_id

    error = RequestTimeoutError(headers={"Connection": "close"})
    status, headers, body = render_problem(error, new_request_id())
    lines = [b"HTTP/1.1 408 Request Timeout"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Sweeper:
    """One timer per event loop that checks the deadlines of every slow-client connection.

    A timer per request would cost a ``call_later`` and a ``cancel`` for every request head and
    body (measured: several µs per request); a deadline is one float, and this sweep visits
    the open connections a few times per timeout. Deadlines are therefore met within
    ``granularity`` seconds, not to the millisecond.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, granularity: float) -> None:
        self.loop = loop
        self.granularity = granularity
        self.connections: set[SlowClientProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.flusher = _Flusher(loop)  # one per loop too, kept here with the sweep

    def add(self, connection: SlowClientProtocol) -> None:
        self.connections.add(connection)
        if self._timer is None:
            self._timer = self.loop.call_later(self.granularity, self._sweep)

    def discard(self, connection: SlowClientProtocol) -> None:
        self.connections.discard(connection)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for connection in list(self.connections):
            deadline = connection.deadline
            if deadline is not None and now >= deadline:
                connection.deadline_passed(now)
        if self.connections:
            self._timer = self.loop.call_later(self.granularity, self._sweep)


class _Flusher:
    """Flushes every ``_CoalescingTransport`` that wrote in this loop turn, with one callback
    for all of them: under load one turn answers many connections, and a callback per
    response would be a scheduled handle per response."""

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[_CoalescingTransport] = []
        self._scheduled = False

    def add(self, transport: _CoalescingTransport) -> None:
        self._pending.append(transport)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for transport in pending:
            transport.flush()


class _CoalescingTransport:
    """The client's transport as uvicorn's protocol and request cycles see it: the writes of
    one event-loop turn leave in one system call.

    uvicorn writes a response's head and its body separately, so a proxied answer that is
    whole in hand costs two ``send`` calls and two TCP segments; on loopback each one also
    pays for the receiving side inside the same system call. Writes are held until the end
    of the loop turn (or the next ``close``) and then written together, in order. Every other
    use of the transport goes straight through; the protocol's own writes (a 400, a 408)
    take the same path, so nothing overtakes what is held.
    """

    __slots__ = ("_transport", "_flusher", "_held")

    def __init__(self, transport: asyncio.Transport, flusher: _Flusher) -> None:
        self._transport = transport
        self._flusher = flusher
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            self._flusher.add(self)
        else:
            held.append(data)

    def writelines(self, lines: Iterable[bytes]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        held = self._held
        if held is None:
            return
        self._held = None
        transport = self._transport
        if transport.is_closing():
            return  # aborted or lost: nothing more can be sent
        if len(held) == 1:
            transport.write(held[0])
        else:
            transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class SlowClientProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline and a minimum body rate.

    Trust assumption: nothing about the client is trusted; the deadlines hold whatever it
    sends. Settings come from the class (see ``slow_client_protocol``).
    """

    settings = SlowClientSettings()
    refused = 0  # connections refused for slowness, across the process
    _sweepers: dict[asyncio.AbstractEventLoop, _Sweeper] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: float | None = None  # loop time; None while nothing is awaited
        self._phase = "idle"  # "head", "body", "keep-alive" (between requests) or "idle"
        self._started = False  # a byte of the current request arrived
        self._window = 0  # body bytes received in the current window
        sweepers = type(self)._sweepers
        sweeper = sweepers.get(self.loop)
        if sweeper is None or sweeper.loop.is_closed():
            settings = self.settings
            granularity = min(settings.header_timeout, settings.body_timeout) / 4
            sweeper = sweepers[self.loop] = _Sweeper(self.loop, min(1.0, max(0.05, granularity)))
            for loop in [loop for loop in sweepers if loop.is_closed()]:
                del sweepers[loop]
        self._sweeper = sweeper

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn keeps this attribute for its own writes and hands it to each request cycle.
        self.transport = cast(
            asyncio.Transport, _CoalescingTransport(transport, self._sweeper.flusher)
        )
        self._phase = "head"
        self.deadline = self.loop.time() + self.settings.header_timeout
        self._sweeper.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = None
        self._phase = "idle"
        self._sweeper.discard(self)
        super().connection_lost(exc)

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started = True
        if self._phase != "head":
            self._phase = "head"
            self.deadline = self.loop.time() + self.settings.header_timeout

    def on_headers_complete(self) -> None:
        self._phase = "body"
        self._window = 0
        self.deadline = self.loop.time() + self.settings.body_timeout
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._window += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = "idle"
        self._started = False
        self.deadline = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn arms its keep-alive timeout here with a `call_later` that the next request
        # cancels again (measured: ~2 µs per request on uvloop); the sweep's deadline does the
        # same job for the price of a float. Otherwise as uvicorn: count the request, resume
        # reading, start a pipelined request if one waits.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._phase == "idle":  # not when the next request has begun to arrive
            self._phase = "keep-alive"
            self.deadline = self.loop.time() + self.timeout_keep_alive

    # -- deadlines -------------------------------------------------------------------------

    def deadline_passed(self, now: float) -> None:
        """Called by the sweep once ``deadline`` has passed."""
        self.deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        if self._phase == "keep-alive":
            self._phase = "idle"
            self.timeout_keep_alive_handler()  # closes the idle connection
        elif self._phase == "head":
            self._refuse("head", answer=self._started)
        elif self._phase == "body":
            cycle = self.cycle
            app_waiting = (self.flow is not None and self.flow.read_paused) or (
                cycle is not None and cycle.waiting_for_100_continue
            )
            settings = self.settings
            wanted = max(1, int(settings.min_body_rate * settings.body_timeout))
            if not app_waiting and self._window < wanted:
                self._refuse("body", answer=True)
                return
            self._window = 0
            self.deadline = now + settings.body_timeout

    def _refuse(self, part: str, *, answer: bool) -> None:
        type(self).refused += 1
        self._phase = "idle"
        client = self.client[0] if self.client else "-"
        logger.warning(
            "slow client refused: request %s not received in time (client %s)", part, client
        )
        cycle = self.cycle
        if part == "body" and cycle is not None:
            # Nothing can follow a response that has started; otherwise the application may
            # be waiting for the body: tell it the client is gone, and let nothing it sends
            # later reach the connection.
            answer = answer and not cycle.response_started
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        elif cycle is not None and not cycle.response_complete:
            answer = False  # a pipelined request behind a response still being written
        if answer:
            self.transport.write(_timeout_response())
        self.transport.close()


def slow_client_protocol(settings: SlowClientSettings) -> type[SlowClientProtocol]:
    """A ``SlowClientProtocol`` class bound to ``settings``, for ``uvicorn.Config(http=...)``."""
    return type(
        "SlowClientProtocol", (SlowClientProtocol,), {"settings": settings, "_sweepers": {}}
    )
