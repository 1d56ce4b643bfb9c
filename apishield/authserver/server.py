"""``AuthorizationServer``: the built-in OAuth 2.0 server as one pure ASGI application.

A small dispatcher maps each path and method to an endpoint; endpoints take a ``Request`` and
return a ``Response`` (``http.py``). Refusals are answered in the shape their caller reads
(``errors.py``): RFC 6749 JSON for OAuth clients, HTML pages for browsers. Anything else the
endpoints raise (a 503 from the store, a 413) goes to the gateway's errors stage as
problem+json when the server runs inside the pipeline, and is rendered here when it runs alone.

How it is put inside the gateway: ``mounting.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from apishield.authserver.authorize import AuthorizeEndpoint
from apishield.authserver.clientauth import ClientAuthenticator
from apishield.authserver.config import (
    AUTHORIZE_PATH,
    INTROSPECT_PATH,
    JWKS_PATH,
    LOGIN_PATH,
    METADATA_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    ServerConfig,
)
from apishield.authserver.csrf import LoginTokens, login_key
from apishield.authserver.errors import OAuthError, PageError
from apishield.authserver.grants import TokenEndpoint
from apishield.authserver.http import Request, Response, json_response, read_body
from apishield.authserver.introspection import IntrospectionEndpoint
from apishield.authserver.metadata import jwks_response, metadata_response
from apishield.authserver.pages import error_page
from apishield.authserver.revocation import RevocationEndpoint
from apishield.authserver.signing import Signer, jwks_document
from apishield.authserver.tokens import TokenIssuer
from apishield.authserver.verification import StoreKeys
from apishield.errors import HTTPError, MethodNotAllowedError, NotFoundError
from apishield.pipeline.context import SCOPE_KEY, RequestContext
from apishield.pipeline.problem import render_problem
from apishield.ratelimit.limiter import Limiter
from apishield.ratelimit.memory import MemoryStorage
from apishield.ratelimit.settings import LimitSettings
from apishield.types import Receive, Scope, Send

if TYPE_CHECKING:
    from apishield.identity.secretkey import SecretKeys
    from apishield.store.engine import Store
    from apishield.store.revocations import RevocationList

logger = logging.getLogger("apishield.authserver")

Handler = Callable[[Request], Awaitable[Response]]


class AuthorizationServer:
    """The built-in authorization server (AUTH 13–28).

    ``store`` and ``secret_keys`` belong to the caller. ``limiter`` throttles the login form
    per user name and per address (the gateway passes its own, so the counters are shared
    across instances over Redis); without one, an in-process limiter is used.
    ``revocations``: the gateway's revocation list, told at once about tokens revoked here.
    """

    def __init__(
        self,
        store: Store,
        secret_keys: SecretKeys,
        config: ServerConfig,
        *,
        limiter: Limiter | None = None,
        revocations: RevocationList | None = None,
        keys: StoreKeys | None = None,
    ) -> None:
        self.store = store
        self.config = config
        pepper = secret_keys.refresh_token_pepper
        self.keys = keys if keys is not None else StoreKeys(store)
        self.signer = Signer(
            store,
            secret_keys,
            retire_delay=timedelta(seconds=config.access_token_ttl + config.leeway),
        )
        clients = ClientAuthenticator(store, issuer=config.issuer, leeway=config.leeway)
        self._owns_limiter = limiter is None
        if limiter is None:
            limiter = Limiter(LimitSettings(rules=[], auth_endpoints=False), MemoryStorage())
        self.limiter = limiter
        self.token = TokenEndpoint(
            store,
            config,
            clients=clients,
            issuer=TokenIssuer(store, self.signer, config),
            pepper=pepper,
        )
        self.authorize = AuthorizeEndpoint(
            store, config, tokens=LoginTokens(login_key(pepper)), pepper=pepper, limiter=limiter
        )
        self.revoke = RevocationEndpoint(
            store,
            config,
            clients=clients,
            keys=self.keys,
            pepper=pepper,
            revocations=revocations,
        )
        self.introspect = IntrospectionEndpoint(
            store, config, clients=clients, keys=self.keys, pepper=pepper
        )
        self.routes: dict[str, dict[str, Handler]] = {
            METADATA_PATH: {"GET": self._metadata},
            JWKS_PATH: {"GET": self._jwks},
            AUTHORIZE_PATH: {"GET": self.authorize.authorize},
            LOGIN_PATH: {"GET": self.authorize.login_form, "POST": self.authorize.login},
            TOKEN_PATH: {"POST": self.token.handle},
            REVOKE_PATH: {"POST": self.revoke.handle},
            INTROSPECT_PATH: {"POST": self.introspect.handle},
        }

    async def _metadata(self, request: Request) -> Response:
        return metadata_response(self.config)

    async def _jwks(self, request: Request) -> Response:
        return jwks_response(await jwks_document(self.store))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        ctx: RequestContext | None = scope.get(SCOPE_KEY)
        try:
            response = await self._dispatch(scope, receive, ctx)
        except HTTPError as exc:
            if ctx is not None:
                raise  # the gateway's errors stage answers with problem+json
            status, headers, body = render_problem(exc, "-")
            response = Response(status, headers, body, code=exc.code)
        if ctx is not None and response.code is not None:
            ctx.code = response.code
        headers = [h for h in response.headers if h[0] != b"content-length"]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body = b"" if scope.get("method") == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _dispatch(
        self, scope: Scope, receive: Receive, ctx: RequestContext | None
    ) -> Response:
        path: str = scope["path"]
        methods = self.routes.get(path)
        if methods is None:
            raise NotFoundError()
        method: str = scope["method"]
        # HEAD is GET without a body (RFC 9110 §9.3.2); the body is dropped when sent.
        handler = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            allowed = sorted({*methods, *(["HEAD"] if "GET" in methods else [])})
            raise MethodNotAllowedError(headers={"Allow": ", ".join(allowed)})
        client = scope.get("client")
        request = Request(
            method=method,
            path=path,
            query=scope.get("query_string", b""),
            headers=list(scope.get("headers", ())),
            body=await read_body(receive, self.config.max_body) if method == "POST" else b"",
            client_ip=ctx.client_ip if ctx is not None else (client[0] if client else ""),
            request_id=ctx.request_id if ctx is not None else "-",
        )
        try:
            response = await handler(request)
        except OAuthError as exc:
            self._log_refusal(request, exc.code, exc.reason)
            response = json_response(
                exc.status,
                exc.document(development=self.config.development),
                headers=[(k.lower().encode("latin-1"), v.encode()) for k, v in exc.headers.items()],
            )
            response.code = exc.code
            return response
        except PageError as exc:
            self._log_refusal(request, exc.code, exc.reason)
            return error_page(exc.message, status=exc.status, code=exc.code)
        if response.code is not None and response.code != "login_failed":  # logged already
            self._log_refusal(request, response.code, request.log.get("reason", response.code))
        return response

    def _log_refusal(self, request: Request, code: str, reason: str) -> None:
        details = " ".join(f"{k}={v}" for k, v in sorted(request.log.items()) if k != "reason")
        logger.info(
            "oauth refused endpoint=%s error=%s reason=%s %s ip=%s request_id=%s",
            request.path,
            code,
            reason,
            details or "-",
            request.client_ip or "-",
            request.request_id,
        )

    async def aclose(self) -> None:
        """Release what the server holds: the limiter it made itself (not one it was given)."""
        if self._owns_limiter:
            await self.limiter.storage.aclose()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
