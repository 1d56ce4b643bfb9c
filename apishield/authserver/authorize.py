"""The authorization endpoint and its login page (RFC 6749 §4.1.1–4.1.2; AUTH 15, 16, 22).

``GET /oauth2/authorize`` checks the request in the order RFC 6749 §4.1.2.1 implies: first
the client and the redirect URI (matched exactly, loopback ports aside, AUTH 15). If either is
wrong, the user sees an error page and is never redirected: the URI is not known to belong
to the client. Every later problem (``response_type``, PKCE ``S256`` missing, scope, resource)
is sent back to the checked redirect URI with ``error``, ``state`` and ``iss`` (RFC 9207).
A valid request gets the login form.

``POST /oauth2/login`` (form-urlencoded, CSRF token bound to a ``__Host-`` cookie, see
``csrf.py``) signs the user in, throttled per user name and per address; unknown user and
wrong password get the same message after the same Argon2id work (the store verifies a dummy
hash for unknown users). Every outcome is a 303 (RFC 9110 §15.4.4): to the form again after a
failure, to the client with a code after a success. The code holds 256 random bits, lives at
most 60 s, is bound to client, user, redirect URI, PKCE challenge, scope and resource, and is
stored only as a keyed digest (AUTH 16).

Consent is implied for now: clients are registered by the gateway's operator, so signing in
to one is consenting to it. A consent screen is needed before third-party clients are allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from apishield.authserver.config import LOGIN_PATH, ServerConfig
from apishield.authserver.csrf import (
    COOKIE,
    LoginTokens,
    LoginTransaction,
    cookie_header,
    new_cookie,
)
from apishield.authserver.errors import (
    OAuthError,
    PageError,
    invalid_request,
    redirect_mismatch_page,
    unknown_client_page,
)
from apishield.authserver.http import Params, Request, Response, redirect
from apishield.authserver.pages import MESSAGES, login_page
from apishield.authserver.pkce import valid_challenge
from apishield.authserver.redirects import match_redirect_uri
from apishield.authserver.scopes import grant_resource, grant_scope
from apishield.authserver.tokens import digest, new_secret_token
from apishield.identity.verifier import fingerprint
from apishield.store.records import ClientRecord

if TYPE_CHECKING:
    from apishield.ratelimit.limiter import Limiter
    from apishield.store.engine import Store

logger = logging.getLogger("apishield.authserver")

MAX_STATE = 1024
MAX_USERNAME = 200
MAX_PASSWORD = 1024


def _with_query(uri: str, values: dict[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(values)


class AuthorizeEndpoint:
    """``GET /oauth2/authorize``, ``GET`` and ``POST /oauth2/login``."""

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        *,
        tokens: LoginTokens,
        pepper: bytes,
        limiter: Limiter,
    ) -> None:
        self.store = store
        self.config = config
        self.tokens = tokens
        self.pepper = pepper
        self.limiter = limiter

    # -- the authorization request ---------------------------------------------------------

    async def _client_and_redirect(self, params: Params) -> tuple[ClientRecord, str]:
        """Steps that must hold before anything may be redirected (RFC 6749 §4.1.2.1)."""
        client_id = params.get("client_id")
        client = await self.store.clients.get(client_id) if client_id else None
        if client is None or client.disabled:
            raise unknown_client_page("client_unknown")
        if "authorization_code" not in client.grant_types:
            raise unknown_client_page("grant_not_registered")
        requested = params.get("redirect_uri")
        if requested is None:
            raise redirect_mismatch_page("redirect_uri_missing")
        matched = match_redirect_uri(requested, client.redirect_uris)
        if matched is None:
            raise redirect_mismatch_page("redirect_uri_not_registered")
        return client, matched

    def _check_request(
        self, client: ClientRecord, params: Params
    ) -> tuple[tuple[str, ...], tuple[str, ...], str]:
        """Scope, resource and challenge of a request whose client and redirect are known
        good; ``OAuthError`` to send back to the client otherwise. Pure."""
        if params.get("response_type") != "code":
            raise OAuthError(
                code="unsupported_response_type",
                reason="response_type",
                hint="only response_type=code is supported (no implicit grant)",
            )
        for name in ("request", "request_uri"):
            if name in params:
                raise invalid_request("request_object", "request objects are not supported")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is None:
            raise invalid_request("pkce_challenge_missing", "PKCE is required: code_challenge")
        if not valid_challenge(challenge, method):
            raise invalid_request(
                "pkce_method", "code_challenge_method must be S256 (plain is refused)"
            )
        state = params.get("state")
        if state is not None and len(state) > MAX_STATE:
            raise invalid_request("state_too_long", f"state is limited to {MAX_STATE} characters")
        scope = grant_scope(params.get("scope"), client.scopes)
        resource = grant_resource(params.all("resource"), client.resources)
        assert challenge is not None  # noqa: S101 - checked by valid_challenge
        return scope, resource, challenge

    def _error_redirect(self, redirect_uri: str, error: OAuthError, state: str | None) -> Response:
        values = {"error": error.code}
        if state is not None:
            values["state"] = state
        values["iss"] = self.config.issuer  # RFC 9207 §2
        return redirect(_with_query(redirect_uri, values), code=error.code)

    async def authorize(self, request: Request) -> Response:
        """``GET /oauth2/authorize``: the login form, an error redirect, or an error page."""
        try:
            params = request.query_params()
        except ValueError:
            raise PageError(
                code="invalid_request",
                reason="query_malformed",
                message="The sign-in link is malformed (a parameter is repeated or invalid).",
            ) from None
        client, redirect_uri = await self._client_and_redirect(params)
        request.log["client"] = client.id
        try:
            scope, resource, challenge = self._check_request(client, params)
        except OAuthError as exc:
            request.log["reason"] = exc.reason
            state = params.get("state")
            if state is not None and len(state) > MAX_STATE:
                state = None  # not echoed: the redirect would carry whatever was sent
            return self._error_redirect(redirect_uri, exc, state)
        transaction = LoginTransaction(
            client_id=client.id,
            redirect_uri=redirect_uri,
            scope=scope,
            resource=resource,
            code_challenge=challenge,
            state=params.get("state"),
            expires=int(self.store.now().timestamp() + self.config.login_ttl),
        )
        cookie = new_cookie()
        return login_page(
            action=LOGIN_PATH,
            transaction_token=self.tokens.seal(transaction, cookie),
            client_name=client.name,
            scope=scope,
            redirect_uri=redirect_uri,
            extra_headers=[
                (b"set-cookie", cookie_header(cookie, max_age=int(self.config.login_ttl)))
            ],
        )

    # -- the login form ----------------------------------------------------------------------

    def _open(self, request: Request, token: str | None) -> LoginTransaction:
        return self.tokens.open(token, request.cookie(COOKIE), now=self.store.now().timestamp())

    async def _client_for(self, transaction: LoginTransaction) -> ClientRecord:
        """The transaction's client, checked again: it may have changed since the form."""
        client = await self.store.clients.get(transaction.client_id)
        if client is None or client.disabled or "authorization_code" not in client.grant_types:
            raise unknown_client_page("client_gone")
        if match_redirect_uri(transaction.redirect_uri, client.redirect_uris) is None:
            raise redirect_mismatch_page("redirect_uri_gone")
        return client

    async def login_form(self, request: Request) -> Response:
        """``GET /oauth2/login?txn=…&e=…``: the form again, after a failed attempt."""
        try:
            params = request.query_params()
        except ValueError:
            params = Params()
        transaction = self._open(request, params.get("txn"))
        client = await self._client_for(transaction)
        return login_page(
            action=LOGIN_PATH,
            transaction_token=params.get("txn") or "",
            client_name=client.name,
            scope=transaction.scope,
            redirect_uri=transaction.redirect_uri,
            message=MESSAGES.get(params.get("e") or ""),
        )

    async def _throttled(self, request: Request, username: str) -> bool:
        """AUTH 22: attempts per address and per user name, counted whatever the outcome."""
        checks: Sequence[tuple[str, str]] = (
            ("login-ip", request.client_ip or "unknown"),
            ("login-user", username.casefold()),
        )
        for name, subject in checks:
            rate = self.config.login_ip_rate if name == "login-ip" else self.config.login_user_rate
            verdict = await self.limiter.throttle(name, subject, rate)
            if not verdict.allowed:
                return True
        return False

    async def login(self, request: Request) -> Response:
        """``POST /oauth2/login``: sign in, then 303 to the client with a code."""
        try:
            form = request.form()
        except ValueError:
            form = Params()
        site = request.header(b"sec-fetch-site")
        if site is not None and site != b"same-origin":
            raise PageError(
                code="csrf_invalid",
                reason="cross_site_post",
                message="This sign-in form was not sent by this site.",
            )
        token = form.get("txn")
        transaction = self._open(request, token)
        client = await self._client_for(transaction)
        request.log["client"] = client.id
        username = (form.get("username") or "")[:MAX_USERNAME]
        password = form.get("password") or ""
        request.log["user"] = fingerprint(username.casefold())
        again = f"{LOGIN_PATH}?{urlencode({'txn': token or ''})}"
        if await self._throttled(request, username):
            return redirect(f"{again}&e=throttled", code="rate_limited")
        user = None
        if username and password and len(password) <= MAX_PASSWORD:
            user = await self.store.users.authenticate(username, password)
        else:
            await self.store.users.authenticate("", "x")  # the same Argon2id work (AUTH 22)
        if user is None:
            logger.info(
                "login failed user=%s client=%s ip=%s request_id=%s",
                request.log["user"],
                client.id,
                request.client_ip or "-",
                request.request_id,
            )
            return redirect(f"{again}&e=failed", code="login_failed")
        code = new_secret_token()
        await self.store.codes.create(
            code_hash=digest(self.pepper, code),
            client_id=client.id,
            user_id=user.id,
            redirect_uri=transaction.redirect_uri,
            code_challenge=transaction.code_challenge,
            scope=transaction.scope,
            resource=transaction.resource,
            expires_at=self.store.now() + timedelta(seconds=self.config.code_ttl),
        )
        values = {"code": code}
        if transaction.state is not None:
            values["state"] = transaction.state
        values["iss"] = self.config.issuer
        logger.info(
            "login succeeded user=%s client=%s request_id=%s",
            user.id,
            client.id,
            request.request_id,
        )
        return redirect(_with_query(transaction.redirect_uri, values)).with_headers(
            [(b"set-cookie", cookie_header("", max_age=0))]
        )
