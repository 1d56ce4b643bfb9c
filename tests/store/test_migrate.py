"""Migrations: run from code, idempotent, safe to start twice at once, equal to the tables."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from apishield.store import Store, current_revision, migrate
from apishield.store.migrate import VERSION_TABLE, alembic_config
from apishield.store.tables import metadata
from tests.store.backends import drop_schema, postgres_url, unique_schema

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrated_schema_equals_the_tables(store: Store) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(
            connection,  # type: ignore[arg-type]
            opts={"version_table": VERSION_TABLE},
        )
        found: list[object] = compare_metadata(context, metadata)
        return [d for d in found if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]  # type: ignore[index]

    async with store.connect() as conn:
        assert await conn.run_sync(diff) == []
    assert await current_revision(store.url) == HEAD


async def test_migrate_is_idempotent(store_url: str) -> None:
    await migrate(store_url)
    await migrate(store_url)
    assert await current_revision(store_url) == HEAD


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_two_processes_migrating_at_once(backend: str, tmp_path: Path) -> None:
    schema = unique_schema()
    url = f"sqlite:///{tmp_path}/new/apishield.db" if backend == "sqlite" else postgres_url(schema)
    try:
        assert await current_revision(url) is None
        await asyncio.gather(migrate(url), migrate(url), migrate(url))
        assert await current_revision(url) == HEAD
    finally:
        if backend == "postgresql":
            await drop_schema(schema)


async def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "apishield.db"
    await migrate(f"sqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with closing(sqlite3.connect(path)) as db:  # readers never wait for the writer
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_first_query_migrates_a_new_store(tmp_path: Path) -> None:
    async with Store(f"sqlite:///{tmp_path}/fresh.db") as store:
        assert await store.clients.all() == []
    assert await current_revision(f"sqlite:///{tmp_path}/fresh.db") == HEAD
