"""Client authentication at the token, revocation and introspection endpoints (AUTH 17).

Methods (RFC 6749 §2.3, RFC 7523 §2.2), exactly one per request (§2.3: "MUST NOT use more
than one authentication method in each request"):

- ``client_secret_basic``: ``Authorization: Basic`` with the form-urlencoded id and secret;
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the body;
- ``private_key_jwt``: a ``client_assertion`` JWT signed with a key the client registered,
  ``iss`` = ``sub`` = the client id, ``aud`` the issuer or the endpoint, short-lived, its
  ``jti`` never seen before (RFC 7523 §3);
- ``none``: a public client names itself with ``client_id`` (PKCE protects its codes).

Secrets are ≥ 256 random bits (``apishield.store.clients``) stored with Argon2id; the check
runs in constant time and costs the same for an unknown client. Every failure is the same
``invalid_client`` to the caller; the log line carries the reason.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus

from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jws import JWSRegistry

from apishield.authserver.errors import invalid_client, invalid_request
from apishield.authserver.storage import remember_assertion
from apishield.identity.jwks import ASYMMETRIC_ALGORITHMS, FetchError, parse_jwks, select_key
from apishield.identity.jwt import parse_jws
from apishield.store.records import ClientRecord

if TYPE_CHECKING:
    from apishield.authserver.http import Params, Request
    from apishield.store.engine import Store

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
MAX_SECRET = 512  # longer is not one of ours; refused before any hashing
MAX_ASSERTION = 8 * 1024
MAX_ASSERTION_LIFETIME = 600.0  # seconds between now and an assertion's exp
ASSERTION_ALGORITHMS = sorted(ASYMMETRIC_ALGORITHMS)

Method = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


@dataclass(frozen=True, slots=True)
class PresentedClient:
    """The client credentials a request carries (not yet checked)."""

    method: Method
    client_id: str
    secret: str | None = field(default=None, repr=False)
    assertion: str | None = field(default=None, repr=False)

    @property
    def credential(self) -> str | None:
        """What to fingerprint in a log line."""
        return self.secret or self.assertion


def _basic(value: bytes) -> tuple[str, str]:
    scheme, _, rest = value.partition(b" ")
    if scheme.lower() != b"basic":
        raise invalid_client("authorization_scheme", "use HTTP Basic or the body, not another")
    try:
        decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid_client("basic_malformed", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise invalid_client("basic_malformed", "malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
    return unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")


def parse_client_credentials(request: Request, params: Params) -> PresentedClient:
    """Which method the request uses, and its values; ``invalid_request`` for two methods or
    contradicting ids, ``invalid_client`` for none at all. Pure."""
    authorizations = request.header_values(b"authorization")
    body_id = params.get("client_id")
    secret = params.get("client_secret")
    assertion = params.get("client_assertion")
    assertion_type = params.get("client_assertion_type")
    if len(authorizations) > 1:
        raise invalid_request("authorization_repeated", "send Authorization once")
    used = sum(x is not None for x in (secret, assertion)) + bool(authorizations)
    if used > 1:
        raise invalid_request("several_client_methods", "use one client authentication method")
    if authorizations:
        try:
            client_id, basic_secret = _basic(authorizations[0])
        except UnicodeDecodeError:
            raise invalid_client("basic_malformed", "malformed Basic credentials") from None
        if body_id is not None and body_id != client_id:
            raise invalid_request("client_id_mismatch", "client_id differs from Basic")
        return PresentedClient("client_secret_basic", client_id, secret=basic_secret)
    if assertion is not None or assertion_type is not None:
        if assertion_type != JWT_BEARER or assertion is None:
            raise invalid_request(
                "assertion_type", f"client_assertion_type must be {JWT_BEARER} with an assertion"
            )
        parsed = parse_jws(assertion) if len(assertion) <= MAX_ASSERTION else None
        subject = parsed.claims.get("sub") if parsed is not None else None
        if not isinstance(subject, str) or not subject:
            raise invalid_client("assertion_malformed", "the client assertion is not a JWT")
        if body_id is not None and body_id != subject:
            raise invalid_request("client_id_mismatch", "client_id differs from the assertion")
        return PresentedClient("private_key_jwt", subject, assertion=assertion)
    if body_id is None:
        raise invalid_client("no_client_credentials", "the client did not authenticate")
    if secret is not None:
        return PresentedClient("client_secret_post", body_id, secret=secret)
    return PresentedClient("none", body_id)


class ClientAuthenticator:
    """Checks presented client credentials against the store."""

    def __init__(
        self,
        store: Store,
        *,
        issuer: str,
        leeway: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.leeway = leeway
        self._clock = clock  # unix seconds; default: the store's clock
        self._registry = JWSRegistry(algorithms=ASSERTION_ALGORITHMS, strict_check_header=False)

    def _now(self) -> float:
        return float(self._clock()) if self._clock is not None else self.store.now().timestamp()

    async def authenticate(
        self,
        presented: PresentedClient,
        *,
        endpoint: str,
        allow_public: bool = True,
    ) -> ClientRecord:
        """The authenticated, enabled client; ``invalid_client`` otherwise. ``endpoint`` is the
        URL being called (an accepted assertion audience besides the issuer)."""
        if presented.method in ("client_secret_basic", "client_secret_post"):
            secret = presented.secret or ""
            if len(secret) > MAX_SECRET or len(presented.client_id) > 64:
                raise invalid_client("secret_malformed")
            client = await self.store.clients.authenticate(presented.client_id, secret)
            if client is None:
                raise invalid_client("secret_mismatch")
            if not client.token_endpoint_auth_method.startswith("client_secret"):
                raise invalid_client("method_not_registered")
            return client
        client = await self.store.clients.get(presented.client_id)
        if client is None or client.disabled:
            raise invalid_client("client_unknown")
        if presented.method == "none":
            if not allow_public or client.token_endpoint_auth_method != "none":  # noqa: S105
                raise invalid_client("method_not_registered")
            return client
        if client.token_endpoint_auth_method != "private_key_jwt":  # noqa: S105 - a method
            raise invalid_client("method_not_registered")
        await self._check_assertion(client, presented.assertion or "", endpoint)
        return client

    async def _check_assertion(self, client: ClientRecord, assertion: str, endpoint: str) -> None:
        """RFC 7523 §3: signature by a registered key, iss/sub/aud/exp/jti, no replay."""
        parsed = parse_jws(assertion)
        if parsed is None:
            raise invalid_client("assertion_malformed")
        header = parsed.header
        alg = header["alg"]
        if alg not in ASYMMETRIC_ALGORITHMS or "crit" in header or "b64" in header:
            raise invalid_client("assertion_algorithm")
        try:
            keys = parse_jwks(client.jwks or {})
        except FetchError:
            raise invalid_client("client_jwks_unusable") from None
        kid = header.get("kid")
        key = select_key(keys, kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise invalid_client("assertion_key_unknown")
        quiet: contextlib.AbstractContextManager[object] = (
            warnings.catch_warnings(action="ignore", category=SecurityWarning)
            if alg == "EdDSA"
            else contextlib.nullcontext()
        )
        try:
            with quiet:
                claims = jose_jwt.decode(
                    assertion, key, algorithms=[alg], registry=self._registry
                ).claims
        except (JoseError, ValueError, TypeError):
            raise invalid_client("assertion_signature") from None
        self._check_claims(client.id, claims, audiences={self.issuer, endpoint})
        expires = datetime.fromtimestamp(float(claims["exp"]), UTC)
        if not await remember_assertion(
            self.store, client_id=client.id, jti=str(claims["jti"]), expires_at=expires
        ):
            raise invalid_client("assertion_replayed")

    def _check_claims(
        self, client_id: str, claims: dict[str, Any], audiences: Collection[str]
    ) -> None:
        now = self._now()
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise invalid_client("assertion_subject")
        aud = claims.get("aud")
        named = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and a in audiences for a in named):
            raise invalid_client("assertion_audience")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise invalid_client("assertion_exp")
        if exp <= now - self.leeway or exp - now > MAX_ASSERTION_LIFETIME + self.leeway:
            raise invalid_client("assertion_exp")
        for moment in (iat, nbf):
            if moment is not None and (
                not isinstance(moment, int | float) or moment > now + self.leeway
            ):
                raise invalid_client("assertion_not_yet_valid")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise invalid_client("assertion_jti")


async def authenticated_token_request(
    request: Request,
    clients: ClientAuthenticator,
    *,
    endpoint: str,
    allow_public: bool = True,
) -> tuple[ClientRecord, str, str | None]:
    """The calling client, ``token`` and ``token_type_hint`` of a revocation (RFC 7009 §2.1)
    or introspection (RFC 7662 §2.1) request; the token's fingerprint goes to the request log.
    """
    from apishield.authserver.errors import invalid_request, oauth_form
    from apishield.identity.verifier import fingerprint

    params = oauth_form(request)
    presented = parse_client_credentials(request, params)
    request.log["client"] = presented.client_id
    client = await clients.authenticate(presented, endpoint=endpoint, allow_public=allow_public)
    token = params.get("token")
    if token is None:
        raise invalid_request("token_missing", "token is required")
    request.log["credential"] = fingerprint(token)
    return client, token, params.get("token_type_hint")
