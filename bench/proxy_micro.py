"""CPU cost per request of the upstream proxy alone, without an HTTP server in front of it.

Starts a minimal keep-alive upstream in a child process (so its CPU is not ours), then calls
``UpstreamApp`` directly as an ASGI app from several concurrent tasks on uvloop, and reports
process CPU time (``time.process_time``) per request. The same loop calling a trivial ASGI app
that answers by itself gives the floor the proxy adds to.

    python bench/proxy_micro.py [--requests 20000] [--concurrency 8] [--body 0]

Figures are CPU µs per request of this process only (user and kernel time: on loopback the
kernel's TCP work for what we send is charged to us); wall time depends on the machine. The
scope carries a ``RequestContext`` as the pipeline's first stage would set it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from typing import Any

from apishield.pipeline.context import SCOPE_KEY, RequestContext
from apishield.policy.models import Upstream
from apishield.proxy import UpstreamApp
from apishield.types import ASGIApp, Message

_RESPONSE_BODY = b'{"ok":true,"items":[1,2,3]}'


def _upstream(sock: socket.socket, body_size: int) -> None:
    """A fixed-answer HTTP/1.1 keep-alive server: finds each request's end, answers at once."""
    import uvloop

    body = _RESPONSE_BODY if body_size == 0 else b"x" * body_size
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Date: Mon, 02 Nov 2026 10:00:00 GMT\r\nServer: bench\r\n\r\n%s" % (len(body), body)
    )

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.pending = b""

        def data_received(self, data: bytes) -> None:
            data = self.pending + data
            count = data.count(b"\r\n\r\n")  # GETs only: a request is its head
            self.pending = data[data.rfind(b"\r\n\r\n") + 4 :] if count else data
            if count:
                self.transport.write(response * count)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Answer, sock=sock)
        await server.serve_forever()

    uvloop.run(main())


def _scope(port: int) -> dict[str, Any]:
    ctx = RequestContext(
        request_id="5f2b9c1e8a7d4c3b2a190817",
        client_ip="198.51.100.23",
        scheme="https",
        host="api.example.com",
    )
    return {
        SCOPE_KEY: ctx,
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/orders/42",
        "raw_path": b"/v1/orders/42",
        "query_string": b"expand=items",
        "root_path": "",
        "headers": [
            (b"host", b"api.example.com"),
            (b"user-agent", b"wrk/4.2"),
            (b"accept", b"application/json"),
            (b"accept-encoding", b"gzip"),
            (b"authorization", b"Bearer abc.def.ghi"),
            (b"connection", b"keep-alive"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", port),
    }


async def _run(app: ASGIApp, port: int, requests: int, concurrency: int) -> float:
    received: Message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> Message:
        return received

    async def send(message: Message) -> None:
        return None

    async def worker(count: int) -> None:
        for _ in range(count):
            await app(_scope(port), receive, send)

    per_task = requests // concurrency
    await asyncio.gather(*(worker(50) for _ in range(concurrency)))  # warm up the pool
    start = time.process_time()
    await asyncio.gather(*(worker(per_task) for _ in range(concurrency)))
    return (time.process_time() - start) / (per_task * concurrency) * 1e6


async def _direct(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"27")],
        }
    )
    await send({"type": "http.response.body", "body": _RESPONSE_BODY})


async def _raw_round_trips(port: int, requests: int, concurrency: int) -> float:
    """The kernel's share: fixed request bytes written and the answer awaited, no HTTP logic."""
    loop = asyncio.get_running_loop()
    request = b"GET /v1/orders/42 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"

    class Client(asyncio.Protocol):
        waiter: asyncio.Future[None] | None = None

        def data_received(self, data: bytes) -> None:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    async def worker(count: int) -> None:
        transport, client = await loop.create_connection(Client, "127.0.0.1", port)
        for _ in range(count):
            client.waiter = loop.create_future()
            transport.write(request)
            await client.waiter
        transport.close()

    per_task = requests // concurrency
    start = time.process_time()
    await asyncio.gather(*(worker(per_task) for _ in range(concurrency)))
    return (time.process_time() - start) / (per_task * concurrency) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--body", type=int, default=0, help="response body size (0: 27 bytes)")
    args = parser.parse_args()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    child = multiprocessing.get_context("spawn").Process(
        target=_upstream, args=(sock, args.body), daemon=True
    )
    child.start()
    sock.close()
    try:
        import uvloop

        async def measure() -> tuple[float, float, float]:
            app = UpstreamApp(Upstream(url=f"http://127.0.0.1:{port}"))
            try:
                proxied = await _run(app, port, args.requests, args.concurrency)
            finally:
                await app.aclose()
            direct = await _run(_direct, port, args.requests, args.concurrency)
            raw = await _raw_round_trips(port, args.requests, args.concurrency)
            return proxied, direct, raw

        proxied, direct, raw = uvloop.run(measure())
    finally:
        child.terminate()
        child.join()
    print(f"UpstreamApp, keep-alive GET: {proxied:6.1f} CPU µs per request")
    print(f"direct ASGI app (floor):     {direct:6.1f} CPU µs per request")
    print(f"added by the proxy:          {proxied - direct:6.1f} CPU µs per request")
    print(f"of which socket round trip:  {raw:6.1f} CPU µs per request (no HTTP logic)")


if __name__ == "__main__":
    main()
