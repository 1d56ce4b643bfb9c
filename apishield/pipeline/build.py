"""The one place the pipeline is assembled, in the order DESIGN.md fixes.

Stages that later releases add (authentication, rate limits, request validation, inspection)
slot in at their numbered places here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from apishield.errors import PROBLEM_TYPE_BASE, ConfigError
from apishield.identity.jwt import JWTVerifier
from apishield.identity.settings import BuiltinIssuer
from apishield.identity.tokencache import RevocationCheck
from apishield.pipeline.access import AccessMiddleware
from apishield.pipeline.audit import AuditMiddleware
from apishield.pipeline.bans import BanMiddleware
from apishield.pipeline.content import ContentMiddleware
from apishield.pipeline.cors import CorsMiddleware
from apishield.pipeline.errors import ErrorsMiddleware
from apishield.pipeline.inspection import build_inspection_stage
from apishield.pipeline.ratelimit import RateLimitMiddleware
from apishield.pipeline.response import ResponseMiddleware
from apishield.pipeline.router import Router
from apishield.pipeline.routing import RoutingMiddleware
from apishield.pipeline.scopes import HTTPOnlyMiddleware
from apishield.pipeline.transport import TransportMiddleware
from apishield.pipeline.validation import build_validation_stage
from apishield.policy.models import Policy
from apishield.ratelimit.guard import RateLimitGuard
from apishield.types import ASGIApp

if TYPE_CHECKING:
    from apishield.store.engine import Store

Wrap = Callable[[ASGIApp], ASGIApp]


def build_pipeline(
    policy: Policy,
    app: ASGIApp,
    *,
    authentication: Wrap | None = None,
    limits: RateLimitGuard | None = None,
    own_csp_paths: frozenset[str] = frozenset(),
) -> ASGIApp:
    """Wrap ``app`` (the upstream proxy, or a Python ASGI app) in every stage of ``policy``.

    ``authentication`` wraps its inner app in stage 7; without it no request carries a
    principal, so only public routes answer. ``limits`` shares one rate-limit state between
    pipelines (tests, embedders); by default the policy's own is built.
    """
    development = policy.mode == "development"
    type_base = PROBLEM_TYPE_BASE
    router = Router(policy)
    guard = limits if limits is not None else RateLimitGuard.from_policy(policy)
    inner: ASGIApp = ResponseMiddleware(  # 13 (12 is `app`)
        app, policy=policy, own_csp_paths=own_csp_paths
    )
    inner = build_inspection_stage(inner, policy.inspection, policy)  # 11
    inner = build_validation_stage(inner, policy)  # 10
    inner = AccessMiddleware(inner)  # 9
    inner = RateLimitMiddleware(inner, guard=guard, phase="principal")  # 8
    inner = BanMiddleware(inner, guard=guard, subject="principal")
    if authentication is not None:
        inner = authentication(inner)  # 7
    inner = ContentMiddleware(  # 6
        inner, policy=policy, development=development, type_base=type_base
    )
    # 8, the limits keyed on the address alone: before any body is read or credential
    # verified, so a flood of bad credentials costs the attacker, not the gateway.
    inner = RateLimitMiddleware(inner, guard=guard, phase="ip")
    inner = RoutingMiddleware(inner, router=router)  # 5
    inner = CorsMiddleware(inner, policy=policy, router=router)  # 4
    inner = BanMiddleware(inner, guard=guard, subject="ip")  # 3, once the address is known
    inner = TransportMiddleware(  # 3
        inner,
        trusted_proxies=policy.trusted_proxies,
        hsts=policy.listen.hsts,
        request_id_header=policy.request_id.header,
        require_https=policy.listen.require_https,
        hosts=policy.listen.hosts,
    )
    inner = AuditMiddleware(inner)  # 2
    inner = ErrorsMiddleware(  # 1
        inner,
        development=development,
        type_base=type_base,
        request_id_header=policy.request_id.header,
    )
    return HTTPOnlyMiddleware(inner)  # 0: no stage reads a WebSocket scope


def policy_authentication(
    policy: Policy,
    *,
    builtin: JWTVerifier | None = None,
    is_revoked: RevocationCheck | None = None,
    client_auth_paths: frozenset[str] = frozenset(),
    store: Store | None = None,
) -> Wrap:
    """Stage 7 as the policy's ``identity`` section asks.

    Built even without an ``identity`` section: it still strips client-sent identity headers
    (AUTH 36) and refuses credentials in the query string (AUTH 37), and leaves every other
    credential header to the upstream. ``store``: the store API keys are checked against,
    owned by the caller (by default the stage opens and closes its own).
    """
    from apishield.identity.bearer import build_bearer_verifier
    from apishield.pipeline.authentication import build_authentication_stage

    def wrap(inner: ASGIApp) -> ASGIApp:
        bearer = build_bearer_verifier(
            policy.identity,
            builtin=builtin,
            is_revoked=is_revoked,
        )
        return build_authentication_stage(
            inner, policy, bearer=bearer, client_auth_paths=client_auth_paths, store=store
        )

    return wrap


def builtin_issuer(policy: Policy) -> BuiltinIssuer | None:
    """The policy's ``identity.issuers`` entry ``{builtin: true}``, if any."""
    issuers = policy.identity.issuers if policy.identity is not None else []
    return next((i for i in issuers if isinstance(i, BuiltinIssuer)), None)


