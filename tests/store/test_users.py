"""Users: Argon2id passwords (AUTH 17), same answer for unknown and wrong (AUTH 22),
disabling revokes grants (AUTH 28)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from apishield.store import ConflictError, InvalidRecordError, NotFoundInStoreError, Store
from apishield.store.tables import users
from tests.store.test_clients import ARGON2ID_PARAMS, grant_for

PASSWORD = "correct horse battery staple"


async def stored_hash(store: Store, username: str) -> str:
    async with store.connect() as conn:
        found = await conn.execute(
            select(users.c.password_hash).where(users.c.username == username)
        )
        value: str = found.scalar_one()
        return value


async def test_create_and_authenticate(store: Store) -> None:
    user = await store.users.create("ada", PASSWORD, roles=["admin", "billing"])
    assert user.roles == ("admin", "billing")
    assert PASSWORD not in repr(user)
    assert await store.users.get(user.id) == user
    assert await store.users.get_by_username("ada") == user
    assert [u.username for u in await store.users.all()] == ["ada"]
    assert await store.users.authenticate("ada", PASSWORD) == user


async def test_password_is_argon2id_with_asvs_parameters(store: Store) -> None:
    """AUTH-17: m ≥ 19 MiB, t ≥ 2, p = 1."""
    await store.users.create("ada", PASSWORD)
    encoded = await stored_hash(store, "ada")
    assert encoded.startswith(ARGON2ID_PARAMS)
    assert PASSWORD not in encoded


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("ada", "wrong password!", id="AUTH-22-wrong-password"),
        pytest.param("nobody", PASSWORD, id="AUTH-22-unknown-user"),
        pytest.param("ada", "", id="empty"),
        pytest.param("ada", "x" * 5000, id="overlong"),
    ],
)
async def test_authenticate_refuses_alike(store: Store, username: str, password: str) -> None:
    await store.users.create("ada", PASSWORD)
    assert await store.users.authenticate(username, password) is None


async def test_rehash_on_parameter_change(store: Store) -> None:
    """AUTH-17-rehash: a hash made with older parameters is replaced at the next sign-in."""
    user = await store.users.create("ada", PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=2).hash(PASSWORD)
    async with store.begin() as conn:
        await conn.execute(update(users).where(users.c.id == user.id).values(password_hash=weak))
    assert await store.users.authenticate("ada", PASSWORD) is not None
    assert (await stored_hash(store, "ada")).startswith(ARGON2ID_PARAMS)


@pytest.mark.parametrize(
    ("username", "password", "roles", "message"),
    [
        pytest.param("ada", "short", [], "at least 12", id="short-password"),
        pytest.param("ada", "x" * 2000, [], "longer than", id="long-password"),
        pytest.param("", PASSWORD, [], "not a username", id="empty-username"),
        pytest.param("a\nb", PASSWORD, [], "not a username", id="newline-username"),
        pytest.param("ada", PASSWORD, ["has space"], "not a role", id="bad-role"),
    ],
)
async def test_refused_users(
    store: Store, username: str, password: str, roles: list[str], message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        await store.users.create(username, password, roles=roles)


async def test_username_is_unique(store: Store) -> None:
    await store.users.create("ada", PASSWORD)
    with pytest.raises(ConflictError, match="taken"):
        await store.users.create("ada", PASSWORD + "!")


async def test_disable_revokes_every_grant(store: Store) -> None:
    """AUTH-28: a disabled user cannot sign in, and their grants and tokens are dead."""
    ada = await store.users.create("ada", PASSWORD)
    bob = await store.users.create("bob", PASSWORD)
    client, _ = await store.clients.register(name="c", grant_types=["client_credentials"])
    await grant_for(store, client.id, ada.id, "ada")
    await grant_for(store, client.id, bob.id, "bob")
    await store.access_tokens.record(
        "jti-ada-2", expires_at=store.now() + timedelta(minutes=5), user_id=ada.id
    )

    disabled = await store.users.disable("ada")

    assert disabled.disabled
    assert await store.users.authenticate("ada", PASSWORD) is None
    assert await store.access_tokens.is_revoked("jti-ada")
    assert await store.access_tokens.is_revoked("jti-ada-2")
    assert (await store.refresh_tokens.rotate("rt-ada", "rt-ada-1")).status == "revoked"
    assert (await store.codes.redeem("code-ada")).status == "replayed"
    assert not await store.access_tokens.is_revoked("jti-bob")
    assert (await store.refresh_tokens.rotate("rt-bob", "rt-bob-1")).status == "rotated"


async def test_disable_unknown_user(store: Store) -> None:
    with pytest.raises(NotFoundInStoreError, match="no such user"):
        await store.users.disable("nobody")
