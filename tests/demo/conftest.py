from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from apishield.demo.api import create_demo_api
from apishield.types import ASGIApp


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "demo-api.sqlite3"


@pytest.fixture
def demo_api(db_path: Path) -> ASGIApp:
    return create_demo_api(db_path)


@pytest.fixture
async def client(demo_api: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=demo_api)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as client:
        yield client