def build_protected(policy: Policy, app: ASGIApp) -> ASGIApp:
    """The pipeline around ``app`` (the upstream proxy, or a Python ASGI app in-process), with
    the identity the policy asks for: the one assembly both modes share.

    With ``identity.issuers: [{builtin: true}]`` the built-in authorization server answers
    its own paths (``/oauth2/*``, RFC 8414 metadata) behind the same stages, tokens it issues
    are verified against the store's keys and revocation list, and expired grants are purged
    in the background. The store (opened lazily) and the server are closed when the lifespan
    ends, or with the event loop when the host runs no lifespan (``ResourceLifecycle``).
    """
    from apishield.authserver.runtime import ResourceLifecycle

    builtin = builtin_issuer(policy)
    api_keys = policy.identity is not None and policy.identity.api_keys is not None
    if builtin is None and not api_keys:
        return build_pipeline(policy, app, authentication=policy_authentication(policy))

    from apishield.store.engine import Store

    store = Store.from_policy(policy)
    if builtin is None:
        pipeline = build_pipeline(
            policy, app, authentication=policy_authentication(policy, store=store)
        )
        return ResourceLifecycle(pipeline, closers=[store.aclose])

    from apishield.authserver import (
        CLIENT_AUTHENTICATED_PATHS,
        AuthorizationServer,
        ServerConfig,
        builtin_revocations,
        builtin_verifier,
        default_issuer,
        mount_authserver,
        with_authserver,
    )
    from apishield.authserver.config import AUTHORIZE_PATH, LOGIN_PATH
    from apishield.authserver.purging import PurgeScheduler
    from apishield.identity.secretkey import load_secret_keys

    policy = with_authserver(policy)  # its routes, CORS, and inspection kept off secret fields
    issuer = builtin.issuer or default_issuer(policy.listen.address)
    revocations = builtin_revocations(store)
    guard = RateLimitGuard.from_policy(policy)
    server = AuthorizationServer(
        store,
        load_secret_keys(policy.state),
        ServerConfig.from_settings(
            builtin,
            issuer,
            development=policy.mode == "development",
            introspectors=builtin.introspectors,
        ),
        limiter=guard.limiter,
        revocations=revocations,
    )
    purge = PurgeScheduler(store)
    audience = builtin.audience or issuer
    authentication = policy_authentication(
        policy,
        builtin=builtin_verifier(store, builtin, issuer, audience),
        is_revoked=revocations.is_revoked,
        client_auth_paths=frozenset(CLIENT_AUTHENTICATED_PATHS),
        store=store,
    )
    pipeline = build_pipeline(
        policy,
        mount_authserver(app, server),
        authentication=authentication,
        limits=guard,
        own_csp_paths=frozenset({AUTHORIZE_PATH, LOGIN_PATH}),
    )
    return ResourceLifecycle(
        pipeline, start=purge.start, closers=[purge.aclose, server.aclose, store.aclose]
    )


def build_gateway(policy: Policy) -> ASGIApp:
    """The standalone gateway: the pipeline in front of the policy's upstream
    (``build_protected`` around the proxy)."""
    if policy.upstream is None:
        raise ConfigError("the policy has no 'upstream': the gateway has nothing to protect")
    from apishield.proxy import UpstreamApp  # the proxy is not needed in in-process mode

    protected = []
    if policy.identity is not None and policy.identity.api_keys is not None:
        protected.append(policy.identity.api_keys.header)
    upstream = UpstreamApp(
        policy.upstream,
        request_id_header=policy.request_id.header,
        protected_fields=protected,
    )
    return build_protected(policy, upstream)
