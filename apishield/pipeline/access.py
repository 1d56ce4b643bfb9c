"""Stage 9 — authorization, deny by default (OWASP API5 and API1).

Every route says who may call it. ``allow: public`` lets anyone through; a route that names
scopes or roles needs a verified principal carrying all of them; a route that says nothing is
closed. Object-level rules (``owner:``) then bind a path, query or body value to one of the
principal's claims, so user A cannot read user B's record by changing an id (AUTH 34).
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import parse_qsl

from apishield.errors import ForbiddenError, UnauthorizedError
from apishield.identity.principal import Principal
from apishield.pipeline.context import RequestContext, get_context
from apishield.policy.models import OwnerRule
from apishield.types import ASGIApp, Receive, Scope, Send

_MISSING = object()


def _dotted(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _query_key(key: str) -> str:
    """How frameworks may read a query key: case-folded, ``.``/space/``[`` as ``_``, no ``[]``."""
    key = unicodedata.normalize("NFKC", key).casefold()
    if key.endswith("[]"):
        key = key[:-2]
    return key.replace(".", "_").replace(" ", "_").replace("[", "_")


def claim_value(principal: Principal, claim: str) -> Any:
    """A principal's claim; ``sub``, ``iss`` and ``client_id`` also work for API keys."""
    if claim == "sub":
        return principal.subject
    if claim == "iss":
        return principal.issuer
    if claim == "client_id" and principal.client_id is not None:
        return principal.client_id
    return _dotted(principal.claims, claim)


def request_value(rule: OwnerRule, scope: Scope, ctx: RequestContext) -> Any:
    """The request's value for ``rule``; ``_MISSING`` when absent or ambiguous."""
    if rule.param is not None:
        assert ctx.route is not None  # noqa: S101 - routing runs first, always
        return ctx.route.params.get(rule.param, _MISSING)
    if rule.query is not None:
        query = scope.get("query_string", b"").decode("latin-1")
        if ";" in query:
            return _MISSING  # some frameworks split on ';' too: ambiguous, refuse
        wanted = _query_key(rule.query)
        values = [
            value
            for key, value in parse_qsl(query, keep_blank_values=True)
            if _query_key(key) == wanted
        ]
        # Two values (`id=1&id=2`, `id=1&ID=2`, `id=1&i.d=2` for PHP) is how parameter
        # pollution slips a second id past a check: refuse unless there is exactly one.
        return values[0] if len(values) == 1 else _MISSING
    assert rule.body is not None  # noqa: S101 - OwnerRule guarantees one source
    return _dotted(ctx.extra.get("json", _MISSING), rule.body)


def owns(rule: OwnerRule, scope: Scope, ctx: RequestContext, principal: Principal) -> bool:
    wanted = claim_value(principal, rule.claim)
    actual = request_value(rule, scope, ctx)
    if wanted is _MISSING or actual is _MISSING or wanted is None:
        return False
    if isinstance(wanted, list):
        return str(actual) in {str(w) for w in wanted}
    # Compared as text: a path segment is text, a claim may be a number.
    return str(actual) == str(wanted) and not isinstance(actual, dict | list)


class AccessMiddleware:
    """Refuses requests the matched route does not allow."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        assert ctx.route is not None  # noqa: S101 - routing runs first, always
        route = ctx.route.route
        allow = route.allow
        if allow == "public":
            await self.app(scope, receive, send)
            return
        if allow is None:
            raise ForbiddenError(
                code="route_not_allowed",
                hint="the policy route has no 'allow' rule, so nobody may call it",
            )
        principal = ctx.principal
        if not isinstance(principal, Principal):
            raise UnauthorizedError(
                headers={"WWW-Authenticate": 'Bearer realm="apishield"'},
                hint="this route needs credentials",
            )
        if not set(allow.scopes) <= principal.scopes or not set(allow.roles) <= principal.roles:
            raise ForbiddenError(
                code="scope_missing",
                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
                hint="the credentials lack a scope or role this route requires",
            )
        for rule in route.owner_rules:
            if not owns(rule, scope, ctx, principal):
                raise ForbiddenError(
                    code="object_access_denied",
                    hint="the object named in the request does not belong to the caller",
                )
        await self.app(scope, receive, send)
