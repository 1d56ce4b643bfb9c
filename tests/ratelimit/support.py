"""Helpers shared by the rate-limit tests and the gateway processes they start.

Imported by ``gateway_app`` in a child process too, so it uses nothing from pytest.

``compose`` builds the pipeline with a stand-in authentication stage and the given guard. When
``build_pipeline`` places the limit and ban stages itself (its ``limits`` parameter), the guard
is handed to it; until then the stages are placed around stage 7 through its
``authentication`` hook, in the order ``build_pipeline`` will use.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import subprocess
import time
from pathlib import Path

from apishield.errors import UnauthorizedError
from apishield.identity.principal import Principal
from apishield.pipeline.bans import BanMiddleware
from apishield.pipeline.build import build_pipeline
from apishield.pipeline.context import get_context
from apishield.pipeline.ratelimit import RateLimitMiddleware
from apishield.policy.load import parse_policy
from apishield.policy.models import Policy
from apishield.ratelimit.guard import RateLimitGuard
from apishield.types import ASGIApp, Receive, Scope, Send

USER_HEADER = b"x-test-user"
ROUTES = ["/v1/limited", "/v1/window", "/v1/open", "/v1/slow", "/oauth2/token", "/oauth2/login"]


def policy(cache: str = "memory://") -> Policy:
    return parse_policy(
        {
            "apishield": 1,
            "listen": {"address": "127.0.0.1:0", "tls": "off"},
            "state": {"cache": cache},
            "routes": [
                {"path": path, "methods": ["GET", "POST"], "allow": "public"} for path in ROUTES
            ],
        }
    )


class StandInAuth:
    """Authentication as stage 7 will do it: ``X-Test-User: NAME`` is a principal, ``bad``
    is refused with 401, no header is anonymous."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == USER_HEADER:
                    if value == b"bad":
                        raise UnauthorizedError(code="authentication_required")
                    get_context(scope).principal = Principal(
                        issuer="test", subject=value.decode(), kind="api_key"
                    )
        await self.app(scope, receive, send)


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected app: 200 with a small JSON body; ``/v1/slow`` waits 0.3 s first."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/v1/slow":
        await asyncio.sleep(0.3)
    body = json.dumps({"ok": True}).encode()
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


def compose(the_policy: Policy, guard: RateLimitGuard, app: ASGIApp = ok_app) -> ASGIApp:
    if "limits" in inspect.signature(build_pipeline).parameters:
        return build_pipeline(the_policy, app, authentication=StandInAuth, limits=guard)  # type: ignore[call-arg, unused-ignore]

    def around_authentication(inner: ASGIApp) -> ASGIApp:
        inner = RateLimitMiddleware(inner, guard=guard, phase="principal")
        inner = BanMiddleware(inner, guard=guard, subject="principal")
        inner = StandInAuth(inner)
        inner = RateLimitMiddleware(inner, guard=guard, phase="ip")
        return BanMiddleware(inner, guard=guard, subject="ip")

    return build_pipeline(the_policy, app, authentication=around_authentication)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` of the test's own on 127.0.0.1, which the test may kill."""

    def __init__(self, port: int, directory: Path, *, password: str | None = None) -> None:
        self.port = port
        self.directory = directory
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
