"""Stage 7 — authentication: who is calling, proved by an API key or a bearer token.

- Credentials in the URL are refused (400 ``credentials_in_query``, AUTH 37): a query string
  ends up in access logs, browser history and ``Referer`` headers. Parameters named like a
  credential are refused, and so is any checksum-valid API key anywhere in the URL (AUTH 32).
- An API key is read from the one configured header only (AUTH 32); a bearer token from
  ``Authorization: Bearer`` only (RFC 6750 §2.1). Both at once, two of either, another scheme
  or a malformed header → 401 ``error="invalid_request"``; a token over 8 KiB is refused before
  any decoding (AUTH 8). A failed verification → 401 ``error="invalid_token"`` (AUTH 11).
- A bearer token's ``aud`` must contain the matched route's ``resource`` identifier when
  the route sets one, else the issuer's audience (AUTH 6); API keys have no audience.
- No credential leaves ``ctx.principal`` as None: the access stage lets public routes through
  and answers 401 elsewhere.
- Client-sent ``X-Authenticated-*`` headers are always removed, and after a success the
  verified identity is set in them for the upstream (AUTH 36). The API key header is consumed
  here and not forwarded; ``Authorization`` is, since an upstream may relay the token.

Each refusal is logged once, with its code, a reason and the credential's fingerprint (first
8 hex digits of SHA-256), never the credential (AUTH 38).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, unquote_plus

from apishield.errors import HTTPError
from apishield.identity.apikeys import find_api_keys
from apishield.identity.principal import Principal
from apishield.identity.verifier import ApiKeyVerifier, BearerVerifier, fingerprint
from apishield.pipeline.context import RequestContext, get_context
from apishield.types import ASGIApp, Headers, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from apishield.identity.secretkey import SecretKeys
    from apishield.policy.models import Policy
    from apishield.store.engine import Store

logger = logging.getLogger("apishield.authentication")

MAX_TOKEN_BYTES = 8 * 1024
CREDENTIAL_PARAMETERS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "key",
        "token",
        "id_token",
        "refresh_token",
        "client_secret",
        "code_verifier",
        "password",
    }
)
IDENTITY_PREFIX = b"x-authenticated-"
_B64TOKEN = re.compile(rb"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 §2.1
# Kept readable in forwarded headers; everything else is percent-encoded (RFC 3986 §2.1), so
# a subject can never smuggle a CR, LF or a second header to the upstream.
_SAFE = "-._~!$&'()*+,;=:@/|"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented, and its headers without ours and without forged identity."""

    headers: Headers
    api_key: str | None = None
    bearer: str | None = None


def _parameter_name(raw: bytes) -> str:
    name = unquote_plus(raw.decode("latin-1"), errors="replace")
    return name.strip().lower().replace("-", "_")


def find_query_credential(
    query_string: bytes, names: Iterable[str] = CREDENTIAL_PARAMETERS
) -> str | None:
    """The first query parameter named like a credential (case and ``-``/``_`` ignored)."""
    wanted = frozenset(names)
    for pair in query_string.split(b"&"):
        name = _parameter_name(pair.partition(b"=")[0])
        if name in wanted:
            return name
    return None


def parse_authorization(value: bytes) -> tuple[str, bytes]:
    """``Bearer abc`` → (``bearer``, ``abc``); ``invalid_request`` refusals otherwise."""
    scheme, sep, rest = value.partition(b" ")
    token = rest.lstrip(b" ")
    if not sep or not scheme or not token:
        raise _invalid_request(code="authorization_malformed", reason="malformed")
    return scheme.decode("latin-1").lower(), token


def extract_credentials(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    api_key_header: bytes | None,
    read_authorization: bool,
) -> Credentials:
    """Pick the credentials out of ``headers`` and drop client-sent identity headers. Raises
    ``invalid_request`` refusals for repeated or malformed credentials (pure, no I/O)."""
    kept: Headers = []
    api_keys: list[bytes] = []
    authorizations: list[bytes] = []
    for name, value in headers:
        if name.startswith(IDENTITY_PREFIX):
            continue  # forged identity: only this stage sets these (AUTH 36)
        if api_key_header is not None and name == api_key_header:
            api_keys.append(value)
            continue
        if read_authorization and name == b"authorization":
            authorizations.append(value)
        kept.append((name, value))
    if len(api_keys) > 1 or len(authorizations) > 1:
        raise _invalid_request(code="credentials_ambiguous", reason="repeated")
    bearer: str | None = None
    if authorizations:
        value = authorizations[0].strip()
        if len(value) > MAX_TOKEN_BYTES:
            raise _invalid_token(code="token_too_large", reason="too_large")
        scheme, token = parse_authorization(value)
        if scheme != "bearer":
            raise _invalid_request(code="authorization_scheme_unsupported", reason="scheme")
        if not _B64TOKEN.match(token):
            raise _invalid_request(code="authorization_malformed", reason="syntax")
        bearer = token.decode("ascii")
    api_key: str | None = None
    if api_keys:
        raw = api_keys[0].strip()
        if not raw:
            raise _invalid_request(code="authorization_malformed", reason="empty_api_key")
        api_key = raw.decode("latin-1")
    if bearer is not None and api_key is not None:
        raise _invalid_request(code="credentials_ambiguous", reason="two_credentials")
    return Credentials(kept, api_key=api_key, bearer=bearer)


