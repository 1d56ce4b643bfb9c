"""Clients: validated registration, Argon2id secrets, deletion revokes every grant (AUTH 28)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from apishield.store import ConflictError, InvalidRecordError, NotFoundInStoreError, Store
from tests.store.backends import Clock

ARGON2ID_PARAMS = "$argon2id$v=19$m=19456,t=2,p=1$"


async def test_register_and_authenticate(store: Store) -> None:
    client, secret = await store.clients.register(
        name="billing", grant_types=["client_credentials"], scopes=["invoices:read"]
    )
    assert secret is not None and len(secret) >= 43  # 256 bits, AUTH 17 asks for 128
    assert re.fullmatch(r"[0-9a-f]{24}", client.id)  # never "-…", which a shell reads as a flag
    assert client.secret_hash is not None and secret not in client.secret_hash
    assert secret not in repr(client) and "argon2" not in repr(client)
    assert await store.clients.get(client.id) == client
    assert [c.id for c in await store.clients.all()] == [client.id]
    assert await store.clients.authenticate(client.id, secret) == client


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        pytest.param("known", "wrong-secret", id="AUTH-17-wrong-secret"),
        pytest.param("unknown", "whatever", id="AUTH-17-unknown-client"),
        pytest.param("known", "", id="AUTH-17-empty-secret"),
    ],
)
async def test_authenticate_refuses(store: Store, client_id: str, secret: str) -> None:
    client, _ = await store.clients.register(name="c", grant_types=["client_credentials"])
    target = client.id if client_id == "known" else "no-such-client"
    assert await store.clients.authenticate(target, secret) is None


async def test_client_secret_is_argon2id(store: Store) -> None:
    client, _ = await store.clients.register(name="c", grant_types=["client_credentials"])
    assert client.secret_hash is not None
    assert client.secret_hash.startswith(ARGON2ID_PARAMS)


async def test_disabled_client_cannot_authenticate(store: Store) -> None:
    client, secret = await store.clients.register(name="c", grant_types=["client_credentials"])
    assert secret is not None
    await store.clients.set_disabled(client.id, True)
    assert await store.clients.authenticate(client.id, secret) is None


async def test_public_and_private_key_jwt_clients_have_no_secret(store: Store) -> None:
    spa, secret = await store.clients.register(
        name="spa",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://app.example.com/cb"],
        auth_method="none",
    )
    assert secret is None and spa.secret_hash is None
    assert await store.clients.authenticate(spa.id, "") is None
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}
    service, secret = await store.clients.register(
        name="svc", grant_types=["client_credentials"], auth_method="private_key_jwt", jwks=jwks
    )
    assert secret is None and service.jwks == jwks


async def test_duplicate_client_id(store: Store) -> None:
    await store.clients.register(name="a", grant_types=["client_credentials"], client_id="dup")
    with pytest.raises(ConflictError):
        await store.clients.register(name="b", grant_types=["client_credentials"], client_id="dup")


REFUSED: list[Any] = [
    pytest.param({"grant_types": ["implicit"]}, "not supported", id="AUTH-13-implicit"),
    pytest.param({"grant_types": ["password"]}, "not supported", id="AUTH-13-password"),
    pytest.param({"grant_types": []}, "at least one", id="no-grant"),
    pytest.param(
        {"grant_types": ["client_credentials", "refresh_token"]},
        "refresh_token needs",
        id="AUTH-20-no-refresh-for-client-credentials",
    ),
    pytest.param({"redirect_uris": []}, "redirect URI", id="code-no-redirect"),
    pytest.param(
        {"redirect_uris": ["https://*.example.com/cb"]}, "wildcard", id="AUTH-15-wildcard"
    ),
    pytest.param(
        {"redirect_uris": ["https://app.example.com/cb#x"]}, "fragment", id="AUTH-15-fragment"
    ),
    pytest.param(
        {"redirect_uris": ["http://app.example.com/cb"]}, "https", id="AUTH-15-plain-http"
    ),
    pytest.param(
        {"redirect_uris": ["https://u:p@app.example.com/cb"]}, "credentials", id="userinfo"
    ),
    pytest.param({"redirect_uris": ["/relative"]}, "https", id="relative"),
    pytest.param({"scopes": ["has space"]}, "scope token", id="scope-space"),
    pytest.param({"scopes": ['quo"te']}, "scope token", id="scope-quote"),
    pytest.param({"resources": ["orders-api"]}, "absolute", id="AUTH-18-resource-relative"),
    pytest.param({"auth_method": "client_secret_jwt"}, "auth method", id="unknown-method"),
    pytest.param(
        {"grant_types": ["client_credentials"], "auth_method": "none", "redirect_uris": []},
        "public client",
        id="public-client-credentials",
    ),
    pytest.param({"auth_method": "private_key_jwt"}, "JWK set", id="pkjwt-without-jwks"),
    pytest.param(
        {"auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "EC", "d": "secret"}]}},
        "private key material",
        id="pkjwt-private-jwk",
    ),
    pytest.param({"jwks": {"keys": [{"kty": "EC"}]}}, "only used", id="jwks-without-pkjwt"),
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
async def test_refused_registrations(store: Store, change: dict[str, Any], message: str) -> None:
    registration: dict[str, Any] = {
        "name": "c",
        "grant_types": ["authorization_code"],
        "redirect_uris": ["https://app.example.com/cb"],
        **change,
    }
    with pytest.raises(InvalidRecordError, match=message):
        await store.clients.register(**registration)
    assert await store.clients.all() == []


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("https://app.example.com/cb", id="https"),
        pytest.param("http://127.0.0.1:8765/cb", id="loopback-v4"),
        pytest.param("http://[::1]:8765/cb", id="loopback-v6"),
    ],
)
async def test_accepted_redirect_uris(store: Store, uri: str) -> None:
    client, _ = await store.clients.register(
        name="c", grant_types=["authorization_code"], redirect_uris=[uri]
    )
    assert client.redirect_uris == (uri,)


async def grant_for(store: Store, client_id: str, user_id: str, tag: str) -> None:
    """A code, a refresh family with RT0, and a recorded access token of the grant."""
    later = store.now() + timedelta(minutes=10)
    await store.codes.create(
        code_hash=f"code-{tag}",
        client_id=client_id,
        user_id=user_id,
        redirect_uri="https://app.example.com/cb",
        code_challenge="c" * 43,
        scope=["a"],
        resource=[],
        expires_at=store.now() + timedelta(seconds=60),
    )
    await store.refresh_tokens.start_family(
        family_id=f"fam-{tag}",
        token_hash=f"rt-{tag}",
        client_id=client_id,
        user_id=user_id,
        scope=["a"],
        resource=[],
        absolute_expires_at=store.now() + timedelta(days=30),
    )
    await store.access_tokens.record(
        f"jti-{tag}", expires_at=later, client_id=client_id, user_id=user_id, family_id=f"fam-{tag}"
    )


async def test_delete_revokes_every_grant(store: Store, clock: Clock) -> None:
    """AUTH-28: deleting a client revokes its codes, refresh tokens and access tokens."""
    user = await store.users.create("ada", "correct horse battery")
    doomed, _ = await store.clients.register(name="doomed", grant_types=["client_credentials"])
    kept, _ = await store.clients.register(name="kept", grant_types=["client_credentials"])
    await grant_for(store, doomed.id, user.id, "doomed")
    await grant_for(store, kept.id, user.id, "kept")
    await store.access_tokens.record(
        "jti-cc", expires_at=clock() + timedelta(minutes=5), client_id=doomed.id
    )

    await store.clients.delete(doomed.id)

    assert await store.clients.get(doomed.id) is None
    assert await store.access_tokens.is_revoked("jti-doomed")
    assert await store.access_tokens.is_revoked("jti-cc")
    assert (await store.refresh_tokens.rotate("rt-doomed", "rt-new")).status == "unknown"
    assert (await store.codes.redeem("code-doomed")).status == "unknown"
    # the other client's grant is untouched
    assert not await store.access_tokens.is_revoked("jti-kept")
    assert (await store.refresh_tokens.rotate("rt-kept", "rt-kept-1")).status == "rotated"
    assert (await store.codes.redeem("code-kept")).status == "ok"


async def test_disable_revokes_every_grant(store: Store) -> None:
    user = await store.users.create("ada", "correct horse battery")
    client, _ = await store.clients.register(name="c", grant_types=["client_credentials"])
    await grant_for(store, client.id, user.id, "x")
    await store.clients.set_disabled(client.id, True)
    assert await store.access_tokens.is_revoked("jti-x")
    assert (await store.refresh_tokens.rotate("rt-x", "rt-y")).status == "revoked"


async def test_delete_unknown_client(store: Store) -> None:
    with pytest.raises(NotFoundInStoreError, match="no such client 'nope'"):
        await store.clients.delete("nope")
