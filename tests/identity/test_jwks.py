"""JWKS fetching and caching against a real loopback server (AUTH 1, 3, 9).

Cache time is a hand-moved monotonic clock, token time a fixed unix clock: no test waits for
a TTL or a cooldown to pass.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from apishield.errors import HTTPError, UnauthorizedError
from apishield.identity.jwks import (
    FetchError,
    JWKSCache,
    StaticKeys,
    key_fits,
    metadata_urls,
    parse_jwks,
    parse_metadata,
    select_key,
)
from apishield.identity.jwt import JWTVerifier
from apishield.identity.settings import IssuerSettings
from tests.identity.idp import (
    Clock,
    IdP,
    Reply,
    Seen,
    claims,
    ec_key,
    ed_key,
    json_reply,
    jwks,
    rsa_key,
    running_idp,
    sign,
)

KEY_A = ec_key("key-a")
KEY_B = ec_key("key-b")
ATTACKER = ec_key("evil")


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    async with running_idp() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


@contextlib.contextmanager
def identity_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``apishield.identity`` logger, whatever its propagation setting."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("apishield.identity")
    handler = Keep(logging.DEBUG)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class Rig:
    """A verifier whose keys come from the IdP's JWKS, with both clocks in hand."""

    def __init__(self, idp: IdP, client: httpx.AsyncClient, **settings: Any) -> None:
        self.idp = idp
        self.issuer = f"{idp.url}/realms/main"
        values: dict[str, Any] = {
            "issuer": self.issuer,
            "algorithms": ["ES256", "RS256", "EdDSA"],
            "audience": "orders-api",
        }
        if not settings.get("discovery"):
            values["jwks_uri"] = f"{idp.url}/certs"
        values.update(settings)
        self.settings = IssuerSettings.model_validate(values)
        self.mono = Clock(1000.0)
        self.cache = JWKSCache(self.settings, client=client, clock=self.mono)
        self.verifier = JWTVerifier.from_settings(self.settings, keys=self.cache, clock=Clock())

    def token(self, key: Any = KEY_A, **header: Any) -> str:
        return sign(key, claims(self.issuer), **header)

    async def verify(self, token: str) -> str:
        """The subject, or the refusal code."""
        try:
            return (await self.verifier.verify_bearer(token)).subject
        except HTTPError as exc:
            return exc.code

    def fetches(self, path: str = "/certs") -> int:
        return self.idp.paths().count(path)


def fail(status: int = 500) -> Reply:
    return status, {}, b"oops"


