"""The cache of verified tokens: hits, expiry at `exp`, LRU bound, and the revocation hook."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import Key

from apishield.errors import HTTPError
from apishield.identity.bearer import BearerDispatcher
from apishield.identity.jwks import KeyProvider, StaticKeys
from apishield.identity.jwt import JWTVerifier
from apishield.identity.principal import Principal
from apishield.identity.tokencache import TokenCache, token_key
from tests.identity.idp import NOW, Clock, claims, ec_key, sign

ISSUER = "https://login.example.com"
KEY = ec_key("k-1")


class CountingKeys(KeyProvider):
    def __init__(self) -> None:
        self.inner = StaticKeys([KEY])
        self.calls = 0

    async def get_key(self, kid: str | None, alg: str) -> Key | None:
        self.calls += 1
        return await self.inner.get_key(kid, alg)


def rig(size: int = 100, **cache: Any) -> tuple[BearerDispatcher, CountingKeys, Clock]:
    clock = Clock()
    keys = CountingKeys()
    verifier = JWTVerifier(
        issuer=ISSUER, keys=keys, algorithms=["ES256"], audience="orders-api", clock=clock
    )
    dispatcher = BearerDispatcher([verifier], cache=TokenCache(size, clock=clock, **cache))
    return dispatcher, keys, clock


def token(**extra: Any) -> str:
    return sign(KEY, claims(ISSUER, **extra))


async def code_of(dispatcher: BearerDispatcher, value: str) -> str:
    try:
        return (await dispatcher.verify_bearer(value)).subject
    except HTTPError as exc:
        return exc.code


async def test_cache_hit_skips_verification() -> None:
    dispatcher, keys, _ = rig()
    value = token()
    first = await dispatcher.verify_bearer(value)
    second = await dispatcher.verify_bearer(value)
    assert second is first
    assert keys.calls == 1
    assert (dispatcher.cache.hits, dispatcher.cache.misses) == (1, 1)


async def test_cache_keeps_until_exp_never_longer() -> None:
    """Cached until `exp`; past it the token is verified again (and refused past the leeway)."""
    dispatcher, keys, clock = rig()
    value = token(lifetime=300)
    await dispatcher.verify_bearer(value)
    clock.advance(299)
    await dispatcher.verify_bearer(value)
    assert keys.calls == 1
    clock.advance(1)  # at exp: no longer served from the cache
    assert await code_of(dispatcher, value) == "user-42"  # within the 60 s leeway
    assert keys.calls == 2
    clock.advance(60)
    assert await code_of(dispatcher, value) == "token_expired"
    assert len(dispatcher.cache) == 0


async def test_cache_is_lru_bounded() -> None:
    dispatcher, keys, _ = rig(size=2)
    one, two, three = (token(jti=f"j{n}") for n in range(3))
    for value in (one, two, one, three):  # `two` is least recently used when `three` arrives
        await dispatcher.verify_bearer(value)
    assert len(dispatcher.cache) == 2
    calls = keys.calls
    await dispatcher.verify_bearer(one)
    await dispatcher.verify_bearer(three)
    assert keys.calls == calls
    await dispatcher.verify_bearer(two)
    assert keys.calls == calls + 1


async def test_cache_size_zero_caches_nothing() -> None:
    dispatcher, keys, _ = rig(size=0)
    value = token()
    await dispatcher.verify_bearer(value)
    await dispatcher.verify_bearer(value)
    assert keys.calls == 2


async def test_cache_holds_hashes_not_tokens() -> None:
    """AUTH 38: a memory dump of the cache shows no credential."""
    dispatcher, _, _ = rig()
    value = token()
    await dispatcher.verify_bearer(value)
    stored = list(dispatcher.cache._entries)
    assert stored == [token_key(value)]
    assert all(len(key) == 32 for key in stored)


def _sync_hook(revoked: set[str]) -> Any:
    return lambda jti: jti in revoked


def _async_hook(revoked: set[str]) -> Any:
    async def is_revoked(jti: str) -> bool:
        return jti in revoked

    return is_revoked


@pytest.mark.parametrize("make_hook", [_sync_hook, _async_hook], ids=["sync", "async"])
async def test_revocation_wins_on_cache_hit(make_hook: Any) -> None:
    """AUTH-26 hook: a token revoked after it was cached is refused on the next hit."""
    revoked: set[str] = set()
    dispatcher, keys, _ = rig(is_revoked=make_hook(revoked))
    value = token(jti="jti-9")
    assert await code_of(dispatcher, value) == "user-42"
    assert await code_of(dispatcher, value) == "user-42"
    revoked.add("jti-9")
    assert await code_of(dispatcher, value) == "token_revoked"
    assert len(dispatcher.cache) == 0
    assert keys.calls == 1


async def test_revocation_checked_on_first_use_too() -> None:
    dispatcher, _, _ = rig(is_revoked=lambda jti: jti == "dead")
    assert await code_of(dispatcher, token(jti="dead")) == "token_revoked"
    assert await code_of(dispatcher, token(jti="alive")) == "user-42"


async def test_revocation_hook_set_later() -> None:
    """The store provides the hook after start-up, on the dispatcher's cache."""
    dispatcher, _, _ = rig()
    value = token(jti="late")
    await dispatcher.verify_bearer(value)
    dispatcher.cache.is_revoked = lambda jti: True
    assert await code_of(dispatcher, value) == "token_revoked"


