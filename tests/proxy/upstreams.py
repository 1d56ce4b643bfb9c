"""Real loopback upstreams for the proxy tests, and a driver that calls the ASGI app directly.

``RawUpstream`` is an asyncio server on 127.0.0.1 whose per-connection behaviour is a coroutine
the test writes, so that it can misbehave exactly as needed (reset mid-headers, never answer,
close idle connections, send framing errors). ``echo`` answers every request with what it saw.
``served`` runs an ASGI app under uvicorn on loopback, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from apishield.pipeline.context import SCOPE_KEY, RequestContext
from apishield.proxy import UpstreamApp
from apishield.types import ASGIApp, Message


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    body_length: int
    sha256: str
    connection: int
    index: int  # position of this request on its connection, from 0

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


class Connection:
    """One accepted upstream connection, as the test's handler sees it."""

    def __init__(
        self,
        server: RawUpstream,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.number = number
        self.reader = reader
        self.writer = writer
        self.count = 0

    async def read_request(self, *, keep_body: bool = True) -> SeenRequest | None:
        """The next request, or None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, _ = lines[0].split(" ", 2)
        headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
        pairs: list[tuple[str, str]] = [(k, v) for k, v in headers]
        lowered = {k.lower(): v for k, v in pairs}
        digest = hashlib.sha256()
        kept = bytearray()
        length = 0

        def take(data: bytes) -> None:
            nonlocal length
            length += len(data)
            digest.update(data)
            if keep_body:
                kept.extend(data)

        if lowered.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                take(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
        elif "content-length" in lowered:
            remaining = int(lowered["content-length"])
            while remaining:
                data = await self.reader.read(min(remaining, 256 * 1024))
                if not data:
                    raise ConnectionError("client closed mid-body")
                remaining -= len(data)
                take(data)
        request = SeenRequest(
            method=method,
            target=target,
            headers=pairs,
            body=bytes(kept),
            body_length=length,
            sha256=digest.hexdigest(),
            connection=self.number,
            index=self.count,
        )
        self.count += 1
        self.server.requests.append(request)
        return request

    async def respond(
        self,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        reason: str = "OK",
        version: str = "1.1",
        content_length: bool = True,
    ) -> None:
        lines = [f"HTTP/{version} {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if content_length:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) rather than a FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Connection], Awaitable[None]]


async def echo(conn: Connection) -> None:
    """Answer each request with JSON describing it, keeping the connection alive."""
    while (request := await conn.read_request()) is not None:
        payload = {
            "method": request.method,
            "target": request.target,
            "headers": request.headers,
            "body_length": request.body_length,
            "sha256": request.sha256,
            "connection": request.connection,
            "index": request.index,
        }
        await conn.respond(
            200, [("Content-Type", "application/json")], json.dumps(payload).encode()
        )


@dataclass
class RawUpstream:
    """A raw HTTP/1.1 server on 127.0.0.1, port chosen by the kernel."""

    handler: Handler
    requests: list[SeenRequest] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, scheme: str = "http", path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def start(self, **kwargs: Any) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, **kwargs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(Connection(self, self.connections, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Stopped by close(); ending normally keeps asyncio's stream callback quiet.
            pass
        finally:
            self.open_now -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()


@dataclass
class Result:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    body_length: int = 0
    messages: list[Message] = field(default_factory=list)
    error: BaseException | None = None

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for k, v in self.headers if k.lower() == name.encode()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def finished(self) -> bool:
        """Whether the final body message (more_body False) was sent."""
        return any(
            m["type"] == "http.response.body" and not m.get("more_body", False)
            for m in self.messages
        )


def context(**fields: Any) -> RequestContext:
    values: dict[str, Any] = {
        "request_id": "req-123",
        "client_ip": "203.0.113.7",
        "scheme": "https",
        "host": "api.example.com",
    }
    values.update(fields)
    return RequestContext(**values)


def http_scope(
    method: str = "GET",
    path: str = "/",
    *,
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> dict[str, Any]:
    """An ASGI http scope as uvicorn builds it (names lower-cased, no query in raw_path)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in headers],
        "client": ("198.51.100.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def no_body() -> Message:
    """``receive`` for a request without content."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def drive(
    app: UpstreamApp,
    method: str = "GET",
    path: str = "/",
    *,
    raw_path: bytes | None = None,
    omit_raw_path: bool = False,
    query: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: Iterable[bytes] | bytes = b"",
    ctx: RequestContext | None | bool = True,
    keep_body: bool = True,
    disconnect: bool = False,
    raise_errors: bool = False,
) -> Result:
    """Call ``app`` with an http scope, as an ASGI server would, and collect what it sends.

    ``body`` given as an iterable is delivered one ``http.request`` message per item with
    ``more_body`` set on all but the last; with ``disconnect`` on all of them, and the client
    then leaves. Unless ``headers`` frame the body, ``Content-Length`` (bytes) or
    ``Transfer-Encoding: chunked`` (an iterable) is added, as an HTTP/1.1 client sends them.
    ``ctx=True`` sets a default RequestContext.
    """
    fields = [(k.lower(), v) for k, v in headers]
    if not any(k in (b"content-length", b"transfer-encoding") for k, _ in fields):
        # Frame the body as an HTTP/1.1 client would have.
        if not isinstance(body, bytes):
            fields.append((b"transfer-encoding", b"chunked"))
        elif body:
            fields.append((b"content-length", str(len(body)).encode()))
    scope = http_scope(method, path, raw_path=raw_path, query=query, headers=fields)
    if omit_raw_path:
        del scope["raw_path"]
    if ctx is True:
        scope[SCOPE_KEY] = context()
    elif isinstance(ctx, RequestContext):
        scope[SCOPE_KEY] = ctx
    chunks: list[bytes] = [body] if isinstance(body, bytes) else list(body)
    if not chunks:
        chunks = [b""]
    position = 0

    async def receive() -> Message:
        nonlocal position
        if position < len(chunks):
            chunk = chunks[position]
            position += 1
            more = position < len(chunks) or disconnect
            return {"type": "http.request", "body": chunk, "more_body": more}
        if disconnect:
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # like a server: nothing more until the client leaves
        raise AssertionError("unreachable")

    result = Result()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = list(message.get("headers", []))
            result.messages.append(message)
        else:
            chunk = message.get("body", b"")
            result.body_length += len(chunk)
            if keep_body:
                result.body += chunk
            result.messages.append({k: v for k, v in message.items() if k != "body"})

    try:
        await app(scope, receive, send)
    except Exception as exc:
        if raise_errors:
            raise
        result.error = exc
    return result


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def served(app: ASGIApp, *, send_buffer: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (httptools) on a free loopback port; yield its base URL.

    ``send_buffer`` sets ``SO_SNDBUF`` on the listening socket (accepted sockets inherit it),
    so that a client that does not read fills the server's buffers quickly.
    """
    sock = socket.socket()
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http="httptools",
        lifespan="on",
        proxy_headers=False,  # client addresses are the transport stage's business
        log_config=None,  # leave logging to the test (caplog)
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
