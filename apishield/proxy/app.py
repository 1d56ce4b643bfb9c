"""The upstream stage: an ASGI app that forwards each request to the upstream API.

It is the innermost app of the gateway (DESIGN stage 12). Requests and responses stream in
both directions: a body is never held whole, only up to the pool's flow-control window, except
the first 64 KiB of a 5xx answer when the stack-trace guard needs to look at it.

An upstream connection is a scarce resource that a client must not be able to hold at its
own pace (OWASP API Security Top 10 2023, API4). So a request with a body takes a connection
only once the first piece of the body has arrived; the connection goes back to the pool as
soon as the whole response is in our buffers, the client being served the rest (at most the
flow-control window) from memory; and the exchange, client side included, is bounded by
``upstream.timeouts.total``, with ``upstream.timeouts.read`` as the longest silence allowed
between two pieces of the request body (:mod:`apishield.proxy.deadline`).

Failures before the response starts raise from the error tree, for the errors stage to
render: ``UpstreamError`` 502 ``upstream_unavailable`` (refused, reset, DNS, TLS, malformed),
``UpstreamTimeoutError`` 504 ``upstream_timeout``, ``UpstreamError`` 503
``upstream_pool_exhausted``, :class:`RequestTimeoutError` 408 ``request_timeout`` (the client
stalled its own body), ``BadRequestError`` 400 ``connection_header_invalid`` and, when the
guard hides an error body, ``UpstreamError`` with the upstream's own 5xx status and
``upstream_error_hidden``. Once the status line has gone out nothing can be said any more:
:class:`UpstreamAbortedError` (the upstream failed) or :class:`ClientTooSlowError` (the
client did not read in time) is raised without the final body message, so the server drops
the client connection and the client sees a truncated message (a missing last chunk or a
short ``Content-Length``), never one that looks complete.

Trust assumption: the request context (``scope["apishield"]``) was filled by our own stages
and is believed; without one (standalone use) the server's view of the client is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import ssl
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, urlsplit

from apishield.errors import BadRequestError, ConfigError, UpstreamError, UpstreamTimeoutError
from apishield.pipeline.context import SCOPE_KEY, RequestContext
from apishield.policy.models import Upstream
from apishield.proxy.connection import UpstreamConnection
from apishield.proxy.deadline import Exchange
from apishield.proxy.errors import UpstreamAbortedError
from apishield.proxy.headers import (
    CONNECTION_PROTECTED,
    Origin,
    build_request_head,
    clean_response_headers,
)
from apishield.proxy.leaks import INSPECT_LIMIT, error_body_verdict, redact_excerpt
from apishield.proxy.pool import ConnectionPool
from apishield.types import Message, Receive, Scope, Send

logger = logging.getLogger("apishield.upstream")

#: How much of a 5xx body the stack-trace guard reads before deciding; longer ones are hidden.
GUARD_WINDOW: Final = INSPECT_LIMIT
#: Where the request context keeps the verified identity fields for the upstream.
IDENTITY_HEADERS_KEY: Final = "identity_headers"

# RFC 9110 §9.2.2: "A proxy MUST NOT automatically retry non-idempotent requests."
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods whose empty body still gets "Content-Length: 0" (RFC 9110 §8.6).
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
# HTTP versions whose framing headers say whether a request has content; HTTP/2 and 3 carry
# content in frames without Content-Length.
_FRAMED: Final = frozenset({"1.1", "1.0"})
_END_CHUNKS: Final = b"0\r\n\r\n"


class _ClientGone(Exception):
    """The client disconnected while we were reading its body."""


class UpstreamApp:
    """ASGI app forwarding HTTP requests to ``upstream.url`` over a keep-alive pool, as a
    gateway in the sense of RFC 9110 §3.7 (fields cleaned per §7.6).

    Handles ``lifespan`` itself (the pool is closed on shutdown) and answers ``websocket``
    scopes with a close (not proxied). https upstreams are verified, certificate and host
    name, with ``ssl.create_default_context()``; ``ssl_context`` replaces it (a private CA).
    ``request_id_header`` names the field that carries the request id to the upstream (the
    policy's ``request_id.header``); a client's copy of it is never forwarded.
    ``protected_fields`` adds to the fields that a ``Connection`` option may not name (the
    configured API key header, header parameters the schemas validate).

    The verified identity is read from ``ctx.extra["identity_headers"]``: a list of
    ``(name, value)`` pairs, ``bytes`` or ``str``, every name starting with
    ``X-Authenticated-``, set by the authentication stage. They are appended after the
    client's fields are cleaned, and a client's own ``X-Authenticated-*`` fields never pass.

    Trust assumption: the upstream URL comes from the operator's policy; everything received
    from the client and from the upstream is checked before it is passed on.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        ssl_context: ssl.SSLContext | None = None,
        request_id_header: str = "X-Request-ID",
        protected_fields: Iterable[str] = (),
    ) -> None:
        parts = urlsplit(upstream.url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"upstream URL {upstream.url!r} has an invalid port") from exc
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ConfigError(f"upstream URL {upstream.url!r} is not http:// or https://")
        https = parts.scheme == "https"
        default_port = 443 if https else 80
        authority = f"[{host}]" if ":" in host else host
        if port is not None and port != default_port:
            authority = f"{authority}:{port}"
        if https and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self.upstream = upstream
        self._base = quote(parts.path.rstrip("/"), safe=_PATH_SAFE + "%").encode("ascii")
        self._host = authority.encode("idna")
        self._request_id_header = request_id_header.lower().encode("ascii")
        self._protected = CONNECTION_PROTECTED | {
            name.strip().lower().encode("latin-1") for name in protected_fields
        }
        self._origin = Origin(
            parts.scheme, host.lower(), port or default_port, self._base.decode("ascii")
        )
        self._guard = upstream.stacktrace_guard
        timeouts = upstream.timeouts
        self.pool = ConnectionPool(
            host=host,
            port=port or default_port,
            ssl_context=ssl_context if https else None,
            max_connections=upstream.pool.max_connections,
            idle_timeout=upstream.pool.idle_timeout,
            connect_timeout=timeouts.connect,
            read_timeout=timeouts.read,
            total_timeout=timeouts.total,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            pool = self.pool
            exchange = pool.watch()
            try:
                await self._proxy(scope, receive, send, exchange)
            except _ClientGone:
                return
            except asyncio.CancelledError:
                # Ours only when the exchange expired and nobody else cancelled the task too.
                task = exchange.task
                if exchange.expired is None or task is None or task.uncancel() > 0:
                    raise
                error = exchange.timeout_error()
                raise error from error.__cause__
            finally:
                pool.unwatch(exchange)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    async def aclose(self) -> None:
        """Close the pool's connections; later requests fail with 502."""
        await self.pool.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        method: str = scope["method"]
        headers = scope["headers"]
        ctx: RequestContext | None = scope.get(SCOPE_KEY)
        identity: Iterable[tuple[bytes | str, bytes | str]] = ()
        if ctx is not None:
            request_id = ctx.request_id
            client_ip, scheme, client_host = ctx.client_ip, ctx.scheme, ctx.host
            identity = ctx.extra.get(IDENTITY_HEADERS_KEY, ())
        else:
            request_id = secrets.token_hex(16)
            client = scope.get("client")
            client_ip = client[0] if client else ""
            scheme = scope.get("scheme", "http")
            client_host = _header(headers, b"host")
        head, client_length, client_chunked = build_request_head(
            method,
            self._target(scope),
            headers,
            host=self._host,
            client_ip=client_ip,
            scheme=scheme,
            client_host=client_host,
            request_id=request_id,
            request_id_header=self._request_id_header,
            identity=identity,
            protected=self._protected,
        )
        body = b""
        more = False
        # RFC 9112 §6.3: without Content-Length or Transfer-Encoding an HTTP/1 request has no
        # content, and the server's one empty http.request message is not worth waiting for on
        # the hot path. HTTP/2 and 3 carry content in frames without Content-Length.
        if client_length is not None or client_chunked or scope.get("http_version") not in _FRAMED:
            # No connection is taken before the body starts to arrive (empty pieces do not
            # count): a client that sends a head and then nothing must not hold one.
            exchange.receiving = exchange.activity = True
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                body = message.get("body", b"")
                more = message.get("more_body", False)
                if body or not more:
                    break
                exchange.activity = True
            exchange.receiving = False
        chunked = False
        if more:
            if client_length is None:
                chunked = True
                parts = [head, b"transfer-encoding: chunked\r\n\r\n", *_chunk(body)]
            else:
                length = client_length.strip()
                if not length.isdigit():
                    raise BadRequestError("The request could not be forwarded.")
                parts = [head, b"content-length: ", length, b"\r\n\r\n", body]
        elif body or client_length is not None or method in _BODY_METHODS:
            parts = [head, b"content-length: %d\r\n\r\n" % len(body), body]
        else:
            parts = [head, b"\r\n"]

        pool = self.pool
        head_request = method == "HEAD"
        conn = pool.acquire_idle() or await pool.acquire()
        try:
            conn.start(parts, head_request=head_request, complete=not more)
            if more:
                await _upload(conn, receive, chunked, exchange)
            while not conn.head_ready:
                await conn.changed()
        except UpstreamError as exc:
            pool.release(conn)
            # A kept-alive connection the upstream closed just as we wrote: retry once on a
            # new connection, when the request is still whole in hand and safe to repeat.
            if (
                more
                or method not in _IDEMPOTENT
                or not conn.reused
                or conn.received
                or isinstance(exc, UpstreamTimeoutError)
            ):
                raise
            conn = await pool.acquire(fresh=True)
            try:
                conn.start(parts, head_request=head_request, complete=True)
                await conn.wait_head()
            except BaseException:
                pool.release(conn)
                raise
        except BaseException:
            pool.release(conn)
            raise
        await self._respond(conn, send, exchange, request_id)

    def _target(self, scope: Scope) -> bytes:
        raw: bytes | None = scope.get("raw_path")
        if raw is None:
            raw = quote(scope["path"], safe=_PATH_SAFE).encode("ascii")
        elif b"?" in raw:  # some servers leave the query in raw_path; it is query_string's
            raw = raw.partition(b"?")[0]
        if raw[:1] != b"/":
            # "OPTIONS *" (RFC 9112 §3.2.4) maps to the base path; nothing else is a path.
            if raw != b"*" or scope["method"] != "OPTIONS":
                raise BadRequestError("The request could not be forwarded.")
            raw = b"" if self._base else b"*"
        target = self._base + raw if self._base else raw
        query: bytes = scope.get("query_string", b"")
        if query:
            target = b"?".join((target, query))
        # A space would end the request-target early (RFC 9112 §3.2); line breaks are caught
        # with the whole head.
        if b" " in target:
            raise BadRequestError("The request could not be forwarded.")
        return target or b"/"

    async def _respond(
        self, conn: UpstreamConnection, send: Send, exchange: Exchange, request_id: str
    ) -> None:
        """Send the response; owns ``conn`` and gives it back to the pool as soon as the
        whole response is in our buffers, before the client has read it."""
        pool = self.pool
        held: UpstreamConnection | None = conn
        try:
            status = conn.status
            headers, content_type, content_encoding = clean_response_headers(
                conn.headers, status, origin=self._origin
            )
            if status >= 500 and self._guard:
                body = await _read_prefix(conn, GUARD_WINDOW)
                self._check_error_body(
                    body, conn.finished, status, content_type, content_encoding, request_id
                )
            else:
                body = conn.take_body()
            if conn.error is not None:
                raise conn.error  # already known broken: still time for an honest 502 or 504
            start: Message = {"type": "http.response.start", "status": status, "headers": headers}
            if conn.complete:
                # The common case: the whole answer is in hand before the client reads a byte.
                held = None
                pool.release(conn)
                exchange.started = exchange.sending = True
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            rest: list[bytes] = []

            def detach(done: UpstreamConnection) -> None:
                # Called by the connection the moment the response is complete: the rest is
                # ours to serve from memory, the connection goes back for the next request.
                nonlocal held
                data = done.take_body()
                if data:
                    rest.append(data)
                held = None
                pool.release(done)

            conn.on_complete(detach)
            exchange.started = exchange.sending = True
            await send(start)
            exchange.sending = False
            try:
                while True:
                    if held is None:
                        body += b"".join(rest)
                        break
                    if not body:
                        body = held.take_body()
                    if body:
                        exchange.sending = True
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                        exchange.sending = False
                        body = b""
                        continue
                    if held.complete:
                        detach(held)  # completed before the callback was set
                        continue
                    await held.changed()
            except UpstreamError as exc:
                raise UpstreamAbortedError("The upstream service failed mid-response.") from exc
            exchange.sending = True
            await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            if held is not None:
                held.on_complete(None)
                pool.release(held)

    def _check_error_body(
        self,
        body: bytes,
        whole: bool,
        status: int,
        content_type: bytes,
        content_encoding: bytes,
        request_id: str,
    ) -> None:
        """Raise ``upstream_error_hidden`` unless the 5xx body is safe to show
        (:func:`~apishield.proxy.leaks.error_body_verdict`), and log why, safely."""
        media_type = content_type.decode("latin-1")
        reason, readable = error_body_verdict(
            body, whole, media_type, content_encoding.decode("latin-1")
        )
        if reason is None:
            return
        # Never the body itself: error pages carry passwords and keys. A fingerprint lets the
        # operator match the upstream's own log; the excerpt is redacted, and %r keeps the
        # upstream's line breaks from forging log lines (CWE-117).
        excerpt = "" if readable is None else redact_excerpt(readable, media_type)
        logger.warning(
            "upstream %d response hidden from the client (%s), request_id=%s, "
            "length=%d%s, sha256=%s, excerpt=%r",
            status,
            reason,
            request_id,
            len(body),
            "" if whole else "+",
            hashlib.sha256(body).hexdigest(),
            excerpt,
            extra={"request_id": request_id, "upstream_status": status},
        )
        raise UpstreamError(
            "The upstream service failed.", code="upstream_error_hidden", status=status
        )


async def _upload(
    conn: UpstreamConnection, receive: Receive, chunked: bool, exchange: Exchange
) -> None:
    """Stream the rest of the request body to the upstream, honouring its flow control."""
    while True:
        if conn.head_ready:
            # The upstream answered before reading everything (a 413, say): stop sending.
            conn.abandon_request()
            return
        exchange.receiving = exchange.activity = True
        message = await receive()
        exchange.receiving = False
        if message["type"] != "http.request":
            conn.abort()
            raise _ClientGone
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if chunked:
            parts = _chunk(body)
            if not more:
                parts.append(_END_CHUNKS)
        else:
            parts = [body]
        conn.write_body(parts, last=not more)
        if not more:
            return
        if conn.write_paused:
            await conn.drain()


async def _read_prefix(conn: UpstreamConnection, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = conn.take_body()
        if chunk:
            parts.append(chunk)
            size += len(chunk)
        if size >= limit or conn.finished:
            return b"".join(parts)
        await conn.wait_body()


def _chunk(body: bytes) -> list[bytes]:
    """One chunk of RFC 9112 §7.1 chunked coding; an empty body is no chunk at all (a
    zero-size chunk would end the message)."""
    if not body:
        return []
    return [b"%x\r\n" % len(body), body, b"\r\n"]


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""
