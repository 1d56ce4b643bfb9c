"""Putting the authorization server inside the gateway.

``mount_authserver`` sends the server's paths to it and everything else to the app it wraps;
it goes innermost (in place of the upstream), so every stage in front of it — errors, audit,
transport, CORS, routing, content, rate limits — applies to the server's endpoints too.

The policy must then know those endpoints (``with_authserver``, or the pieces
``authserver_routes`` and ``authserver_exclusions``):

- routes, all ``allow: public`` (the endpoints authenticate their callers themselves: client
  credentials, or a user's password), with form bodies where a body is posted;
- inspection exclusions for the fields that carry secrets — passwords, client secrets and
  assertions, codes, verifiers, tokens. They are opaque values the server never interprets,
  so the injection detectors can only refuse a user whose password contains ``' OR`` or
  ``<``; every other field of these routes is still inspected;
- CORS per route (``authserver_cors``). Browser apps (single-page apps with PKCE, public
  clients) call the token and revocation endpoints, the metadata and the JWK Set with
  ``fetch()`` from their own origin: those answer the exact origins of the policy's
  ``cors.origins`` (never ``*``), and never with ``Access-Control-Allow-Credentials``, since
  tokens travel in bodies and the server sets no cookie a cross-origin call could use.
  Preflights may ask for ``Authorization`` (client authentication, RFC 6749 §2.3.1) and
  ``Content-Type``. The authorization endpoint and the login page are navigations, and
  introspection is for servers: no origin is ever allowed there, so a cross-origin call is
  refused and no page of the login flow can be read by another origin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apishield.authserver.config import (
    AUTHORIZE_PATH,
    INTROSPECT_PATH,
    JWKS_PATH,
    LOGIN_PATH,
    METADATA_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
)
from apishield.authserver.http import FORM

if TYPE_CHECKING:
    from apishield.authserver.server import AuthorizationServer
    from apishield.policy.models import Cors, Policy
    from apishield.types import ASGIApp, Receive, Scope, Send

PATHS = frozenset(
    {METADATA_PATH, AUTHORIZE_PATH, LOGIN_PATH, TOKEN_PATH, REVOKE_PATH, INTROSPECT_PATH, JWKS_PATH}
)
CLIENT_AUTHENTICATED_PATHS = frozenset({TOKEN_PATH, REVOKE_PATH, INTROSPECT_PATH})
"""Where ``Authorization: Basic`` carries client credentials (RFC 6749 §2.3.1), not a
credential for the gateway's authentication stage."""

BROWSER_PATHS = frozenset({TOKEN_PATH, REVOKE_PATH, METADATA_PATH, JWKS_PATH})
"""The endpoints a browser app calls cross-origin with ``fetch()``."""
CORS_HEADERS = ("Authorization", "Content-Type")

_SECRET_FIELDS = {
    LOGIN_PATH: ("password",),
    TOKEN_PATH: ("client_secret", "client_assertion", "code", "code_verifier", "refresh_token"),
    REVOKE_PATH: ("client_secret", "client_assertion", "token"),
    INTROSPECT_PATH: ("client_secret", "client_assertion", "token"),
}


def mount_authserver(app: ASGIApp, server: AuthorizationServer) -> ASGIApp:
    """An ASGI app that sends the server's paths to ``server`` and the rest to ``app``.
    Lifespan events go to ``app``."""

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in PATHS:
            await server(scope, receive, send)
        else:
            await app(scope, receive, send)

    return mounted


def authserver_routes(*, body_limit: str = "16KiB") -> list[dict[str, Any]]:
    """The policy routes of the server's endpoints."""
    form: dict[str, Any] = {"content_types": [FORM], "body_limit": body_limit}
    published = {"cache_control": "public, max-age=300"}
    return [
        {"path": METADATA_PATH, "methods": ["GET"], "allow": "public", **published},
        {"path": JWKS_PATH, "methods": ["GET"], "allow": "public", **published},
        {"path": AUTHORIZE_PATH, "methods": ["GET"], "allow": "public"},
        {"path": LOGIN_PATH, "methods": ["GET", "POST"], "allow": "public", **form},
        {"path": TOKEN_PATH, "methods": ["POST"], "allow": "public", **form},
        {"path": REVOKE_PATH, "methods": ["POST"], "allow": "public", **form},
        {"path": INTROSPECT_PATH, "methods": ["POST"], "allow": "public", **form},
    ]


def authserver_exclusions() -> list[dict[str, str]]:
    """``inspection.exclude`` entries for the secret-carrying fields of the server's routes."""
    return [
        {"route": path, "field": f"body.{name}"}
        for path, names in _SECRET_FIELDS.items()
        for name in names
    ]


def authserver_cors(policy: Policy) -> dict[str, Cors]:
    """The CORS settings of each of the server's paths under ``policy`` (see above)."""
    from apishield.policy.models import Cors

    allowed = policy.cors.origins if policy.cors is not None else []
    browser = Cors(
        origins=[o for o in allowed if o != "*"],  # exact origins only, as for credentials
        credentials=False,
        headers=list(CORS_HEADERS),
        max_age=policy.cors.max_age if policy.cors is not None else 600,
    )
    nobody = Cors(origins=[], credentials=False)
    return {path: browser if path in BROWSER_PATHS else nobody for path in PATHS}


def with_authserver(policy: Policy) -> Policy:
    """``policy`` with the server's routes (those it does not declare itself, by path), their
    CORS settings (declared ones included: the server's CORS is not the API's) and inspection
    exclusions added."""
    from apishield.inspect.settings import InspectionExclusion
    from apishield.policy.models import Route

    cors = authserver_cors(policy)
    declared = {route.path for route in policy.routes}
    added = [Route.model_validate(r) for r in authserver_routes() if r["path"] not in declared]
    routes = [
        r.model_copy(update={"cors": cors[r.path]}) if r.path in cors else r
        for r in [*policy.routes, *added]
    ]
    exclusions = [InspectionExclusion.model_validate(e) for e in authserver_exclusions()]
    inspection = policy.inspection.model_copy(
        update={"exclude": [*policy.inspection.exclude, *exclusions]}
    )
    return policy.model_copy(update={"routes": routes, "inspection": inspection})
