"""Signing keys (AUTH 23): published before they sign, kept until retired, sealed at rest."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apishield.identity.secretkey import SecretKeys
from apishield.store import ConflictError, InvalidRecordError, NotFoundInStoreError, Store
from tests.store.backends import Clock

KEYS = SecretKeys.from_master(bytes(range(32)))
JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


async def add(store: Store, kid: str, state: str = "next") -> None:
    await store.signing_keys.add(
        kid=kid,
        alg="EdDSA",
        sealed_private_key=KEYS.seal(b"private " + kid.encode(), associated=kid.encode()),
        public_jwk={**JWK, "kid": kid},
        state=state,  # type: ignore[arg-type]
    )


async def test_rotation_lifecycle(store: Store, clock: Clock) -> None:
    await add(store, "k1", "active")
    await add(store, "k2", "next")
    published = [k.kid for k in await store.signing_keys.published()]
    assert published == ["k1", "k2"]  # the next key is in the JWKS before it signs
    signing = await store.signing_keys.signing_key()
    assert signing is not None and signing.kid == "k1"

    clock.advance(1)
    await store.signing_keys.set_state("k2", "active")
    await store.signing_keys.set_state("k1", "retiring", retire_after=clock() + timedelta(hours=1))
    signing = await store.signing_keys.signing_key()
    assert signing is not None and signing.kid == "k2"
    assert [k.kid for k in await store.signing_keys.published()] == ["k1", "k2"]

    clock.advance(3601)  # the last token signed by k1 has expired
    assert [k.kid for k in await store.signing_keys.published()] == ["k2"]
    assert [k.kid for k in await store.signing_keys.all()] == ["k1", "k2"]


async def test_private_key_is_stored_sealed(store: Store) -> None:
    await add(store, "k1")
    record = await store.signing_keys.get("k1")
    assert record is not None
    assert b"private" not in record.private_key
    assert KEYS.unseal(record.private_key, associated=b"k1") == b"private k1"
    assert "private_key" not in repr(record)


async def test_kid_is_unique(store: Store) -> None:
    await add(store, "k1")
    with pytest.raises(ConflictError):
        await add(store, "k1")


async def test_refusals(store: Store) -> None:
    with pytest.raises(InvalidRecordError, match="private key material"):
        await store.signing_keys.add(
            kid="k", alg="EdDSA", sealed_private_key=b"x", public_jwk={**JWK, "d": "secret"}
        )
    with pytest.raises(InvalidRecordError, match="state"):
        await store.signing_keys.set_state("k", "lost")  # type: ignore[arg-type]
    with pytest.raises(NotFoundInStoreError):
        await store.signing_keys.set_state("nope", "retired")
