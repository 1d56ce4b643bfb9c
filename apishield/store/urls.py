"""Store URLs: the policy's ``state.store`` turned into an async SQLAlchemy URL.

``sqlite:///PATH`` runs on aiosqlite and ``postgresql://…`` on asyncpg. On PostgreSQL a
``?schema=NAME`` query parameter keeps apishield's tables in their own schema (it becomes the
connection's ``search_path``). Passwords in URLs are never printed: use ``redact_url``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from apishield.errors import ConfigError
from apishield.policy.models import State

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DEFAULT_FILE = "apishield.db"


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where the store lives, ready for ``create_async_engine``."""

    url: URL
    backend: Literal["sqlite", "postgresql"]
    schema: str | None = None
    sqlite_path: Path | None = None
    connect_args: dict[str, Any] = field(default_factory=dict)

    def redacted(self) -> str:
        """The URL with any password replaced by ``***``."""
        return self.url.render_as_string(hide_password=True)


def store_url(state: State) -> str:
    """The policy's store URL, or the default SQLite file in the state directory."""
    if state.store is not None:
        return state.store
    return f"sqlite:///{state.dir / DEFAULT_FILE}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid store URL>"


def parse_store_url(url: str, *, connect_timeout: float = 5.0) -> StoreLocation:
    """Validate ``url`` and choose the async driver. Raises ``ConfigError`` with one line."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"state.store: {redact_url(url)!r} is not sqlite:///PATH or postgresql://..."
        ) from None
    name = parsed.drivername
    if name in ("sqlite", "sqlite+aiosqlite"):
        database = parsed.database or ""
        if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
            raise ConfigError("state.store: an in-memory SQLite store would forget everything")
        return StoreLocation(
            url=parsed.set(drivername="sqlite+aiosqlite"),
            backend="sqlite",
            sqlite_path=Path(database),
            # sqlite3's busy timeout: wait this long for another writer's lock, then fail.
            connect_args={"timeout": connect_timeout},
        )
    if name in ("postgresql", "postgres", "postgresql+asyncpg"):
        query = dict(parsed.query)
        schema = query.pop("schema", None)
        if isinstance(schema, tuple):
            raise ConfigError("state.store: give 'schema' once")
        if schema is not None and not _SCHEMA.match(schema):
            raise ConfigError(f"state.store: schema {schema!r} is not a plain lower-case name")
        sslmode = query.pop("sslmode", None)
        if sslmode is not None:
            query["ssl"] = sslmode  # asyncpg's name for libpq's sslmode
        connect_args: dict[str, Any] = {"timeout": connect_timeout, "command_timeout": 30}
        if schema is not None:
            connect_args["server_settings"] = {"search_path": schema}
        return StoreLocation(
            url=parsed.set(drivername="postgresql+asyncpg", query=query),
            backend="postgresql",
            schema=schema,
            connect_args=connect_args,
        )
    raise ConfigError(f"state.store: {name!r} is not supported: use sqlite:/// or postgresql://")
