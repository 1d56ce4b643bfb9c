"""In-process mode: the pipeline around FastAPI and Starlette apps, no network hop."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from apishield import PolicyError, protect

POLICY = {
    "apishield": 1,
    "routes": [
        {"path": "/items/{item_id}", "methods": ["GET"], "allow": "public"},
        {"path": "/items", "methods": ["POST"], "allow": "public", "body_limit": 128},
        {"path": "/boom", "methods": ["GET"], "allow": "public"},
    ],
}


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/items")
    async def post_item(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    @app.get("/admin")
    async def admin() -> dict[str, str]:
        return {"secret": "admin area"}

    return app


def starlette_app() -> Starlette:
    async def get_item(request: Request) -> JSONResponse:
        return JSONResponse({"item_id": int(request.path_params["item_id"])})

    async def post_item(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("database password is hunter2")

    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"secret": "admin area"})

    return Starlette(
        routes=[
            Route("/items/{item_id}", get_item),
            Route("/items", post_item, methods=["POST"]),
            Route("/boom", boom),
            Route("/admin", admin),
        ]
    )


@pytest.fixture(params=[fastapi_app, starlette_app], ids=["fastapi", "starlette"])
async def client(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    app = protect(request.param(), POLICY)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.test") as c:
        yield c


async def test_allowed(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/7")
    assert response.status_code == 200
    assert response.json() == {"item_id": 7}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_route_not_in_policy_is_unreachable(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin")
    assert response.status_code == 404
    assert response.json()["code"] == "route_not_found"
    assert "admin area" not in response.text


async def test_body_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"x": "y" * 500})
    assert response.status_code == 413
    ok = await client.post("/items", json={"x": "y"})
    assert ok.status_code == 200 and ok.json() == {"size": 9}


async def test_app_crash_reveals_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert "hunter2" not in response.text and "Traceback" not in response.text


def test_bad_policy_is_located() -> None:
    with pytest.raises(PolicyError) as info:
        protect(fastapi_app(), {"apishield": 1, "routes": [{"path": "/x", "methods": ["FETCH"]}]})
    assert str(info.value) == "<policy>: routes[0].methods: 'FETCH' is not an HTTP method"
