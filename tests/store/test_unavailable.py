"""A store that fails is refused with 503 ``store_unavailable``, never treated as empty."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from apishield.store import Store, StoreUnavailableError, migrate

DEAD = [
    pytest.param("postgresql://app:hunter2@127.0.0.1:1/test", id="postgresql-refused"),
    pytest.param("sqlite:///{tmp}/a-file/apishield.db", id="sqlite-unwritable"),
]
BROKEN = [
    pytest.param("postgresql://app:hunter2@127.0.0.1:1/test", id="postgresql-refused"),
    pytest.param("sqlite:///{tmp}/corrupt.db", id="sqlite-corrupt"),
]


@pytest.mark.parametrize("url", BROKEN)
async def test_store_down_fails_closed(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "corrupt.db").write_bytes(b"this is not an SQLite database file" * 200)
    url = url.format(tmp=tmp_path)
    store = Store(url, auto_migrate=False, connect_timeout=2)
    try:
        with caplog.at_level(logging.ERROR, logger="apishield.store"):
            with pytest.raises(StoreUnavailableError) as info:
                await store.api_keys.get_by_digest("0" * 64)
    finally:
        await store.aclose()
    error = info.value
    assert (error.status, error.code, error.headers) == (
        503,
        "store_unavailable",
        {"Retry-After": "5"},
    )
    assert "store unavailable" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("url", DEAD)
async def test_migrate_on_a_dead_store(url: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StoreUnavailableError):
        await migrate(url.format(tmp=tmp_path), connect_timeout=2)
