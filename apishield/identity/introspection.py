"""Opaque bearer tokens, checked with OAuth 2.0 Token Introspection (RFC 7662, AUTH 12).

Trust assumption: the configured introspection endpoint is the authority on its tokens. The
gateway authenticates to it with its own client credentials (RFC 7662 §2.1; HTTP Basic as in
RFC 6749 §2.3.1) and believes its answer; it never believes anything the token itself says.

- ``active`` must be the JSON ``true``; anything else → 401 ``token_inactive`` (§2.2).
- An answer is cached by token hash no longer than the token's ``exp`` nor ``cache_ttl``, so
  a revoked token stays usable at most ``cache_ttl``.
- Refresh tokens and ID tokens are refused even when active (AUTH 35): ``token_type``
  ``refresh_token``, or the same kind claims ``jwt.check_access_token`` reads.
- When the endpoint cannot answer (network, timeout, status other than 200, not JSON, too
  large) the request fails closed: 503 ``introspection_unavailable``. The reason goes to the
  gateway log with the token's fingerprint, never the token.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote_plus

import httpx

from apishield.errors import ConfigError, HTTPError
from apishield.identity.jwks import FetchError, fetch_json
from apishield.identity.jwt import (
    build_principal,
    check_access_token,
    check_audience,
    invalid_token,
)
from apishield.identity.principal import Principal
from apishield.identity.settings import IntrospectionSettings
from apishield.identity.tokencache import TokenCache
from apishield.identity.verifier import BearerVerifier, fingerprint

logger = logging.getLogger("apishield.identity")

MAX_RESPONSE_BYTES = 64 * 1024
_REFRESH_TOKEN_TYPES = frozenset({"refresh_token", "refresh"})


def resolve_secret(reference: str, *, environ: Mapping[str, str] | None = None) -> str:
    """The secret behind ``env:NAME`` or ``file:PATH``; ``ConfigError`` when it is missing.

    Read once at start-up. A file's trailing newline is dropped (editors add one).
    """
    kind, _, name = reference.partition(":")
    if kind == "env":
        value = (os.environ if environ is None else environ).get(name, "")
        if not value:
            raise ConfigError(f"introspection client_secret: environment variable {name} is unset")
        return value
    if kind == "file":
        try:
            value = Path(name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"introspection client_secret: cannot read {name} ({exc.strerror})"
            ) from exc
        if not value:
            raise ConfigError(f"introspection client_secret: {name} is empty")
        return value
    raise ConfigError("introspection client_secret must be env:NAME or file:PATH")


def basic_credentials(client_id: str, client_secret: str) -> str:
    """``Authorization`` value for HTTP Basic client authentication (RFC 6749 §2.3.1).

    Both parts are form-urlencoded first, as §2.3.1 requires, so a ``:`` in an id or secret
    cannot shift the split.
    """
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def introspection_unavailable() -> HTTPError:
    return HTTPError(
        code="introspection_unavailable",
        status=503,
        hint="the token introspection endpoint could not be asked; see the gateway log",
    )


def principal_from_introspection(answer: object, *, default_issuer: str, now: float) -> Principal:
    """The principal of an introspection response (RFC 7662 §2.2), or a 401.

    ``default_issuer`` (the endpoint) names the issuer when the answer has no ``iss``.
    """
    if not isinstance(answer, dict):
        raise FetchError("the introspection response is not a JSON object")
    if answer.get("active") is not True:
        raise invalid_token(
            "the authorization server says the token is not active", code="token_inactive"
        )
    token_type = answer.get("token_type")
    if isinstance(token_type, str) and token_type.lower() in _REFRESH_TOKEN_TYPES:
        raise invalid_token(
            "refresh tokens are not accepted as access tokens", code="token_invalid"
        )
    check_access_token(answer, typ="at+jwt")
    exp = answer.get("exp")
    if exp is not None:
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise invalid_token(
                "the introspection response has a malformed exp", code="token_invalid"
            )
        if exp <= now:
            raise invalid_token("the token has expired", code="token_expired")
    issuer = answer.get("iss")
    return build_principal(
        answer,
        kind="opaque",
        issuer=issuer if isinstance(issuer, str) and issuer else default_issuer,
        roles_claim=None,
    )


def _check_resource(
    principal: Principal, resource: str | None, audiences: tuple[str, ...]
) -> None:
    # AUTH 6 for opaque tokens: a route with a resource identifier needs the answer's `aud`
    # (RFC 7662 §2.2) to name it, other routes one of the configured audiences; an answer
    # without `aud` is refused there (fail closed).
    if resource is not None:
        check_audience(principal.claims, (resource,), what="the route's resource identifier")
    elif audiences:
        check_audience(principal.claims, audiences, what="the configured audience")


class IntrospectionVerifier(BearerVerifier):
    """Verifies opaque tokens at an RFC 7662 endpoint, with a bounded cache of answers.

    ``client`` is shared and closed by its owner; without one the verifier makes its own.
    ``clock`` is unix seconds, injectable for tests.
    """

    def __init__(
        self,
        settings: IntrospectionSettings,
        *,
        cache_size: int = 10_000,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        fetch_timeout: float = 5.0,
    ) -> None:
        self.endpoint = settings.endpoint
        audience = settings.audience
        self.audiences: tuple[str, ...] = (
            (audience,) if isinstance(audience, str) else tuple(audience or ())
        )
        self.cache_ttl = settings.cache_ttl
        self.fetch_timeout = fetch_timeout
        secret = resolve_secret(settings.client_secret, environ=environ)
        self._headers = {
            "Authorization": basic_credentials(settings.client_id, secret),
            "Accept": "application/json",
        }
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self._clock = clock
        self.cache = TokenCache(cache_size, clock=clock)
        self.requests = 0  # introspection calls made, for metrics and tests

    async def verify_bearer(self, token: str, *, resource: str | None = None) -> Principal:
        cached = self.cache.get(token)
        if cached is not None:
            _check_resource(cached, resource, self.audiences)
            return cached
        self.requests += 1
        try:
            _, answer = await fetch_json(
                self._client,
                "POST",
                self.endpoint,
                seconds=self.fetch_timeout,
                max_bytes=MAX_RESPONSE_BYTES,
                headers=self._headers,
                data={"token": token, "token_type_hint": "access_token"},
            )
            now = self._clock()
            principal = principal_from_introspection(answer, default_issuer=self.endpoint, now=now)
        except FetchError as exc:
            logger.warning(
                "token introspection failed at %s for token %s: %s",
                self.endpoint,
                fingerprint(token),
                exc,
            )
            raise introspection_unavailable() from exc
        self.cache.put(token, principal, until=now + self.cache_ttl)
        _check_resource(principal, resource, self.audiences)
        return principal

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
