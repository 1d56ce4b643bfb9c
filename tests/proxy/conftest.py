"""Fixtures: raw loopback upstreams and ``UpstreamApp``s, all closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from apishield.policy.models import Upstream
from apishield.proxy import UpstreamApp
from tests.proxy.upstreams import Handler, RawUpstream, echo


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawUpstream]]]:
    """Start raw upstreams with a handler: ``server = await serve(handler)``."""
    servers: list[RawUpstream] = []

    async def start(handler: Handler = echo, **kwargs: Any) -> RawUpstream:
        server = RawUpstream(handler)
        await server.start(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def make_app() -> AsyncIterator[Callable[..., UpstreamApp]]:
    """Build ``UpstreamApp``s that are closed at teardown."""
    apps: list[UpstreamApp] = []

    def build(url: str, **settings: Any) -> UpstreamApp:
        ssl_context = settings.pop("ssl_context", None)
        app = UpstreamApp(
            Upstream.model_validate({"url": url, **settings}), ssl_context=ssl_context
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        await app.aclose()