def identity_headers(principal: Principal) -> Headers:
    """The ``X-Authenticated-*`` headers the upstream reads (values percent-encoded UTF-8)."""

    def enc(value: str) -> bytes:
        return quote(value, safe=_SAFE).encode("ascii")

    headers: Headers = [
        (b"x-authenticated-issuer", enc(principal.issuer)),
        (b"x-authenticated-subject", enc(principal.subject)),
    ]
    if principal.client_id is not None:
        headers.append((b"x-authenticated-client", enc(principal.client_id)))
    headers.append((b"x-authenticated-scopes", b" ".join(enc(s) for s in sorted(principal.scopes))))
    headers.append((b"x-authenticated-roles", b" ".join(enc(r) for r in sorted(principal.roles))))
    return headers


class _Refusal(HTTPError):
    """A refusal of this stage, with a reason for the log."""

    def __init__(self, *, code: str, reason: str, status: int, challenge: str | None) -> None:
        super().__init__(
            code=code,
            status=status,
            hint=_HINTS.get(code),
            headers={"WWW-Authenticate": challenge} if challenge else None,
        )
        self.reason = reason


def _invalid_request(*, code: str, reason: str) -> _Refusal:
    # RFC 6750 §3.1 suggests 400 for invalid_request; a 401 keeps every credential problem
    # on one status so clients re-authenticate, and the challenge still names the error.
    return _Refusal(
        code=code,
        reason=reason,
        status=401,
        challenge='Bearer realm="apishield", error="invalid_request"',
    )


def _invalid_token(*, code: str, reason: str) -> _Refusal:
    return _Refusal(
        code=code,
        reason=reason,
        status=401,
        challenge='Bearer realm="apishield", error="invalid_token"',
    )


_HINTS = {
    "credentials_in_query": "send credentials in a header, never in the URL",
    "authorization_malformed": "use 'Authorization: Bearer <token>' exactly once",
    "authorization_scheme_unsupported": "only the Bearer scheme is accepted",
    "credentials_ambiguous": "send one credential: an API key or a bearer token, once",
    "token_too_large": f"bearer tokens are limited to {MAX_TOKEN_BYTES} bytes",
}