async def test_token_without_jti_cannot_be_revoked_by_jti() -> None:
    dispatcher, _, _ = rig(is_revoked=lambda jti: True)
    assert await code_of(dispatcher, token(jti=None)) == "user-42"


def test_put_deadline() -> None:
    clock = Clock()
    cache = TokenCache(10, clock=clock)
    forever = Principal(issuer="i", subject="s", kind="opaque")
    cache.put("no-exp", forever)
    assert cache.get("no-exp") is None  # nothing says how long it may live
    cache.put("ttl", forever, until=NOW + 5)
    assert cache.get("ttl") is forever
    short = Principal(issuer="i", subject="s", kind="jwt", expires_at=NOW + 1)
    cache.put("short", short, until=NOW + 60)
    clock.advance(1)
    assert cache.get("short") is None  # exp wins over a longer `until`
    cache.put("past", short, until=NOW + 60)
    assert len(cache) == 1
    with pytest.raises(ValueError):
        TokenCache(-1)


ORDERS = "https://api.example.com/orders"
BILLING = "https://api.example.com/billing"


async def test_cached_token_is_checked_against_each_routes_resource() -> None:
    """AUTH-6-cache-hit-other-route: the cache is keyed by token, not by route; a token
    verified on one route is refused on a route with another resource, with no key work."""
    dispatcher, keys, _ = rig()
    value = token(aud=ORDERS)
    assert (await dispatcher.verify_bearer(value, resource=ORDERS)).subject == "user-42"
    assert await code_of_route(dispatcher, value, BILLING) == "token_audience_mismatch"
    assert await code_of_route(dispatcher, value, None) == "token_audience_mismatch"
    assert await code_of_route(dispatcher, value, ORDERS) == "user-42"
    assert keys.calls == 1  # one verification; the refusals came from cache hits
    assert (dispatcher.cache.hits, dispatcher.cache.misses) == (3, 1)
    assert len(dispatcher.cache) == 1  # a refusal for one route does not evict the token


async def test_first_use_on_the_wrong_route_still_caches_the_verification() -> None:
    """AUTH-6-cache-miss-wrong-route: refused for its route, yet verified once for the next."""
    dispatcher, keys, _ = rig()
    value = token(aud=[ORDERS, "orders-api"])
    assert await code_of_route(dispatcher, value, BILLING) == "token_audience_mismatch"
    assert await code_of_route(dispatcher, value, None) == "user-42"
    assert await code_of_route(dispatcher, value, ORDERS) == "user-42"
    assert keys.calls == 1


async def code_of_route(dispatcher: BearerDispatcher, value: str, resource: str | None) -> str:
    try:
        return (await dispatcher.verify_bearer(value, resource=resource)).subject
    except HTTPError as exc:
        return exc.code