async def test_jwks_cached_for_ttl(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-9-ttl: one fetch serves every token until the TTL; then the set is fetched again."""
    idp.serve_json("/certs", jwks(KEY_A))
    rig = Rig(idp, client, jwks_cache_ttl=300)
    for _ in range(3):
        assert await rig.verify(rig.token()) == "user-42"
    assert rig.fetches() == 1
    rig.mono.advance(299)
    assert await rig.verify(rig.token()) == "user-42"
    assert rig.fetches() == 1
    rig.mono.advance(1)
    assert await rig.verify(rig.token()) == "user-42"
    assert rig.fetches() == 2


async def test_jwks_rotation_new_kid_fetched_once(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-9-rotation: a new kid triggers one refetch; a removed key goes at the next TTL."""
    idp.serve_json("/certs", jwks(KEY_A))
    rig = Rig(idp, client)
    assert await rig.verify(rig.token(KEY_A)) == "user-42"
    idp.serve_json("/certs", jwks(KEY_A, KEY_B))  # the issuer publishes its next key
    rig.mono.advance(rig.settings.jwks_refetch_cooldown)
    assert await rig.verify(rig.token(KEY_B)) == "user-42"
    assert rig.fetches() == 2
    assert await rig.verify(rig.token(KEY_B)) == "user-42"
    assert rig.fetches() == 2
    idp.serve_json("/certs", jwks(KEY_B))  # ...and retires the old one
    assert await rig.verify(rig.token(KEY_A)) == "user-42"  # still cached
    rig.mono.advance(rig.settings.jwks_cache_ttl)
    assert await rig.verify(rig.token(KEY_A)) == "token_invalid"
    assert await rig.verify(rig.token(KEY_B)) == "user-42"


async def test_jwks_unknown_kid_cooldown(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-9-cooldown: unknown kids cost one refetch per cooldown, not one per request."""
    idp.serve_json("/certs", jwks(KEY_A))
    rig = Rig(idp, client, jwks_refetch_cooldown=30)
    assert await rig.verify(rig.token()) == "user-42"
    assert rig.fetches() == 1
    rig.mono.advance(30)
    ghost = rig.token(ATTACKER, kid="ghost")
    assert await rig.verify(ghost) == "token_invalid"
    assert rig.fetches() == 2
    for _ in range(5):
        assert await rig.verify(ghost) == "token_invalid"
    rig.mono.advance(29)
    assert await rig.verify(ghost) == "token_invalid"
    assert rig.fetches() == 2
    rig.mono.advance(1)
    results = await asyncio.gather(*(rig.verify(ghost) for _ in range(10)))
    assert set(results) == {"token_invalid"}
    assert rig.fetches() == 3


async def test_jwks_known_kid_of_wrong_type_does_not_refetch(
    idp: IdP, client: httpx.AsyncClient
) -> None:
    """AUTH-3: a kid the set has, with an alg its key does not fit, is refused at once."""
    idp.serve_json("/certs", jwks(KEY_A))
    rig = Rig(idp, client)
    assert await rig.verify(rig.token()) == "user-42"
    rig.mono.advance(rig.settings.jwks_refetch_cooldown)
    forged = rig.token(rsa_key("rsa-1"), kid="key-a", alg="RS256")
    assert await rig.verify(forged) == "token_invalid"
    assert rig.fetches() == 1


async def test_jwks_failed_fetch_keeps_last_good_set(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-9-failed-fetch-keeps-last-good-set, and failures wait a cooldown too."""
    idp.serve_json("/certs", jwks(KEY_A))
    rig = Rig(idp, client)
    assert await rig.verify(rig.token()) == "user-42"
    idp.routes["/certs"] = lambda _: fail(503)
    rig.mono.advance(rig.settings.jwks_cache_ttl)
    with identity_log() as records:
        assert await rig.verify(rig.token()) == "user-42"
    assert rig.fetches() == 2
    assert any("keeping the last good key set" in r.getMessage() for r in records)
    assert await rig.verify(rig.token(KEY_B)) == "token_invalid"  # unknown kid, in cooldown
    assert rig.fetches() == 2
    rig.mono.advance(rig.settings.jwks_refetch_cooldown)
    assert await rig.verify(rig.token(KEY_B)) == "token_invalid"
    assert rig.fetches() == 3
    assert await rig.verify(rig.token()) == "user-42"


async def test_jwks_never_fetched_is_503(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-9-no-key-set: fail closed with 503 jwks_unavailable; retry after the cooldown."""
    idp.routes["/certs"] = lambda _: fail(500)
    rig = Rig(idp, client)
    with pytest.raises(HTTPError) as caught:
        await rig.verifier.verify_bearer(rig.token())
    assert (caught.value.status, caught.value.code) == (503, "jwks_unavailable")
    assert not isinstance(caught.value, UnauthorizedError)
    assert await rig.verify(rig.token()) == "jwks_unavailable"
    assert rig.fetches() == 1
    idp.serve_json("/certs", jwks(KEY_A))
    rig.mono.advance(rig.settings.jwks_refetch_cooldown)
    assert await rig.verify(rig.token()) == "user-42"
    assert rig.fetches() == 2


async def test_jwks_concurrent_misses_coalesced(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-9-coalesced: twenty cold requests at once make one fetch."""
    release = asyncio.Event()

    async def slow(_: Seen) -> Reply:
        await release.wait()
        return json_reply(jwks(KEY_A))

    idp.routes["/certs"] = slow
    rig = Rig(idp, client)
    pending = asyncio.gather(*(rig.verify(rig.token()) for _ in range(20)))
    while rig.fetches() == 0:
        await asyncio.sleep(0.01)
    release.set()
    assert set(await pending) == {"user-42"}
    assert rig.fetches() == 1


async def test_jwks_fetch_timeout(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-9-timeout: a server that never answers is given up after fetch_timeout."""

    async def never(_: Seen) -> Reply:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    idp.routes["/certs"] = never
    rig = Rig(idp, client, fetch_timeout="200ms")
    with identity_log() as records:
        assert await rig.verify(rig.token()) == "jwks_unavailable"
    assert any("timed out" in r.getMessage() for r in records)


async def test_jwks_caller_cancelled_does_not_cancel_fetch(
    idp: IdP, client: httpx.AsyncClient
) -> None:
    """AUTH-9: a client that goes away mid-fetch does not spoil the fetch for the others."""
    release = asyncio.Event()

    async def slow(_: Seen) -> Reply:
        await release.wait()
        return json_reply(jwks(KEY_A))

    idp.routes["/certs"] = slow
    rig = Rig(idp, client)
    first = asyncio.create_task(rig.verify(rig.token()))
    second = asyncio.create_task(rig.verify(rig.token()))
    while rig.fetches() == 0:
        await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second == "user-42"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert rig.fetches() == 1


async def test_jwks_request_during_first_fetch_waits_for_it(
    idp: IdP, client: httpx.AsyncClient
) -> None:
    """AUTH-9: a request that arrives while the first fetch is already under way joins it;
    it is not refused with jwks_unavailable because the cooldown counts that fetch."""
    release = asyncio.Event()

    async def slow(_: Seen) -> Reply:
        await release.wait()
        return json_reply(jwks(KEY_A))

    idp.routes["/certs"] = slow
    rig = Rig(idp, client)
    first = asyncio.create_task(rig.verify(rig.token()))
    while rig.fetches() == 0:
        await asyncio.sleep(0.01)
    second = asyncio.create_task(rig.verify(rig.token()))
    for _ in range(5):  # let it reach the key set: it must be waiting, not answered already
        await asyncio.sleep(0)
    assert not second.done()
    release.set()
    assert await first == "user-42"
    assert await second == "user-42"
    assert rig.fetches() == 1


def _redirect(location: str) -> Reply:
    return 302, {"Location": location}, b""


FETCH_FAILURES = [
    pytest.param(
        lambda idp, other: json_reply({"keys": [], "pad": "x" * 300_000}),
        id="AUTH-9-document-over-size-cap",
    ),
    pytest.param(
        lambda idp, other: (200, {"Content-Type": "application/json"}, b"<html>"),
        id="AUTH-9-not-json",
    ),
    pytest.param(
        lambda idp, other: (200, {}, b'{"keys": [], "keys": []}'), id="AUTH-9-duplicate-member"
    ),
    pytest.param(
        lambda idp, other: json_reply({"keys": [dict(jwks(KEY_A)["keys"][0], use="enc")]}),
        id="AUTH-3-only-encryption-keys",
    ),
    pytest.param(lambda idp, other: json_reply([1, 2]), id="AUTH-9-not-a-jwk-set"),
    pytest.param(
        lambda idp, other: _redirect(f"{other.url}/certs"), id="AUTH-9-redirect-to-other-host"
    ),
    pytest.param(lambda idp, other: fail(404), id="AUTH-9-not-found"),
]


@pytest.mark.parametrize("reply", FETCH_FAILURES)
async def test_jwks_unusable_documents(idp: IdP, client: httpx.AsyncClient, reply: Any) -> None:
    async with running_idp() as other:
        other.serve_json("/certs", jwks(KEY_A))
        idp.routes["/certs"] = lambda _: reply(idp, other)
        rig = Rig(idp, client)
        assert await rig.verify(rig.token()) == "jwks_unavailable"
        assert other.seen == []


async def test_jwks_same_origin_redirect_followed(idp: IdP, client: httpx.AsyncClient) -> None:
    idp.routes["/certs"] = lambda _: _redirect("/certs/v2")
    idp.serve_json("/certs/v2", jwks(KEY_A))
    rig = Rig(idp, client)
    assert await rig.verify(rig.token()) == "user-42"


async def test_jwks_token_header_urls_never_fetched(idp: IdP, client: httpx.AsyncClient) -> None:
    """AUTH-1: jku/x5u point at a set holding the attacker's key; it is never even fetched."""
    idp.serve_json("/certs", jwks(KEY_A))
    idp.serve_json("/evil", jwks(ATTACKER))
    rig = Rig(idp, client)
    for header in ({"jku": f"{idp.url}/evil"}, {"x5u": f"{idp.url}/evil"}):
        assert await rig.verify(rig.token(ATTACKER, **header)) == "token_invalid"
    embedded = rig.token(ATTACKER, kid="key-a", jwk=ATTACKER.as_dict(private=False))
    assert await rig.verify(embedded) == "token_invalid"
    assert "/evil" not in idp.paths()


@pytest.mark.parametrize(
    "metadata_path",
    [
        pytest.param("/realms/main/.well-known/openid-configuration", id="AUTH-1-discovery-oidc"),
        pytest.param(
            "/.well-known/oauth-authorization-server/realms/main", id="AUTH-1-discovery-rfc8414"
        ),
    ],
)
async def test_jwks_discovery(idp: IdP, client: httpx.AsyncClient, metadata_path: str) -> None:
    idp.serve_json("/keys", jwks(KEY_A))
    rig = Rig(idp, client, discovery=True)
    idp.serve_json(metadata_path, {"issuer": rig.issuer, "jwks_uri": f"{idp.url}/keys"})
    assert await rig.verify(rig.token()) == "user-42"
    assert rig.fetches("/keys") == 1


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            {"issuer": "https://evil.example/realms/main"}, id="AUTH-1-discovery-issuer-mismatch"
        ),
        pytest.param({"issuer": None}, id="AUTH-1-discovery-issuer-missing"),
        pytest.param(
            {"jwks_uri": "http://login.example.com/keys"}, id="AUTH-1-discovery-jwks-uri-not-https"
        ),
    ],
)
async def test_jwks_discovery_refused(
    idp: IdP, client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    idp.serve_json("/keys", jwks(KEY_A))
    rig = Rig(idp, client, discovery=True)
    metadata = {"issuer": rig.issuer, "jwks_uri": f"{idp.url}/keys", **document}
    idp.serve_json("/realms/main/.well-known/openid-configuration", metadata)
    assert await rig.verify(rig.token()) == "jwks_unavailable"
    assert rig.fetches("/keys") == 0


def test_metadata_urls() -> None:
    assert metadata_urls("https://id.example.com/realms/main/") == [
        "https://id.example.com/realms/main/.well-known/openid-configuration",
        "https://id.example.com/.well-known/oauth-authorization-server/realms/main",
    ]
    assert metadata_urls("https://id.example.com") == [
        "https://id.example.com/.well-known/openid-configuration",
        "https://id.example.com/.well-known/oauth-authorization-server",
    ]


def test_parse_metadata_loopback_http_allowed() -> None:
    issuer = "https://id.example.com"
    assert parse_metadata({"issuer": issuer, "jwks_uri": "http://127.0.0.1:9/k"}, issuer)
    with pytest.raises(FetchError):
        parse_metadata({"issuer": issuer, "jwks_uri": "ftp://id.example.com/k"}, issuer)


def _weak_rsa_jwk() -> dict[str, Any]:
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - weak on purpose
    numbers = weak.public_key().public_numbers()

    def b64int(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"kty": "RSA", "kid": "weak", "n": b64int(numbers.n), "e": b64int(numbers.e)}


def test_parse_jwks_keeps_only_signature_keys() -> None:
    """AUTH-3: use/key_ops/kty filters; private members never kept."""
    a = KEY_A.as_dict(private=False)
    entries = [
        a,
        dict(ec_key("enc").as_dict(private=False), use="enc"),
        dict(ec_key("wrap").as_dict(private=False), key_ops=["wrapKey"]),
        dict(ec_key("ver").as_dict(private=False), key_ops=["verify"]),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "PQC", "kid": "future"},
        _weak_rsa_jwk(),
        ec_key("leaked").as_dict(private=True),
        "junk",
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
    ]
    keys = parse_jwks({"keys": entries})
    assert [key.kid for key in keys] == ["key-a", "ver", "leaked"]
    assert not any(key.is_private for key in keys)
    with pytest.raises(FetchError):
        parse_jwks({"nokeys": []})


@pytest.mark.parametrize(
    ("key", "alg", "fits"),
    [
        pytest.param(ec_key("k"), "ES256", True, id="AUTH-3-ES256-P256"),
        pytest.param(ec_key("k", "P-384", None), "ES256", False, id="AUTH-3-ES256-P384"),
        pytest.param(ec_key("k", "P-384", "ES384"), "ES384", True, id="AUTH-3-ES384-P384"),
        pytest.param(ec_key("k"), "RS256", False, id="AUTH-3-RS256-EC"),
        pytest.param(rsa_key("r", None), "PS256", True, id="AUTH-3-PS256-RSA-no-alg"),
        pytest.param(rsa_key("r", "RS256"), "PS256", False, id="AUTH-3-PS256-RSA-alg-RS256"),
        pytest.param(ed_key("e"), "EdDSA", True, id="AUTH-3-EdDSA-Ed25519"),
        pytest.param(ed_key("e"), "ES256", False, id="AUTH-3-ES256-OKP"),
        pytest.param(ec_key("k"), "HS256", False, id="AUTH-2-HS256-never"),
        pytest.param(ec_key("k"), "none", False, id="AUTH-2-none-never"),
    ],
)
def test_key_fits(key: Any, alg: str, fits: bool) -> None:
    assert key_fits(key, alg) is fits


async def test_select_key_without_kid() -> None:
    """AUTH-3: no kid → only when exactly one key fits the alg."""
    one = StaticKeys([KEY_A, rsa_key("rsa-1")])
    assert (await one.get_key(None, "ES256")) is not None
    two = StaticKeys([KEY_A, KEY_B])
    assert (await two.get_key(None, "ES256")) is None
    assert select_key([KEY_A, KEY_B], "key-b", "ES256") is not None
