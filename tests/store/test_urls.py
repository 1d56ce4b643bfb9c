"""Store URLs: the right async driver, a PostgreSQL schema, no password in any message."""

from __future__ import annotations

from pathlib import Path

import pytest

from apishield.errors import ConfigError
from apishield.policy.models import State
from apishield.store import parse_store_url, redact_url, store_url


@pytest.mark.parametrize(
    ("url", "driver", "schema"),
    [
        pytest.param("sqlite:///var/lib/a.db", "sqlite+aiosqlite", None, id="sqlite-relative"),
        pytest.param("sqlite:////var/lib/a.db", "sqlite+aiosqlite", None, id="sqlite-absolute"),
        pytest.param("postgresql://u@db/app", "postgresql+asyncpg", None, id="postgresql"),
        pytest.param(
            "postgresql://u@db/app?schema=gateway", "postgresql+asyncpg", "gateway", id="schema"
        ),
        pytest.param("postgresql+asyncpg://u@db/app", "postgresql+asyncpg", None, id="explicit"),
    ],
)
def test_drivers(url: str, driver: str, schema: str | None) -> None:
    location = parse_store_url(url)
    assert location.url.drivername == driver
    assert location.schema == schema
    assert "schema" not in location.url.query
    if schema:
        assert location.connect_args["server_settings"] == {"search_path": schema}


def test_sslmode_becomes_asyncpg_ssl() -> None:
    location = parse_store_url("postgresql://u@db/app?sslmode=require")
    assert location.url.query == {"ssl": "require"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("sqlite://", "in-memory", id="memory"),
        pytest.param("sqlite:///:memory:", "in-memory", id="memory-name"),
        pytest.param("mysql://u@db/app", "not supported", id="mysql"),
        pytest.param("postgresql://u@db/app?schema=Bad-Name", "schema", id="bad-schema"),
        pytest.param(
            "postgresql://u@db/app?schema=a;drop table x", "schema", id="schema-injection"
        ),
        pytest.param("::::", "is not", id="garbage"),
    ],
)
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_store_url(url)
    assert "\n" not in str(info.value)


def test_default_is_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    assert store_url(State(dir=tmp_path)) == f"sqlite:///{tmp_path}/apishield.db"
    assert store_url(State(dir=tmp_path, store="postgresql://db/x")) == "postgresql://db/x"


def test_passwords_are_redacted() -> None:
    assert "hunter2" not in redact_url("postgresql://app:hunter2@db/app")
    assert "hunter2" not in parse_store_url("postgresql://app:hunter2@db/app").redacted()
    with pytest.raises(ConfigError) as info:
        parse_store_url("mysql://app:hunter2@db/app")
    assert "hunter2" not in str(info.value)