class AuthenticationMiddleware:
    """Verifies the request's API key or bearer token and sets ``ctx.principal``.

    ``api_keys``/``bearer`` None: that kind of credential is not the gateway's business, and
    its header is left for the upstream. ``api_key_prefix`` lets the URL check recognise keys
    by their checksum wherever they appear.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: ApiKeyVerifier | None,
        api_key_header: str = "X-API-Key",
        bearer: BearerVerifier | None,
        api_key_prefix: str | None = None,
        query_parameters: Iterable[str] = CREDENTIAL_PARAMETERS,
        owned: Sequence[object] = (),
        client_auth_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        # On these paths `Authorization` authenticates an OAuth client (RFC 6749 §2.3.1,
        # HTTP Basic) to the built-in server, which checks it itself: not a bearer token.
        self.client_auth_paths = frozenset(client_auth_paths)
        self.api_keys = api_keys
        self.bearer = bearer
        self.api_key_prefix = api_key_prefix
        self.api_key_header = api_key_header.lower().encode("latin-1") if api_keys else None
        # the header's own name as a parameter (?x-api-key=…) is a credential in the URL too
        names = {*query_parameters, api_key_header.lower().replace("-", "_")}
        self.query_parameters = frozenset(names)
        self._owned = list(owned)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self._owned:
            await self.app(scope, receive, self._closing_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        credential: str | None = None
        try:
            self._refuse_url_credentials(scope)
            found = extract_credentials(
                scope["headers"],
                api_key_header=self.api_key_header,
                read_authorization=self.bearer is not None
                and scope.get("path") not in self.client_auth_paths,
            )
            principal: Principal | None = None
            if found.bearer is not None and self.bearer is not None:
                credential = found.bearer
                # Routing (stage 5) ran first: the matched route names the resource the
                # token's audience must contain (AUTH 6).
                match = ctx.route
                principal = await self.bearer.verify_bearer(
                    found.bearer, resource=match.route.resource if match is not None else None
                )
            elif found.api_key is not None and self.api_keys is not None:
                credential = found.api_key
                principal = await self.api_keys.verify_api_key(
                    found.api_key, client_ip=ctx.client_ip
                )
        except HTTPError as exc:
            if exc.status == 401 and "WWW-Authenticate" not in exc.headers:
                exc.headers["WWW-Authenticate"] = 'Bearer realm="apishield", error="invalid_token"'
            self._log_refusal(ctx, exc, credential)
            raise
        ctx.principal = principal
        headers = found.headers
        if principal is not None:
            verified = identity_headers(principal)
            headers = [*headers, *verified]
            # The upstream proxy strips every x-authenticated-* header it finds and sends only
            # these: a wrapped ASGI app reads them from the scope, the proxy from here.
            ctx.extra["identity_headers"] = verified
        await self.app({**scope, "headers": headers}, receive, send)

    def _refuse_url_credentials(self, scope: Scope) -> None:
        query: bytes = scope.get("query_string", b"")
        if query:
            name = find_query_credential(query, self.query_parameters)
            if name is not None:
                raise _Refusal(
                    code="credentials_in_query",
                    reason=f"parameter:{name}",
                    status=400,
                    challenge=None,
                )
        prefix = self.api_key_prefix
        if prefix is not None:
            url = str(scope.get("path", "")) + "?" + unquote(query.decode("latin-1"))
            if prefix in url and find_api_keys(url, prefix):
                raise _Refusal(
                    code="credentials_in_query", reason="api_key_in_url", status=400, challenge=None
                )

    def _log_refusal(self, ctx: RequestContext, exc: HTTPError, credential: str | None) -> None:
        logger.info(
            "authentication refused code=%s reason=%s credential=%s client=%s request_id=%s",
            exc.code,
            getattr(exc, "reason", exc.code),
            fingerprint(credential) if credential else "-",
            ctx.client_ip or "-",
            ctx.request_id,
        )

    def _closing_send(self, send: Send) -> Send:
        """Close the stage's resources when the server's lifespan shuts the app down."""

        async def closing_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return closing_send

    async def aclose(self) -> None:
        """Close what this stage owns (the store it opened, the bearer verifier); idempotent."""
        owned, self._owned = self._owned, []
        for resource in owned:
            close = getattr(resource, "aclose", None)
            if close is not None:
                await close()


def build_authentication_stage(
    app: ASGIApp,
    policy: Policy,
    *,
    store: Store | None = None,
    secret_keys: SecretKeys | None = None,
    bearer: BearerVerifier | None = None,
    client_auth_paths: Iterable[str] = (),
) -> AuthenticationMiddleware:
    """The authentication stage for ``policy``: an API-key verifier when ``identity.api_keys``
    is set (opening the policy's store and secret key unless given), and ``bearer``.

    The stage owns ``bearer`` and the store it opened itself (not a ``store`` given to it):
    ``aclose()`` closes them, and so does the ASGI lifespan shutdown passing through it."""
    from apishield.identity.apikeys import StoreApiKeyVerifier
    from apishield.identity.secretkey import load_secret_keys
    from apishield.store.engine import Store

    identity = policy.identity
    settings = identity.api_keys if identity is not None else None
    owned: list[object] = [bearer] if bearer is not None else []
    api_keys: ApiKeyVerifier | None = None
    if settings is not None:
        if store is None:
            store = Store.from_policy(policy)
            owned.append(store)
        keys = secret_keys or load_secret_keys(policy.state)
        api_keys = StoreApiKeyVerifier(
            store,
            pepper=keys.api_key_pepper,
            prefix=settings.prefix,
            cache_size=identity.token_cache_size if identity is not None else 10_000,
        )
    return AuthenticationMiddleware(
        app,
        api_keys=api_keys,
        api_key_header=settings.header if settings is not None else "X-API-Key",
        bearer=bearer,
        api_key_prefix=settings.prefix if settings is not None else None,
        owned=owned,
        client_auth_paths=client_auth_paths,
    )
