"""Schema migrations, run from code: ``await migrate(url)`` upgrades the store to the newest
revision. The Alembic scripts ship inside the package (``apishield/store/migrations``); no
``alembic.ini`` is needed.

Several gateway processes may start at once against one store, so an upgrade holds a lock for
its whole transaction: a PostgreSQL advisory lock, or SQLite's write lock (``BEGIN
IMMEDIATE``). The second process then finds the schema current and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, func, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateSchema

from apishield.errors import StoreUnavailableError
from apishield.store.urls import StoreLocation, parse_store_url

logger = logging.getLogger("apishield.store")

SCRIPT_LOCATION = "apishield.store:migrations"
VERSION_TABLE = "apishield_schema_version"  # not "alembic_version": the app may use Alembic too
# An arbitrary constant that names apishield's migration lock among PostgreSQL advisory locks.
_PG_LOCK_ID = 0x61706973  # "apis"
MIGRATION_LOCK_WAIT = 60.0  # seconds a SQLite migration waits for another one to finish


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for apishield's migrations, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


def install_sqlite_hooks(engine: AsyncEngine, *, begin: str = "BEGIN") -> None:
    """Real transactions on SQLite: sqlite3's legacy mode would autocommit DDL and never BEGIN
    before a SELECT (see SQLAlchemy's "Transactions with SQLite"). Also turns on foreign keys,
    which SQLite leaves off, per connection."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


def prepare_sqlite_file(location: StoreLocation) -> None:
    """Create the SQLite file (0600) and its folder (0700) when they do not exist yet: the
    file holds hashes and sealed keys. SQLite gives its -wal and -shm files the same mode."""
    if location.sqlite_path is None:
        return
    folder = location.sqlite_path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(location.sqlite_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def migrate(url: str, *, connect_timeout: float = 5.0) -> None:
    """Upgrade the store at ``url`` to the newest schema (creating it, and a PostgreSQL
    ``?schema=``, when absent). Raises ``StoreUnavailableError`` when the store fails."""
    location = parse_store_url(url, connect_timeout=connect_timeout)
    connect_args = dict(location.connect_args)
    if location.backend == "sqlite":
        # Another process may be migrating this file: wait for it rather than fail.
        connect_args["timeout"] = max(connect_timeout, MIGRATION_LOCK_WAIT)
    engine = create_async_engine(
        location.url, connect_args=connect_args, poolclass=NullPool, hide_parameters=True
    )
    if location.backend == "sqlite":
        install_sqlite_hooks(engine, begin="BEGIN IMMEDIATE")
    try:
        prepare_sqlite_file(location)
        async with engine.begin() as conn:
            if location.backend == "postgresql":
                await conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_ID)))
                if location.schema is not None:
                    await conn.execute(CreateSchema(location.schema, if_not_exists=True))
            before = await conn.run_sync(_current)
            await conn.run_sync(_upgrade)
            after = await conn.run_sync(_current)
        if before != after:
            logger.info("store migrated to %s at %s", after, location.redacted())
        if location.sqlite_path is not None:
            await _enable_wal(location.sqlite_path)
    except (DBAPIError, OSError, TimeoutError) as exc:
        logger.error("store migration failed at %s: %s", location.redacted(), type(exc).__name__)
        raise StoreUnavailableError() from exc
    except SQLAlchemyError as exc:
        logger.error("store migration failed at %s: %s", location.redacted(), type(exc).__name__)
        raise StoreUnavailableError() from exc
    finally:
        await engine.dispose()


async def _enable_wal(path: Path) -> None:
    """Switch the SQLite file to write-ahead logging, so readers never wait for a writer. The
    mode is kept in the file, so this happens once. Switching needs the file to itself and
    fails at once (no busy wait) while another connection holds a lock: retry briefly, and
    carry on without WAL rather than fail, since it only makes the store faster."""
    for attempt in range(20):
        try:
            async with aiosqlite.connect(path, timeout=1) as db:
                async with db.execute("PRAGMA journal_mode") as cursor:
                    row = await cursor.fetchone()
                if row is not None and str(row[0]).lower() == "wal":
                    return
                await db.execute("PRAGMA journal_mode=WAL")
                return
        except sqlite3.OperationalError:
            await asyncio.sleep(0.05 * (attempt + 1))
    logger.warning("could not switch the SQLite store at %s to WAL mode", path)


async def current_revision(url: str) -> str | None:
    """The store's schema revision, or None before the first migration."""
    location = parse_store_url(url)
    if location.sqlite_path is not None and not location.sqlite_path.exists():
        return None  # connecting would create the file, with the process's default mode
    engine = create_async_engine(
        location.url, connect_args=location.connect_args, poolclass=NullPool, hide_parameters=True
    )
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StoreUnavailableError() from exc
    finally:
        await engine.dispose()
