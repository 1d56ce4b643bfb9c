"""How the gateway verifies the built-in server's tokens: keys and revocations from the store.

- ``StoreKeys`` is a ``KeyProvider`` over the store's published signing keys (next, active and
  retiring ones, AUTH 23), reloaded every ``refresh_every`` seconds and at once (with a
  cooldown) for an unknown ``kid``: a key published before it signs is always known in time,
  and a key retired in an emergency stops verifying within ``refresh_every``.
- ``builtin_verifier`` is the ``JWTVerifier`` for ``identity.issuers: [{builtin: true}]``:
  ES256 only, ``typ: at+jwt``, exact ``iss``, the gateway's audience, roles from ``roles``.
- ``builtin_revocations`` is the store's denylist (``RevocationList``), whose ``is_revoked``
  is the hook ``build_bearer_verifier(..., is_revoked=...)`` takes (AUTH 26).
- ``read_own_access_token`` lets the revocation and introspection endpoints recognise an
  access token of this issuer (signature, ``iss``, ``typ``) without a fixed audience.

A store that cannot be read is ``StoreUnavailableError`` (503): fail closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from apishield.authserver.config import MAX_ACCESS_TOKEN_TTL, validate_issuer
from apishield.authserver.signing import ACCESS_TOKEN_TYP, ALGORITHM
from apishield.identity.jwks import KeyProvider, parse_jwks, select_key
from apishield.identity.jwt import MAX_TOKEN_BYTES, JWTVerifier, parse_jws
from apishield.store.revocations import RevocationList

if TYPE_CHECKING:
    from apishield.identity.settings import BuiltinIssuer
    from apishield.store.engine import Store

ROLES_CLAIM = "roles"


class StoreKeys(KeyProvider):
    """The built-in issuer's public keys, read from the store."""

    def __init__(
        self,
        store: Store,
        *,
        refresh_every: float = 30.0,
        cooldown: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_every = refresh_every
        self.cooldown = cooldown
        self._monotonic = monotonic
        self._keys: list[Key] = []
        self._loaded: float | None = None

    async def refresh(self) -> None:
        """Reload the published keys now."""
        records = await self.store.signing_keys.published()
        self._keys = parse_jwks({"keys": [dict(r.public_jwk) for r in records]})
        self._loaded = self._monotonic()

    async def get_key(self, kid: str | None, alg: str) -> Key | None:
        now = self._monotonic()
        if self._loaded is None or now - self._loaded >= self.refresh_every:
            await self.refresh()
        key = select_key(self._keys, kid, alg)
        if key is None and kid is not None and self._loaded is not None:
            if self._monotonic() - self._loaded >= self.cooldown:
                await self.refresh()
                key = select_key(self._keys, kid, alg)
        return key


def builtin_verifier(
    store: Store,
    settings: BuiltinIssuer | None,
    issuer_url: str,
    audience: str | Sequence[str],
    *,
    keys: StoreKeys | None = None,
    leeway: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> JWTVerifier:
    """The verifier of the built-in server's access tokens (AUTH 1–7, 19, 35 applied to our
    own tokens). ``audience``: the resource identifier(s) this gateway answers for."""
    del settings  # lifetimes are checked against the 1 h maximum, whatever the current TTL
    return JWTVerifier(
        issuer=validate_issuer(issuer_url),
        keys=keys if keys is not None else StoreKeys(store),
        algorithms=[ALGORITHM],
        audience=audience,
        typ="at+jwt",
        roles_claim=ROLES_CLAIM,
        leeway=leeway,
        max_lifetime=MAX_ACCESS_TOKEN_TTL,
        clock=clock,
    )


def builtin_revocations(store: Store, *, refresh_every: float = 5.0) -> RevocationList:
    """The store's access-token denylist; pass ``.is_revoked`` to ``build_bearer_verifier``."""
    return RevocationList(store, refresh_every=refresh_every)


_REGISTRY = JWSRegistry(algorithms=[ALGORITHM], strict_check_header=False)


async def read_own_access_token(
    token: str, *, keys: KeyProvider, issuer: str
) -> dict[str, Any] | None:
    """The claims of an access token this issuer signed, or None. Expiry is the caller's
    to judge (revoking an expired token is a no-op; introspecting one says inactive)."""
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        return None
    parsed = parse_jws(token)
    if parsed is None:
        return None
    header = parsed.header
    typ = header.get("typ")
    if header["alg"] != ALGORITHM or "crit" in header or "b64" in header:
        return None
    if not isinstance(typ, str) or typ.lower() not in (ACCESS_TOKEN_TYP, "application/at+jwt"):
        return None
    kid = header.get("kid")
    key = await keys.get_key(kid if isinstance(kid, str) else None, ALGORITHM)
    if key is None:
        return None
    try:
        claims = jose_jwt.decode(token, key, algorithms=[ALGORITHM], registry=_REGISTRY).claims
    except (JoseError, ValueError, TypeError):
        return None
    exp, jti = claims.get("exp"), claims.get("jti")
    if claims.get("iss") != issuer or not isinstance(exp, int) or not isinstance(jti, str):
        return None
    return claims
