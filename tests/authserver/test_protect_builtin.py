"""In-process mode with the built-in server: ``protect(app, policy)`` around FastAPI and
Starlette apps answers ``/oauth2/*`` and its metadata, accepts its tokens on scoped routes,
refuses them without the scope or once revoked, and still runs the app's own lifespan."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apishield import protect
from apishield.identity.secretkey import load_secret_keys
from apishield.policy import parse_policy
from apishield.policy.load import resolve_paths
from apishield.store import Store

ISSUER = "https://api.test"
ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the ASGI lifespan as a server would, around the block."""
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


def policy_for(tmp_path: Path) -> Any:
    return resolve_paths(
        parse_policy(
            {
                "apishield": 1,
                "state": {"dir": str(tmp_path / "state")},
                "identity": {"issuers": [{"builtin": True, "issuer": ISSUER}]},
                "routes": [
                    {"path": "/orders", "methods": ["GET"], "allow": {"scopes": ["orders:read"]}},
                    {
                        "path": "/orders",
                        "methods": ["DELETE"],
                        "allow": {"scopes": ["orders:admin"]},
                    },
                ],
            }
        ),
        tmp_path,
    )


def fastapi_app(events: list[str]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=app_lifespan)

    @app.get("/orders")
    async def orders(request: Request) -> dict[str, str]:
        return {"subject": request.headers["x-authenticated-subject"]}

    @app.delete("/orders")
    async def drop(request: Request) -> dict[str, str]:
        return {"dropped": "all"}

    return app


def starlette_app(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"subject": request.headers["x-authenticated-subject"]})

    async def drop(request: Request) -> JSONResponse:
        return JSONResponse({"dropped": "all"})

    return Starlette(
        routes=[
            Route("/orders", orders, methods=["GET"]),
            Route("/orders", drop, methods=["DELETE"]),
        ],
        lifespan=app_lifespan,
    )


async def register(policy: Any) -> str:
    """A client-credentials client ``reporting``; its Basic credentials."""
    async with Store.from_policy(policy) as store:
        await store.migrate()
        _, secret = await store.clients.register(
            name="reporting",
            grant_types=["client_credentials"],
            scopes=["orders:read"],
            client_id="reporting",
            resources=[ISSUER],
        )
    assert secret is not None
    return "Basic " + base64.b64encode(f"reporting:{secret}".encode()).decode()


@pytest.mark.parametrize("make", [fastapi_app, starlette_app], ids=["fastapi", "starlette"])
async def test_builtin_server_in_process(tmp_path: Path, make: Callable[[list[str]], Any]) -> None:
    policy = policy_for(tmp_path)
    basic = await register(policy)
    events: list[str] = []
    app = protect(make(events), policy)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url=ISSUER) as client,
    ):
        assert events == ["startup"]  # the app's own lifespan ran through the pipeline

        metadata = await client.get("/.well-known/oauth-authorization-server")
        assert metadata.status_code == 200
        assert metadata.json()["issuer"] == ISSUER
        assert metadata.json()["token_endpoint"] == ISSUER + "/oauth2/token"
        assert (await client.get("/oauth2/jwks")).json()["keys"] == []  # none signed yet

        issued = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "orders:read", "resource": ISSUER},
            headers={"authorization": basic},
        )
        assert issued.status_code == 200, issued.text
        assert issued.headers["cache-control"] == "no-store"
        token = issued.json()["access_token"]
        bearer = {"authorization": f"Bearer {token}"}
        assert len((await client.get("/oauth2/jwks")).json()["keys"]) >= 1

        ok = await client.get("/orders", headers=bearer)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"subject": "client:reporting"}

        unscoped = await client.delete("/orders", headers=bearer)
        assert unscoped.status_code == 403
        assert unscoped.json()["code"] == "scope_missing"
        assert "insufficient_scope" in unscoped.headers["www-authenticate"]

        refused = await client.post("/oauth2/token", data={"grant_type": "client_credentials"})
        assert refused.status_code == 401 and refused.json() == {"error": "invalid_client"}

        revoked = await client.post(
            "/oauth2/revoke", data={"token": token}, headers={"authorization": basic}
        )
        assert revoked.status_code == 200
        after = await client.get("/orders", headers=bearer)
        assert after.status_code == 401
        assert after.json()["code"] == "token_revoked"
        assert 'error="invalid_token"' in after.headers["www-authenticate"]
    assert events == ["startup", "shutdown"]


def test_without_lifespan_nothing_is_left_open(tmp_path: Path) -> None:
    """A host that runs no lifespan: the store opens on the first request and is closed
    with the event loop, so the process exits (a pooled SQLite connection is a non-daemon
    thread) and no unclosed-resource warning is raised (-W error)."""
    policy = policy_for(tmp_path)
    load_secret_keys(policy.state)  # made here, so that its creation notice is not the script's
    script = textwrap.dedent(
        f"""
        import asyncio, httpx
        from starlette.applications import Starlette
        from apishield import protect
        from apishield.policy import parse_policy
        from apishield.policy.load import resolve_paths
        from pathlib import Path

        document = {policy.model_dump(mode="json", exclude_unset=True)!r}
        policy = resolve_paths(parse_policy(document), Path({str(tmp_path)!r}))
        app = protect(Starlette(), policy)

        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="{ISSUER}") as client:
                for _ in range(2):
                    answer = await client.get("/oauth2/jwks")
                    assert answer.status_code == 200, answer.text
                    print("jwks", answer.status_code)

        asyncio.run(main())
        asyncio.run(main())  # a second loop starts afresh
        print("done")
        """
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-W", "error", "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["jwks", "200"] * 4 + ["done"]
    assert result.stderr == ""
