"""The purge scheduler of a gateway running the built-in server: expired rows go away in the
background, a failing store is logged and retried without stopping anything, and the
lifespan's shutdown cancels it cleanly (warnings are errors here)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from apishield.authserver.purging import PurgeScheduler
from apishield.authserver.runtime import ResourceLifecycle
from apishield.store import Store
from apishield.store.tables import access_tokens
from apishield.types import Receive, Scope, Send
from tests.store.backends import Clock


async def eventually(condition: Callable[[], bool], cap: float = 20.0) -> None:
    """Wait until ``condition`` holds; ``cap`` only stops a broken test from hanging."""
    deadline = time.monotonic() + cap
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def jtis(store: Store) -> list[str]:
    async with store.connect() as conn:
        return sorted((await conn.execute(select(access_tokens.c.jti))).scalars())


async def test_expired_rows_are_purged_in_the_background(store: Store, clock: Clock) -> None:
    await store.access_tokens.record("expired", expires_at=store.now() + timedelta(minutes=10))
    await store.access_tokens.record("live", expires_at=store.now() + timedelta(hours=2))
    clock.advance(3600)
    scheduler = PurgeScheduler(store, every=0.05, jitter=0.0, random=lambda: 0.0)
    scheduler.start()
    try:
        await eventually(lambda: scheduler.runs >= 1)
        assert await jtis(store) == ["live"]
        await store.access_tokens.record("later", expires_at=store.now() + timedelta(minutes=1))
        clock.advance(120)
        runs = scheduler.runs
        await eventually(lambda: scheduler.runs > runs)  # it keeps running, turn after turn
        assert await jtis(store) == ["live"]
        assert scheduler.running
    finally:
        await scheduler.aclose()
    assert not scheduler.running


async def test_a_failing_store_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apishield")
    down = Store(
        "postgresql://nobody:hunter2@127.0.0.1:1/none", auto_migrate=False, connect_timeout=1
    )
    scheduler = PurgeScheduler(down, every=0.05, jitter=0.0, random=lambda: 0.0)
    scheduler.start()
    try:
        await eventually(lambda: scheduler.runs >= 2)
        assert scheduler.running  # still scheduled after failures
    finally:
        await scheduler.aclose()
        await down.aclose()
    failures = [r.getMessage() for r in caplog.records if r.name == "apishield.authserver.purge"]
    assert failures[:2] == ["purge of expired grants failed: StoreUnavailableError"] * 2
    assert all("hunter2" not in r.getMessage() for r in caplog.records)


def test_settings_are_checked() -> None:
    store = Store("sqlite:///unused.db", auto_migrate=False)
    for bad in ({"every": 0.0}, {"jitter": 1.0}, {"jitter": -0.1}):
        with pytest.raises(ValueError, match="every must be positive"):
            PurgeScheduler(store, **bad)  # type: ignore[arg-type]


async def app_with_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def test_started_by_the_lifespan_and_cancelled_at_shutdown(
    store: Store, clock: Clock
) -> None:
    scheduler = PurgeScheduler(store, every=3600.0, random=lambda: 1.0)  # first turn in 1 h
    closed: list[str] = []

    async def close_store() -> None:
        closed.append("store")

    app = ResourceLifecycle(
        app_with_lifespan, start=scheduler.start, closers=[scheduler.aclose, close_store]
    )
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, to_app.get, from_app.put))
    assert not scheduler.running
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    assert scheduler.running
    await to_app.put({"type": "lifespan.shutdown"})
    assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
    await task
    assert not scheduler.running and scheduler.runs == 0
    assert closed == ["store"]
