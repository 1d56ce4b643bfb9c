"""The bearer verifier the authentication stage calls: routes each token to whoever can check it.

Trust assumption: the token is attacker-controlled. Its unverified ``iss`` is read only to pick
the verifier of that issuer, by exact match among the configured ones; that verifier then
checks the signature with the issuer's own keys and the ``iss`` claim again, so naming
another issuer gains nothing.

Dispatch (after the 8 KiB limit of AUTH 8 and a look in the token cache):

- a JWS compact token (three base64url segments, a JSON header with ``alg``) → the
  ``JWTVerifier`` of its ``iss``; an unknown or missing ``iss`` → 401 ``token_issuer_unknown``;
- anything else → RFC 7662 introspection when it is configured (AUTH 12), else 401
  ``token_invalid``.

Verified JWTs are cached until ``exp`` (``TokenCache``; introspection keeps its own cache,
bounded by its ``cache_ttl`` as well). The cache is keyed by token alone, so what it holds is
what does not depend on the request: the audience (AUTH 6) is checked on every use, against
the resource identifier of the route being called (or the issuer's audience), and so is the
revocation hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import httpx

from apishield.errors import ConfigError
from apishield.identity.introspection import IntrospectionVerifier
from apishield.identity.jwt import JWTVerifier, check_token_size, invalid_token, parse_jws
from apishield.identity.principal import Principal
from apishield.identity.settings import BuiltinIssuer, IdentitySettings, IssuerSettings
from apishield.identity.tokencache import RevocationCheck, TokenCache
from apishield.identity.verifier import BearerVerifier


class BearerDispatcher(BearerVerifier):
    """Verifies ``Authorization: Bearer`` tokens of every configured issuer (AUTH 1–12, 35).

    Owns what it is given: ``aclose`` closes the verifiers and ``client``.
    """

    def __init__(
        self,
        issuers: Iterable[JWTVerifier],
        *,
        introspection: IntrospectionVerifier | None = None,
        cache: TokenCache | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuers: dict[str, JWTVerifier] = {}
        for verifier in issuers:
            if verifier.issuer in self.issuers:
                raise ConfigError(f"issuer {verifier.issuer} is configured twice")
            self.issuers[verifier.issuer] = verifier
        self.introspection = introspection
        self.cache = cache if cache is not None else TokenCache(0)
        self._client = client

    async def verify_bearer(self, token: str, *, resource: str | None = None) -> Principal:
        check_token_size(token)
        principal = self.cache.get(token)
        if principal is None:
            principal = await self._verify(token, resource)
        if principal.kind == "jwt":
            verifier = self.issuers.get(principal.issuer)
            if verifier is None:  # only JWTs of a configured issuer are ever cached
                raise invalid_token("the token's issuer is not accepted", code="token_invalid")
            # A token verified for one route may be presented to another: the audience is a
            # property of the request, so it is checked on cache hits too (AUTH 6).
            verifier.check_audience(principal.claims, resource)
        await self.cache.check_revoked(token, principal)
        return principal

    async def _verify(self, token: str, resource: str | None) -> Principal:
        parsed = parse_jws(token)
        if parsed is not None:
            issuer = parsed.claims.get("iss")
            verifier = self.issuers.get(issuer) if isinstance(issuer, str) else None
            if verifier is None:
                raise invalid_token(
                    "the token's issuer is not one the gateway accepts", code="token_issuer_unknown"
                )
            principal = await verifier.verify_parsed_any_audience(parsed)
            self.cache.put(token, principal)
            return principal
        if self.introspection is not None:
            return await self.introspection.verify_bearer(token, resource=resource)
        raise invalid_token(
            "the token is not a JWT and no introspection endpoint is configured",
            code="token_invalid",
        )

    async def aclose(self) -> None:
        for verifier in self.issuers.values():
            await verifier.aclose()
        if self.introspection is not None:
            await self.introspection.aclose()
        if self._client is not None:
            await self._client.aclose()


def build_bearer_verifier(
    identity: IdentitySettings | None,
    *,
    builtin: JWTVerifier | None = None,
    is_revoked: RevocationCheck | None = None,
    clock: Callable[[], float] = time.time,
) -> BearerDispatcher | None:
    """The bearer verifier for the policy's ``identity`` section, or None when it accepts none.

    ``builtin`` is the verifier of apishield's own authorization server (``builtin: true`` in
    ``identity.issuers``): its issuer URL, audience and keys come from the server and the
    store, so it is built there, typically as
    ``JWTVerifier(issuer=..., keys=StaticKeys(...), algorithms=["ES256", "EdDSA"], ...)``.
    Without it, a ``builtin: true`` entry accepts no token yet (its tokens get
    ``token_issuer_unknown``). ``is_revoked(jti)`` is the store's revocation check; it can
    also be set later on ``dispatcher.cache.is_revoked``.
    """
    if identity is None:
        return None
    external = [entry for entry in identity.issuers if isinstance(entry, IssuerSettings)]
    wants_builtin = any(isinstance(entry, BuiltinIssuer) for entry in identity.issuers)
    if not external and identity.introspection is None and not (wants_builtin and builtin):
        return None
    # One connection pool for every issuer's JWKS and the introspection endpoint. Redirects
    # are followed by hand (same origin only), so the client itself follows none.
    client = httpx.AsyncClient(follow_redirects=False)
    verifiers = [JWTVerifier.from_settings(entry, client=client, clock=clock) for entry in external]
    if builtin is not None and wants_builtin:
        verifiers.append(builtin)
    introspection = None
    if identity.introspection is not None:
        # Reads the client secret: a ConfigError here leaves nothing open (a client that has
        # made no request holds no connection).
        introspection = IntrospectionVerifier(
            identity.introspection,
            cache_size=identity.token_cache_size,
            client=client,
            clock=clock,
            fetch_timeout=identity.introspection.fetch_timeout,
        )
    return BearerDispatcher(
        verifiers,
        introspection=introspection,
        cache=TokenCache(identity.token_cache_size, clock=clock, is_revoked=is_revoked),
        client=client,
    )
