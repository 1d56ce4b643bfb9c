"""Stand-in applications and helpers for the serving tests.

Also imported by worker processes (``server_support:build_app``), so it uses no relative
imports and nothing from pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apishield.errors import ConfigError
from apishield.policy.load import parse_policy, resolve_paths
from apishield.policy.models import Policy
from apishield.server import GatewayServer
from apishield.server.serve import run_async
from apishield.types import ASGIApp, Receive, Scope, Send

PID_DIR_ENV = "APISHIELD_TEST_PID_DIR"


class StandInApp:
    """Answers every request with a JSON echo of what the server put in the scope.

    ``/slow`` takes ``slow_seconds``; ``entered`` is set when a request reaches the app, so a
    test knows a request is in flight.
    """

    def __init__(self, *, slow_seconds: float = 1.0, fail_startup: bool = False) -> None:
        self.slow_seconds = slow_seconds
        self.fail_startup = fail_startup
        self.entered = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        self.entered.set()
        if scope["path"] == "/slow":
            pid_dir = os.environ.get(PID_DIR_ENV)
            if pid_dir:  # tells a test in another process that this request is in flight
                (Path(pid_dir) / "slow-entered").touch()
            await asyncio.sleep(self.slow_seconds)
        body = json.dumps(
            {
                "pid": os.getpid(),
                "scheme": scope["scheme"],
                "client": scope["client"][0] if scope.get("client") else None,
                "path": scope["path"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.fail_startup:
                    await send({"type": "lifespan.startup.failed", "message": "stand-in refuses"})
                    return
                pid_dir = os.environ.get(PID_DIR_ENV)
                if pid_dir:
                    (Path(pid_dir) / str(os.getpid())).touch()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(policy: Policy) -> ASGIApp:
    """App factory for ``serve_policy(..., app_factory="server_support:build_app")``."""
    return StandInApp()


def build_failing_app(policy: Policy) -> ASGIApp:
    """App factory that fails the way a bad setting found while building the gateway does."""
    raise ConfigError("stand-in: upstream.url is unreachable by design")


def policy_for(
    state_dir: Path, *, routes: list[dict[str, Any]] | None = None, **listen: Any
) -> Policy:
    """A minimal policy listening on 127.0.0.1 with ``listen`` overrides."""
    data: dict[str, Any] = {
        "apishield": 1,
        "listen": {"address": "127.0.0.1:0", "tls": "dev", **listen},
        "state": {"dir": str(state_dir)},
        "routes": routes or [],
    }
    return resolve_paths(parse_policy(data), state_dir)


@contextlib.contextmanager
def serving_in_thread(policy: Policy, app: ASGIApp) -> Iterator[GatewayServer]:
    """Run a ``GatewayServer`` on its own event loop in a thread, for blocking clients."""
    server = GatewayServer(policy, app)
    started = threading.Event()
    failures: list[BaseException] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        task = asyncio.create_task(server.serve(install_signal_handlers=False))
        try:
            await server.wait_started()
        finally:
            started.set()
        await task

    def run() -> None:
        try:
            run_async(main())
        except BaseException as exc:  # handed to the test thread
            failures.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="gateway-server")
    thread.start()
    try:
        assert started.wait(30), "server did not start"
        if failures:
            raise failures[0]
        yield server
    finally:
        if loops:
            loops[0].call_soon_threadsafe(setattr, server, "should_exit", True)
        thread.join(60)
        assert not thread.is_alive(), "server did not stop"
    if failures:
        raise failures[0]


def tls_handshake(
    port: int, context: ssl.SSLContext, *, hostname: str = "localhost"
) -> ssl.SSLSocket:
    """A connected TLS socket to 127.0.0.1:port (the caller closes it)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname=hostname)
    except BaseException:
        raw.close()
        raise


def http_get(sock: socket.socket, path: str = "/", host: str = "localhost") -> bytes:
    """Send a GET with ``Connection: close`` and read the whole answer."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def build_audited_app(policy: Policy) -> ASGIApp:
    """App factory: the policy's pipeline (audit stage included) around ``StandInApp``."""
    from apishield.pipeline.build import build_pipeline

    return build_pipeline(policy, StandInApp())
