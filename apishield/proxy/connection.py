"""One keep-alive HTTP/1.1 connection to the upstream, on ``asyncio.Protocol`` and httptools.

The protocol object is the client side of RFC 9112: it writes a request, parses the response
with httptools' (llhttp's) strict parser and hands the status, fields and content to the
request that owns it, with flow control both ways (the transport's ``pause_writing`` while the
upstream is slow to take a request body, ``pause_reading`` once ``HIGH_WATER`` bytes of
response wait for a slow client). It holds no timer: the pool's ticker calls
:meth:`UpstreamConnection.check_timeouts`.

Trust assumption: the upstream is trusted to run the API but not to speak HTTP correctly.
No leniency flag is set, response heads are bounded, unsolicited bytes retire the connection,
and every parser error fails the request with 502 ``upstream_unavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

import httptools

from apishield.errors import UpstreamError, UpstreamTimeoutError

#: Response bytes buffered before we stop reading from the upstream (flow control).
HIGH_WATER: Final = 256 * 1024
#: Largest response head (status line, interim answers and fields) we accept: llhttp itself has
#: no limit, and an upstream must not make us buffer without bound.
MAX_HEAD: Final = 64 * 1024

UNAVAILABLE: Final = "The upstream service could not be reached."
TIMEOUT: Final = "The upstream service did not answer in time."
INVALID: Final = "The upstream service sent an invalid response."


class _ProtocolViolation(Exception):
    """Raised inside parser callbacks to stop parsing a message we did not ask for."""


class UpstreamConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to the upstream; one request at a time, never pipelined.

    The caller drives it: :meth:`start` writes the request head (and the whole body when it
    is known), :meth:`write_body` streams the rest, :meth:`wait_head` waits for the final
    status and fields (1xx interim answers are dropped: ASGI cannot forward them; a caller may
    loop over :meth:`changed` instead, which saves a coroutine on the hot path), and
    :meth:`wait_body`/:meth:`take_body` read the content as it arrives; :meth:`on_complete`
    tells the caller the moment the response is whole, so that it can give the connection back
    without waiting for its own client.
    """

    __slots__ = (
        "_on_idle_lost",
        "_loop",
        "_transport",
        "_parser",
        "_waiter",
        "_error",
        "closed",
        "requests",
        "busy",
        "_sent",
        "_dirty",
        "_head_request",
        "status",
        "headers",
        "head_ready",
        "_body",
        "_buffered",
        "complete",
        "_keep_alive",
        "received",
        "_interim",
        "_stale_parser",
        "_read_paused",
        "write_paused",
        "_activity",
        "_deadline",
        "_last_active",
        "idle_ticks",
        "_lost_waiter",
        "_head_bytes",
        "_on_complete",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_idle_lost: Callable[[UpstreamConnection], None],
    ) -> None:
        self._on_idle_lost = on_idle_lost
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self.closed = False
        self.requests = 0
        self.busy = True  # a connection being opened belongs to the request opening it
        self._sent = False
        self._dirty = False
        self._head_request = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_ready = False
        self._body: list[bytes] = []
        self._buffered = 0
        self.complete = False
        self._keep_alive = False
        self.received = False
        self._interim = False
        self._stale_parser = False
        self._read_paused = False
        self.write_paused = False
        self._activity = False
        self._deadline = 0.0
        self._last_active = 0.0
        self.idle_ticks = 0
        self._lost_waiter: asyncio.Future[None] | None = None
        self._head_bytes = 0
        self._on_complete: Callable[[UpstreamConnection], None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._activity = True
        self.received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if self.complete:
                # Bytes after a whole response: the answer stands, the connection does not.
                self._keep_alive = False
                self.abort()
                if self._on_complete is not None:
                    self._completed()
            else:
                self.fail(UpstreamError(INVALID))
            return
        if not self.head_ready:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self.fail(UpstreamError(INVALID))
        elif self.complete and self._on_complete is not None:
            self._completed()

    def eof_received(self) -> bool | None:
        return None  # close our side too; HTTP/1.1 has no use for a half-open connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        if not self.busy:
            self._on_idle_lost(self)
            return
        if self.complete:
            return
        if self.head_ready and self._close_delimited():
            # RFC 9112 §6.3 rule 8: without Content-Length or chunked framing, the close ends it.
            self.complete = True
            self._keep_alive = False
            self._wake()
            if self._on_complete is not None:
                self._completed()
            return
        if self._error is None:
            self._error = UpstreamError(UNAVAILABLE)
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._activity = True
        self._wake()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete or not self.busy or self.requests == 0:
            raise _ProtocolViolation  # an answer to no request of ours

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status > 599:  # RFC 9110 §15: three digits, first one 1 to 5
            raise _ProtocolViolation
        if status < 200:
            if status == 101:  # we never ask to switch protocols (Upgrade is hop-by-hop)
                raise _ProtocolViolation
            self._interim = True
            self.headers = []
            return
        self.status = status
        self.head_ready = True
        if self._head_request:
            # httptools cannot tell llhttp that a HEAD answer has no content (RFC 9110 §9.3.2),
            # so the message ends here and the next request gets a fresh parser.
            self.complete = True
            self._stale_parser = True
            self._keep_alive = (
                self._parser.should_keep_alive() and self._parser.get_http_version() == "1.1"
            )
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            raise _ProtocolViolation
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.complete:
            return
        self.complete = True
        parser = self._parser
        self._keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        self._wake()

    # -- used by the request ------------------------------------------------------------------

    @property
    def reused(self) -> bool:
        """Whether an earlier request already used this connection."""
        return self.requests > 1

    def start(self, parts: list[bytes], *, head_request: bool, complete: bool) -> None:
        """Write a request head (and body parts); ``complete`` when nothing more follows."""
        self.requests += 1
        self.received = False
        if self.closed or self._error is not None or self._transport is None:
            raise UpstreamError(UNAVAILABLE)
        if self._stale_parser:
            self._parser = httptools.HttpResponseParser(self)
            self._stale_parser = False
        self._sent = complete
        self._dirty = False
        self._head_request = head_request
        self.status = 0
        self.headers = []
        self.head_ready = False
        self._buffered = 0
        self.complete = False
        self._keep_alive = False
        self._interim = False
        self._head_bytes = 0
        self._activity = True
        self._deadline = 0.0
        self._transport.writelines(parts)

    def write_body(self, parts: list[bytes], *, last: bool) -> None:
        """Write more of the request body; ``last`` on the final part."""
        if self._error is not None:
            raise self._error
        if self.closed or self._transport is None:
            raise UpstreamError(UNAVAILABLE)
        self._transport.writelines(parts)
        if last:
            self._sent = True
            self._activity = True

    def on_complete(self, callback: Callable[[UpstreamConnection], None] | None) -> None:
        """Call ``callback`` once, as soon as the response is complete in our buffers (after
        the parser is done with the bytes that completed it), or never with ``None``.

        Lets a request give the connection back while its client is still reading the
        buffered rest, which is at most the flow-control window (:data:`HIGH_WATER`) plus one
        read. The callback must take the buffered content before releasing the connection.
        """
        self._on_complete = callback

    def abandon_request(self) -> None:
        """Stop sending the request body (the upstream answered early); never reuse."""
        self._dirty = True
        self._sent = True  # from here on the read timeout applies

    # The waits below repeat the future handling inline: a nested coroutine per wait is a
    # measurable share of the per-request cost.

    def changed(self) -> asyncio.Future[None]:
        """A future done at the next change of state (head, content, end, error, drain);
        raises the exchange's error at once if there is one. For a caller's own wait loop."""
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        return waiter

    async def drain(self) -> None:
        """Wait until the upstream has taken what we wrote (transport flow control)."""
        while self.write_paused:
            if self._error is not None:
                raise self._error
            waiter = self._waiter = self._loop.create_future()
            await waiter

    async def wait_head(self) -> None:
        """Wait for the final response status and fields."""
        while not self.head_ready:
            if self._error is not None:
                raise self._error
            waiter = self._waiter = self._loop.create_future()
            await waiter

    async def wait_body(self) -> None:
        """Wait until content is buffered or the response is complete."""
        while not self._body and not self.complete:
            if self._error is not None:
                raise self._error
            waiter = self._waiter = self._loop.create_future()
            await waiter

    @property
    def error(self) -> UpstreamError | None:
        """Why the exchange failed, if it did and the response is not complete."""
        return None if self.complete else self._error

    @property
    def finished(self) -> bool:
        """The response is complete and every byte of it has been taken."""
        return self.complete and not self._body

    def take_body(self) -> bytes:
        """All content buffered so far (possibly empty); reading resumes if it was paused."""
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._read_paused:
            self._read_paused = False
            if not self.closed and self._transport is not None:
                self._transport.resume_reading()
        return data

    def reusable(self) -> bool:
        """Whether the connection may carry another request (RFC 9112 §9.3)."""
        return (
            self.complete
            and self._keep_alive
            and self._sent
            and not self._dirty
            and self._error is None
            and not self.closed
        )

    def abort(self) -> None:
        """Close at once, discarding anything unsent."""
        self._keep_alive = False
        if self._transport is not None and not self.closed:
            self._transport.abort()

    # -- internals -----------------------------------------------------------------------------

    def park(self) -> None:
        """Called by the pool when the connection goes idle."""
        self.busy = False
        self._on_complete = None
        self.idle_ticks = 0
        self._body.clear()
        self._buffered = 0
        if self._read_paused:
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()  # so that the upstream's close is noticed

    def check_timeouts(self, now: float, read_timeout: float, total_timeout: float) -> None:
        """Fail the request when the total deadline passed or the upstream is silent too long.

        The read timeout counts the upstream's silence while we wait for it: for its answer,
        or for it to take the request body it is holding back (transport paused). It does not
        count while we wait for the client instead: for more request body, or for the client to
        read what we buffered (reading paused).
        """
        if self.complete or self._error is not None:
            return
        if self._deadline == 0.0:
            self._deadline = now + total_timeout
            self._last_active = now
        elif now >= self._deadline:
            self.fail(UpstreamTimeoutError(TIMEOUT))
            return
        if self._activity or self._read_paused or not (self._sent or self.write_paused):
            self._activity = False
            self._last_active = now
        elif now - self._last_active >= read_timeout:
            self.fail(UpstreamTimeoutError(TIMEOUT))

    def lost_waiter(self) -> asyncio.Future[None]:
        """A future done once the transport is closed."""
        if self._lost_waiter is None:
            self._lost_waiter = self._loop.create_future()
            if self.closed:
                self._lost_waiter.set_result(None)
        return self._lost_waiter

    def fail(self, error: UpstreamError) -> None:
        """End the exchange with ``error`` and close the connection."""
        if self._error is None:
            self._error = error
        self.abort()
        self._wake()

    def _completed(self) -> None:
        callback = self._on_complete
        self._on_complete = None
        if callback is not None:
            callback(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _close_delimited(self) -> bool:
        if self._head_request or self.status in (204, 304):
            return False
        return not any(
            name in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )
