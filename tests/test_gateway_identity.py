"""The standalone gateway with identity on: the built-in server issues a token through the
whole pipeline, and a protected route accepts it (and refuses it once revoked)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from apishield.identity.apikeys import ApiKeyManager
from apishield.identity.secretkey import load_secret_keys
from apishield.pipeline.build import build_gateway
from apishield.policy import parse_policy
from apishield.policy.load import resolve_paths
from apishield.store.engine import Store
from tests.proxy.upstreams import RawUpstream, echo


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan, as a server would: what it opens, it closes at the end."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await task


def policy_for(tmp_path: Path, upstream: str) -> Any:
    return resolve_paths(
        parse_policy(
            {
                "apishield": 1,
                "listen": {"address": "127.0.0.1:8443"},
                "state": {"dir": str(tmp_path)},
                "upstream": {"url": upstream},
                "identity": {
                    "api_keys": {"header": "X-API-Key", "prefix": "ask_test"},
                    "issuers": [{"builtin": True}],
                },
                "routes": [
                    {"path": "/v1/items", "methods": ["GET"], "allow": {"scopes": ["items:read"]}},
                ],
            }
        ),
        tmp_path,
    )


async def test_builtin_token_and_api_key_through_the_gateway(tmp_path: Path) -> None:
    upstream = RawUpstream(echo)
    await upstream.start()
    policy = policy_for(tmp_path, upstream.url())
    async with Store.from_policy(policy) as store:
        await store.migrate()
        _, secret = await store.clients.register(
            name="reporting",
            grant_types=["client_credentials"],
            scopes=["items:read"],
            client_id="reporting",
            resources=["https://localhost:8443"],
        )
        keys = load_secret_keys(policy.state)
        manager = ApiKeyManager(store, pepper=keys.api_key_pepper, prefix="ask_test")
        created = await manager.create(owner="ops", scopes=["items:read"])
    assert secret is not None
    app = build_gateway(policy)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    basic = base64.b64encode(f"reporting:{secret}".encode()).decode()
    try:
        async with (
            lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="https://localhost:8443") as c,
        ):
            issued = await c.post(
                "/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "scope": "items:read",
                    "resource": "https://localhost:8443",
                },
                headers={"authorization": f"Basic {basic}"},
            )
            assert issued.status_code == 200, issued.text
            assert issued.headers["cache-control"] == "no-store"
            token = issued.json()["access_token"]

            ok = await c.get("/v1/items", headers={"authorization": f"Bearer {token}"})
            assert ok.status_code == 200, ok.text
            forwarded = {k.lower(): v for k, v in json.loads(ok.text)["headers"]}
            assert forwarded["x-authenticated-subject"] == "client:reporting"
            assert "authorization" in forwarded

            anonymous = await c.get("/v1/items")
            assert anonymous.status_code == 401

            by_key = await c.get("/v1/items", headers={"x-api-key": created.key})
            assert by_key.status_code == 200, by_key.text

            revoked = await c.post(
                "/oauth2/revoke", data={"token": token}, headers={"authorization": f"Basic {basic}"}
            )
            assert revoked.status_code == 200
    finally:
        await upstream.close()
