"""Purging expired grants: exclusive across instances on PostgreSQL (an advisory lock), and
``apishield store purge`` for operators who schedule it themselves, on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from apishield.admin.cli import store_app
from apishield.store import Store, purge_expired
from apishield.store.grants import purge_lock_key
from apishield.store.records import ClientRecord, UserRecord
from apishield.store.tables import access_tokens
from tests.store.backends import Clock
from tests.store.test_grants import new_code, new_family, parties  # noqa: F401 - fixture


async def jtis(store: Store) -> list[str]:
    async with store.connect() as conn:
        return sorted((await conn.execute(select(access_tokens.c.jti))).scalars())


async def expired_rows(
    store: Store,
    parties: tuple[ClientRecord, UserRecord],  # noqa: F811 - the fixture imported above
    clock: Clock,
) -> None:
    """An access token and a code past their retention (the family lives on for 30 days)."""
    await new_family(store, parties, "fam", "rt0", code=None)
    await new_code(store, parties, "code")
    clock.advance(2 * 86400)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_postgresql_purges_one_instance_at_a_time(
    store: Store,
    parties: tuple[ClientRecord, UserRecord],  # noqa: F811
    clock: Clock,
) -> None:
    await expired_rows(store, parties, clock)
    other = Store(store.url, auto_migrate=False, clock=clock)  # another instance
    try:
        async with other.begin() as conn:
            held = await conn.scalar(select(func.pg_try_advisory_xact_lock(purge_lock_key(other))))
            assert held
            # While the other instance purges (holds the lock), this one skips its turn.
            assert await purge_expired(store) is None
            assert await jtis(store) == ["fam-at"]
        assert await purge_expired(store) == 2  # the lock went with the other's transaction
    finally:
        await other.aclose()


def test_lock_key_is_per_schema() -> None:
    one = Store("postgresql://db.example/apishield?schema=one", auto_migrate=False)
    two = Store("postgresql://db.example/apishield?schema=two", auto_migrate=False)
    again = Store("postgresql://db.example/apishield?schema=one", auto_migrate=False)
    assert purge_lock_key(one) == purge_lock_key(again) != purge_lock_key(two)
    assert -(2**63) <= purge_lock_key(one) < 2**63


async def test_two_purges_at_once_remove_each_row_once(
    store: Store,
    parties: tuple[ClientRecord, UserRecord],  # noqa: F811
    clock: Clock,
) -> None:
    await expired_rows(store, parties, clock)
    results = await asyncio.gather(purge_expired(store), purge_expired(store))
    assert sum(r or 0 for r in results) == 2
    assert await purge_expired(store) == 0


async def test_store_purge_command(
    store: Store,
    store_url: str,
    parties: tuple[ClientRecord, UserRecord],  # noqa: F811
    clock: Clock,
    tmp_path: Path,
) -> None:
    await new_family(store, parties, "fam", "rt0", code=None)
    # Expired by the real clock the command uses (the store's test clock is not its own).
    clock.advance(-86400)
    await store.access_tokens.record("old-at", expires_at=store.now() + timedelta(minutes=10))
    policy = tmp_path / "apishield.yaml"
    policy.write_text(f"apishield: 1\nstate: {{store: '{store_url}'}}\n")
    result = await asyncio.to_thread(
        CliRunner().invoke, store_app, ["purge", "-c", str(policy)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "removed 1 expired rows"
    assert await jtis(store) == ["fam-at"]
    again = await asyncio.to_thread(CliRunner().invoke, store_app, ["purge", "-c", str(policy)])
    assert again.stdout.strip() == "removed 0 expired rows"


async def test_store_purge_command_unavailable_store(tmp_path: Path) -> None:
    policy = tmp_path / "apishield.yaml"
    policy.write_text("apishield: 1\nstate: {store: 'postgresql://nobody:pw@127.0.0.1:1/none'}\n")
    result = await asyncio.to_thread(CliRunner().invoke, store_app, ["purge", "-c", str(policy)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "apishield: the store at postgresql://nobody:***@127.0.0.1:1/none is unavailable"
    )
    assert "Traceback" not in result.output
