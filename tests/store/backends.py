"""One parametrized store fixture over both backends: SQLite and PostgreSQL.

PostgreSQL runs in a schema of its own, unique to this test run (``?schema=``), dropped at
the end; SQLite gets a fresh copy of a migrated file per test. Tests import the fixtures they
need from here (``from tests.store.backends import store, store_url  # noqa: F401``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from apishield.store import Store, migrate, parse_store_url
from apishield.store.tables import metadata

POSTGRES = os.environ.get("APISHIELD_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]
T = TypeVar("T")


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own, in another thread, so that session set-up never
    touches the event loop of the test being set up."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def unique_schema() -> str:
    return f"apishield_test_{os.getpid()}_{secrets.token_hex(4)}"


def postgres_url(schema: str) -> str:
    return f"{POSTGRES}?schema={schema}"


async def drop_schema(schema: str) -> None:
    engine = create_async_engine(parse_store_url(POSTGRES).url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await engine.dispose()


async def empty_tables(url: str) -> None:
    location = parse_store_url(url)
    engine = create_async_engine(
        location.url, connect_args=location.connect_args, poolclass=NullPool
    )
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await engine.dispose()


class Clock:
    """A settable UTC clock for the store: tests move time instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    schema = unique_schema()
    url = postgres_url(schema)
    run_in_thread(migrate(url))
    yield url
    run_in_thread(drop_schema(schema))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store-template") / "apishield.db"
    run_in_thread(migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store's URL, on each backend in turn."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "state" / "apishield.db"
        path.parent.mkdir(mode=0o700)
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_session_url")
    await empty_tables(url)
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(store_url: str, clock: Clock) -> AsyncIterator[Store]:
    """An open ``Store`` on each backend, with a settable clock."""
    opened = Store(store_url, auto_migrate=False, clock=clock)
    yield opened
    await opened.aclose()
