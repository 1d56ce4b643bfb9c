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
  ``<``; every other field of these routes is still inspected.
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
    from apishield.policy.models import Policy
    from apishield.types import ASGIApp, Receive, Scope, Send

PATHS = frozenset(
    {METADATA_PATH, AUTHORIZE_PATH, LOGIN_PATH, TOKEN_PATH, REVOKE_PATH, INTROSPECT_PATH, JWKS_PATH}
)
CLIENT_AUTHENTICATED_PATHS = frozenset({TOKEN_PATH, REVOKE_PATH, INTROSPECT_PATH})
"""Where ``Authorization: Basic`` carries client credentials (RFC 6749 §2.3.1), not a
credential for the gateway's authentication stage."""

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


def with_authserver(policy: Policy) -> Policy:
    """``policy`` with the server's routes (those it does not declare itself, by path) and
    inspection exclusions added."""
    from apishield.inspect.settings import InspectionExclusion
    from apishield.policy.models import Route

    declared = {route.path for route in policy.routes}
    routes = [Route.model_validate(r) for r in authserver_routes() if r["path"] not in declared]
    exclusions = [InspectionExclusion.model_validate(e) for e in authserver_exclusions()]
    inspection = policy.inspection.model_copy(
        update={"exclude": [*policy.inspection.exclude, *exclusions]}
    )
    return policy.model_copy(update={"routes": [*policy.routes, *routes], "inspection": inspection})
