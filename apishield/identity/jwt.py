"""Bearer JWT access tokens of one issuer: RFC 9068 profile, RFC 8725 best practices.

Trust assumption: a token is attacker-controlled text until its signature has been verified
with a key the configured issuer published (``KeyProvider``). Before that, only the header is
read, to refuse early and to pick the key; the header never supplies a key (``jku``, ``x5u``,
``jwk`` and ``x5c`` are ignored, AUTH 1). Checks, in order:

1. size: over 8 KiB → ``token_too_large``, before any decoding (AUTH 8);
2. shape: three base64url segments, header and payload JSON objects without duplicate names;
3. header: ``alg`` in the issuer's explicit list of asymmetric algorithms (``none`` and HMAC
   never, so a token "signed" with the issuer's public key as an HMAC secret is refused,
   AUTH 2); no ``crit`` (no extension is understood, AUTH 4); ``typ`` policy (AUTH 7);
4. key: by ``kid``, fitting ``alg`` (AUTH 3, see ``jwks``);
5. signature, by joserfc with the algorithm list passed explicitly;
6. claims, by joserfc's claims registry with ``iss`` (exact), ``aud`` (a non-blank string or
   array of strings), ``exp``, ``iat`` and ``sub`` essential; ``nbf``/``iat`` in the future
   refused beyond ``leeway``; then ``exp − iat`` ≤ ``max_lifetime`` (AUTH 5);
7. not an ID token or refresh token (AUTH 35): see ``check_access_token``;
8. audience (AUTH 6, RFC 8725 §3.9): ``aud`` must name the route's resource identifier when
   the route sets one (RFC 8707), else one of the issuer's configured audiences. This check
   depends on the request, not on the token alone, so it is separate (``check_audience``):
   a verified token can be cached once and still be checked against each route it calls.

Every refusal is ``UnauthorizedError`` with ``WWW-Authenticate: Bearer error="invalid_token"``
(RFC 6750 §3.1, AUTH 11) and a code; no library message and no token text reaches it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from joserfc import jwt as jose_jwt
from joserfc.errors import ExpiredTokenError, JoseError, SecurityWarning
from joserfc.jws import JWSRegistry

from apishield.errors import ConfigError, UnauthorizedError
from apishield.identity.jwks import ASYMMETRIC_ALGORITHMS, JWKSCache, KeyProvider
from apishield.identity.principal import Principal
from apishield.identity.settings import IssuerSettings
from apishield.identity.verifier import BearerVerifier

MAX_TOKEN_BYTES = 8 * 1024  # AUTH 8
INVALID_TOKEN_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

TypPolicy = Literal["at+jwt", "not-id-token"]

_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
# Header `typ` values are media types, compared without case and with "application/" optional
# (RFC 7515 §4.1.9).
_AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
_PLAIN_JWT = frozenset({"jwt", "application/jwt"})
# Claims only ID tokens carry (OpenID Connect Core 1.0 §2 and §3.3.2.11; `s_hash` from FAPI 1.0
# Advanced §5.1): an access token has no use for them.
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash")
# Vendor claims that name the token's kind: Keycloak's `typ` ("Bearer", "ID", "Refresh",
# "Offline", "Logout"), Amazon Cognito's `token_use` ("access", "id").
_ACCESS_KIND_CLAIMS = {"typ": "bearer", "token_use": "access"}


def invalid_token(hint: str, *, code: str) -> UnauthorizedError:
    """A 401 refusal of a bearer token (AUTH 11); ``hint`` is shown in development mode only."""
    return UnauthorizedError(code=code, hint=hint, headers=dict(INVALID_TOKEN_CHALLENGE))


def check_token_size(token: str) -> None:
    """AUTH 8: refuse tokens over 8 KiB before any decoding (and any that is not ASCII,
    which no JWS or RFC 6750 token can be)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise invalid_token(
            f"bearer tokens are limited to {MAX_TOKEN_BYTES} bytes", code="token_too_large"
        )
    if not token.isascii():
        raise invalid_token("a bearer token is ASCII (RFC 6750 §2.1)", code="token_invalid")


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A JWS compact token split and decoded, not verified: every field is untrusted."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Parsers disagree on which duplicate wins; a checked value must be the used one.
            raise ValueError("duplicate member")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_segment(segment: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def parse_jws(token: str) -> CompactJWS | None:
    """``token`` split as a JWS compact serialization (RFC 7515 §7.1), or None if it is not one.

    Pure and cheap: used to route a token to its issuer (by the unverified ``iss``) and to
    check its header before any key is looked up. The caller checks the size first.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(_B64URL.match(part) for part in parts):
        return None
    header = _json_segment(parts[0])
    if header is None or not isinstance(header.get("alg"), str):
        return None
    claims = _json_segment(parts[1])
    if claims is None:
        return None
    return CompactJWS(token=token, header=header, claims=claims)


def check_header(header: dict[str, Any], *, algorithms: frozenset[str], typ: TypPolicy) -> None:
    """AUTH 2, 4, 7: the header checks made before any key work."""
    alg = header["alg"]
    if alg not in algorithms:
        # Covers `none` and HS256: the allowed list holds asymmetric algorithms only.
        raise invalid_token(
            "the token's algorithm is not accepted for its issuer", code="token_invalid"
        )
    if "crit" in header or "b64" in header:
        # No JWS extension is understood here, so every critical one is unsupported
        # (RFC 7515 §4.1.11); `b64` (RFC 7797) would change what the signature covers.
        raise invalid_token(
            "the token has a critical header parameter that is not supported", code="token_invalid"
        )
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise invalid_token("the token's kid is not a string", code="token_invalid")
    value = header.get("typ")
    media = value.lower() if isinstance(value, str) else None
    if typ == "at+jwt":
        if media not in _AT_JWT:
            raise invalid_token(
                "the issuer requires typ at+jwt (RFC 9068) on access tokens", code="token_invalid"
            )
    elif value is not None and media not in _AT_JWT | _PLAIN_JWT:
        raise invalid_token("the token's typ is not an access token type", code="token_invalid")


def check_audience(claims: dict[str, Any], accepted: Collection[str], *, what: str) -> None:
    """AUTH 6: ``aud`` (a string or an array, RFC 7519 §4.1.3) must contain one of
    ``accepted``; ``what`` names them for the development hint. A missing or malformed ``aud``
    is refused too (fail closed: a token for "anyone" is not a token for this API)."""
    aud = claims.get("aud")
    # Runs on every request, cache hit or not: no generator, no list built for a string.
    if isinstance(aud, str):
        if aud in accepted:
            return
    elif isinstance(aud, list):
        for name in aud:
            if isinstance(name, str) and name in accepted:
                return
    raise invalid_token(f"the token's aud does not contain {what}", code="token_audience_mismatch")


def check_access_token(claims: dict[str, Any], *, typ: TypPolicy) -> None:
    """AUTH 35: refuse ID tokens and refresh tokens presented as access tokens.

    The rule, applied whatever the ``typ`` policy:

    - a claim only ID tokens carry (``nonce``, ``at_hash``, ``c_hash``, ``s_hash``) → refused;
    - a vendor claim naming the token's kind, other than access: Keycloak's ``typ`` claim not
      ``Bearer`` (``ID``, ``Refresh``, ``Offline``…), Cognito's ``token_use`` not ``access``.

    With ``typ: not-id-token`` (issuers that send ``typ: JWT`` for every token) also:

    - no ``scope``/``scp`` claim while ``azp`` (the client the token was issued to) is one of
      its audiences: the shape of an ID token, whose ``aud`` is the client itself (OpenID
      Connect Core 1.0 §2). An access token's audience is the API, not the client.
    """
    for name in _ID_TOKEN_CLAIMS:
        if name in claims:
            raise invalid_token("ID tokens are not accepted as access tokens", code="token_invalid")
    for name, access in _ACCESS_KIND_CLAIMS.items():
        kind = claims.get(name)
        if kind is not None and (not isinstance(kind, str) or kind.lower() != access):
            raise invalid_token("only access tokens are accepted", code="token_invalid")
    if typ == "not-id-token" and "scope" not in claims and "scp" not in claims:
        azp = claims.get("azp")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if azp is not None and azp in audiences:
            raise invalid_token(
                "the token looks like an ID token (audience is its client)", code="token_invalid"
            )


def _words(value: Any, what: str) -> frozenset[str]:
    """A space-separated string (RFC 8693 §4.2) or an array of strings."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise invalid_token(f"the token's {what} claim is malformed", code="token_invalid")


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` (space-separated, RFC 9068 §2.2.3) or else ``scp`` (array)."""
    if "scope" in claims:
        return _words(claims["scope"], "scope")
    if "scp" in claims:
        return _words(claims["scp"], "scp")
    return frozenset()


def roles_of(claims: dict[str, Any], path: str | None) -> frozenset[str]:
    """Roles at a dotted claim path (``realm_access.roles``); absent → none."""
    if path is None:
        return frozenset()
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return frozenset()
        value = value[part]
    return _words(value, "roles")


def build_principal(
    claims: dict[str, Any], *, kind: Literal["jwt", "opaque"], issuer: str, roles_claim: str | None
) -> Principal:
    """AUTH 10: the principal of verified claims, identified by (``iss``, ``sub``)."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise invalid_token("the token has no subject", code="token_invalid")
    client_id = claims.get("client_id", claims.get("azp"))
    jti = claims.get("jti")
    exp = claims.get("exp")
    return Principal(
        issuer=issuer,
        subject=subject,
        kind=kind,
        scopes=scopes_of(claims),
        roles=roles_of(claims, roles_claim),
        client_id=client_id if isinstance(client_id, str) else None,
        credential_id=jti if isinstance(jti, str) else None,
        expires_at=float(exp) if isinstance(exp, int | float) else None,
        claims=claims,
    )


class JWTVerifier(BearerVerifier):
    """Verifies access tokens of one issuer (AUTH 1–8, 10, 11, 35).

    ``keys`` supplies the issuer's public keys: a ``JWKSCache`` for an external issuer, the
    store's keys for the built-in one. ``audience`` is the issuer's default resource
    identifier(s): what ``aud`` must contain on routes that set no ``resource`` of their own
    (AUTH 6). ``clock`` is unix seconds, injectable for tests.
    """

    def __init__(
        self,
        *,
        issuer: str,
        keys: KeyProvider,
        algorithms: Sequence[str],
        audience: str | Sequence[str],
        typ: TypPolicy = "at+jwt",
        roles_claim: str | None = None,
        leeway: float = 60.0,
        max_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not algorithms or not set(algorithms) <= ASYMMETRIC_ALGORITHMS:
            raise ConfigError(
                f"issuer {issuer}: algorithms must be asymmetric ones from "
                f"{sorted(ASYMMETRIC_ALGORITHMS)}"
            )
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences:
            raise ConfigError(f"issuer {issuer}: give at least one audience")
        if not all(isinstance(a, str) and a.strip() for a in audiences):
            # A blank audience (an empty environment variable, say) would accept tokens
            # whose `aud` is [""]: tokens meant for no API in particular (AUTH 6).
            raise ConfigError(f"issuer {issuer}: an audience cannot be blank")
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self.keys = keys
        self.algorithms = frozenset(algorithms)
        self.typ: TypPolicy = typ
        self.roles_claim = roles_claim
        self.max_lifetime = max_lifetime
        self.leeway = leeway
        self._clock = clock
        self._algorithm_list = sorted(self.algorithms)
        # Unknown header parameters are ignored, as RFC 7515 §4 requires (crit is refused
        # before this point); registered ones still have their types checked.
        self._jws = JWSRegistry(algorithms=self._algorithm_list, strict_check_header=False)
        self._claims = jose_jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=int(leeway),
            iss={"essential": True, "value": issuer},
            # Present, and a string or an array of strings; which value it must contain
            # depends on the route, so `check_audience` decides per request (AUTH 6).
            aud={"essential": True},
            exp={"essential": True},
            iat={"essential": True},  # RFC 9068 §2.2; without it the lifetime is unknown
            sub={"essential": True},
        )

    @classmethod
    def from_settings(
        cls,
        settings: IssuerSettings,
        *,
        keys: KeyProvider | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> JWTVerifier:
        """A verifier for a configured external issuer, with its JWKS cache."""
        return cls(
            issuer=settings.issuer,
            keys=keys if keys is not None else JWKSCache(settings, client=client),
            algorithms=settings.algorithms,
            audience=settings.audience,
            typ=settings.typ,
            roles_claim=settings.roles_claim,
            leeway=settings.leeway,
            max_lifetime=settings.max_lifetime,
            clock=clock,
        )

    async def verify_bearer(self, token: str, *, resource: str | None = None) -> Principal:
        check_token_size(token)
        parsed = parse_jws(token)
        if parsed is None:
            raise invalid_token("the token is not a JWS compact token", code="token_invalid")
        principal = await self.verify_parsed_any_audience(parsed)
        self.check_audience(principal.claims, resource)
        return principal

    def check_audience(self, claims: dict[str, Any], resource: str | None) -> None:
        """AUTH 6: ``aud`` contains ``resource`` (the route's resource identifier), or, for a
        route without one, one of this issuer's configured audiences."""
        if resource is not None:
            check_audience(claims, (resource,), what="the route's resource identifier")
        else:
            check_audience(claims, self.audiences, what="the issuer's configured audience")

    async def verify_parsed_any_audience(self, parsed: CompactJWS) -> Principal:
        """Every check after splitting but the audience's, which the caller must make with
        ``check_audience`` for the route at hand, on each use (AUTH 6). ``parsed`` comes
        from ``parse_jws`` of a sized token."""
        header = parsed.header
        check_header(header, algorithms=self.algorithms, typ=self.typ)
        alg: str = header["alg"]
        key = await self.keys.get_key(header.get("kid"), alg)
        if key is None:
            raise invalid_token(
                "no key of the issuer matches the token's kid and alg", code="token_invalid"
            )
        # joserfc warns that the name "EdDSA" is deprecated by RFC 9864; it is still the name
        # issuers publish, and the curves it may use are restricted by `key_fits`.
        quiet: contextlib.AbstractContextManager[object] = (
            warnings.catch_warnings(action="ignore", category=SecurityWarning)
            if alg == "EdDSA"
            else contextlib.nullcontext()
        )
        try:
            with quiet:
                verified = jose_jwt.decode(
                    parsed.token, key, algorithms=self._algorithm_list, registry=self._jws
                )
        except (JoseError, ValueError, TypeError) as exc:
            raise invalid_token(
                "the token's signature does not verify", code="token_invalid"
            ) from exc
        claims = verified.claims
        try:
            self._claims.validate(claims)
        except ExpiredTokenError as exc:
            raise invalid_token("the token has expired", code="token_expired") from exc
        except (JoseError, ValueError, TypeError, OverflowError) as exc:
            raise invalid_token(
                "a claim is missing or wrong (iss, aud, sub, exp, iat or nbf)", code="token_invalid"
            ) from exc
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise invalid_token(
                "the token's lifetime (exp - iat) is over the issuer's maximum",
                code="token_invalid",
            )
        check_access_token(claims, typ=self.typ)
        return build_principal(claims, kind="jwt", issuer=self.issuer, roles_claim=self.roles_claim)

    async def aclose(self) -> None:
        await self.keys.aclose()
