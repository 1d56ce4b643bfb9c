"""The upstream stage: an ASGI app that forwards each request to the upstream API.

It is the innermost app of the gateway (DESIGN stage 12). Requests and responses stream in
both directions: a body is never held whole, only up to the pool's flow-control window, except
the first 64 KiB of a 5xx answer when the stack-trace guard needs to look at it.

Failures before the response starts raise from the error tree, for the errors stage to
render: ``UpstreamError`` 502 ``upstream_unavailable`` (refused, reset, DNS, TLS, malformed),
``UpstreamTimeoutError`` 504 ``upstream_timeout``, ``UpstreamError`` 503
``upstream_pool_exhausted`` and, when the guard hides a stack trace, ``UpstreamError`` with the
upstream's own 5xx status and ``upstream_error_hidden``. Once the status line has gone out
nothing can be said any more: :class:`UpstreamAbortedError` is raised without the final body
message, so the server drops the client connection and the client sees a truncated message
(a missing last chunk or a short ``Content-Length``), never one that looks complete.

Trust assumption: the request context (``scope["apishield"]``) was filled by our own stages
and is believed; without one (standalone use) the server's view of the client is used.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from typing import Final
from urllib.parse import quote, urlsplit

from apishield.errors import BadRequestError, ConfigError, UpstreamError, UpstreamTimeoutError
from apishield.pipeline.context import SCOPE_KEY, RequestContext
from apishield.policy.models import Upstream
from apishield.proxy.connection import UpstreamConnection
from apishield.proxy.headers import build_request_head, clean_response_headers
from apishield.proxy.leaks import decode_for_inspection, looks_like_stack_trace
from apishield.proxy.pool import ConnectionPool
from apishield.types import Message, Receive, Scope, Send

logger = logging.getLogger("apishield.upstream")

#: How much of a 5xx body the stack-trace guard reads before deciding.
GUARD_WINDOW: Final = 64 * 1024
#: How much of a hidden body goes to the log.
LOGGED_BODY: Final = 4 * 1024

# RFC 9110 §9.2.2: "A proxy MUST NOT automatically retry non-idempotent requests."
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods whose empty body still gets "Content-Length: 0" (RFC 9110 §8.6).
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
# HTTP versions whose framing headers say whether a request has content; HTTP/2 and 3 carry
# content in frames without Content-Length.
_FRAMED: Final = frozenset({"1.1", "1.0"})
_END_CHUNKS: Final = b"0\r\n\r\n"


class UpstreamAbortedError(UpstreamError):
    """The upstream failed after the response had started.

    The status line is already with the client, so no error response can follow; the server
    must drop the connection (uvicorn does, for any exception raised after the start), which the
    client sees as a truncated message.
    """

    code = "upstream_aborted"


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

    Trust assumption: the upstream URL comes from the operator's policy; everything received
    from the client and from the upstream is checked before it is passed on.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        ssl_context: ssl.SSLContext | None = None,
        request_id_header: str = "X-Request-ID",
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
            try:
                await self._proxy(scope, receive, send)
            except _ClientGone:
                return
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

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        headers = scope["headers"]
        ctx: RequestContext | None = scope.get(SCOPE_KEY)
        if ctx is not None:
            request_id = ctx.request_id
            client_ip, scheme, client_host = ctx.client_ip, ctx.scheme, ctx.host
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
        )

        body: bytes
        more: bool
        if client_length is None and not client_chunked and scope.get("http_version") in _FRAMED:
            # No content by HTTP/1 framing (RFC 9112 §6.3): the server's one empty
            # http.request message is not worth waiting for on the hot path.
            body, more = b"", False
        else:
            message = await receive()
            if message["type"] != "http.request":
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
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
                await _upload(conn, receive, chunked)
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
        try:
            await self._respond(conn, send, request_id)
        finally:
            pool.release(conn)

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

    async def _respond(self, conn: UpstreamConnection, send: Send, request_id: str) -> None:
        status = conn.status
        headers, content_type, content_encoding = clean_response_headers(conn.headers, status)
        if status >= 500 and self._guard:
            body = await _read_prefix(conn, GUARD_WINDOW)
            self._check_error_body(body, status, content_type, content_encoding, request_id)
        else:
            body = conn.take_body()
        if conn.error is not None:
            raise conn.error  # already known broken: still time for an honest 502 or 504
        start: Message = {"type": "http.response.start", "status": status, "headers": headers}
        await send(start)
        try:
            while not conn.finished:
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                await conn.wait_body()
                body = conn.take_body()
        except UpstreamError as exc:
            raise UpstreamAbortedError("The upstream service failed mid-response.") from exc
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _check_error_body(
        self,
        body: bytes,
        status: int,
        content_type: bytes,
        content_encoding: bytes,
        request_id: str,
    ) -> None:
        readable = decode_for_inspection(body, content_encoding.decode("latin-1"))
        if readable is not None and not looks_like_stack_trace(
            readable, content_type.decode("latin-1")
        ):
            return
        shown = body if readable is None else readable
        # %r keeps the upstream's line breaks from forging log lines (CWE-117).
        logger.warning(
            "upstream %d response hidden from the client (%s), request_id=%s: %r",
            status,
            "unreadable content coding" if readable is None else "looks like a stack trace",
            request_id,
            shown[:LOGGED_BODY].decode("utf-8", "replace"),
            extra={"request_id": request_id, "upstream_status": status},
        )
        raise UpstreamError(
            "The upstream service failed.", code="upstream_error_hidden", status=status
        )


async def _upload(conn: UpstreamConnection, receive: Receive, chunked: bool) -> None:
    """Stream the rest of the request body to the upstream, honouring its flow control."""
    while True:
        if conn.head_ready:
            # The upstream answered before reading everything (a 413, say): stop sending.
            conn.abandon_request()
            return
        message = await receive()
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
