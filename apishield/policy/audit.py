"""`apishield check`: what in a valid policy is still unsafe, with a severity and a code.

The policy loader refuses what cannot work; the audit names what works but should not be
shipped (TLS off on a public address, a CORS wildcard, report-only stages…). ``serve`` runs the
same audit at start and logs each finding.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from apishield.policy.models import Policy, is_loopback_host, split_address
from apishield.schema.spec import OpenAPISpec

Severity = Literal["high", "medium", "low"]
SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}
LARGE_BODY = 10 * 1024 * 1024
_PARAM = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    field: tuple[str | int, ...]
    message: str


def audit_policy(
    policy: Policy,
    *,
    today: datetime | None = None,
    spec: OpenAPISpec | None = None,
    workers: int = 1,
) -> list[Finding]:
    """Every unsafe setting in ``policy``, most severe first.

    With ``spec`` (the policy's loaded ``openapi`` spec), also what the routes and the spec
    disagree on: see ``audit_spec``. ``workers``: the processes ``serve`` will run, for
    what only holds in one process.
    """
    found: list[Finding] = [] if spec is None else audit_spec(policy, spec)
    add = found.append
    if workers > 1 and policy.state.cache.startswith("memory://"):
        add(
            Finding(
                "high",
                "limits_not_shared",
                ("state", "cache"),
                f"{workers} workers each keep their own rate-limit counters and ban list "
                f"in memory: every limit admits up to {workers} times its rate",
            )
        )
    host, _ = split_address(policy.listen.address)
    public = not is_loopback_host(host)
    tls = policy.listen.tls
    if tls == "off":
        add(
            Finding(
                "high" if public else "low",
                "tls_off",
                ("listen", "tls"),
                f"TLS is off on {policy.listen.address}"
                + (", a non-loopback address" if public else "")
                + ": credentials and data travel in cleartext",
            )
        )
    elif tls == "dev" and public:
        add(
            Finding(
                "medium",
                "tls_dev_certificate",
                ("listen", "tls"),
                "a development certificate on a non-loopback address: clients cannot verify it",
            )
        )
    if not policy.listen.hsts.enabled:
        add(
            Finding(
                "high" if public and tls != "off" else "medium",
                "hsts_off",
                ("listen", "hsts", "enabled"),
                "HSTS is off: a network attacker can strip HTTPS on a client's first request",
            )
        )
    elif policy.listen.hsts.max_age < 15_552_000:
        add(
            Finding(
                "low",
                "hsts_short",
                ("listen", "hsts", "max_age"),
                "HSTS max_age is under 180 days",
            )
        )
    if not policy.listen.require_https:
        add(
            Finding(
                "high" if public else "medium",
                "https_not_required",
                ("listen", "require_https"),
                "plain HTTP is accepted from any client: credentials can travel in cleartext",
            )
        )
    if policy.mode == "development" and public:
        add(
            Finding(
                "medium",
                "development_mode",
                ("mode",),
                "development mode on a non-loopback address explains every refusal to clients",
            )
        )
    for net in policy.trusted_proxies:
        if net.prefixlen == 0:
            add(
                Finding(
                    "high",
                    "trusted_proxies_any",
                    ("trusted_proxies",),
                    f"{net} trusts every peer's X-Forwarded-For: clients choose their address",
                )
            )
    if policy.upstream is not None:
        parts = urlsplit(policy.upstream.url)
        upstream_host = parts.hostname or ""
        if parts.scheme == "http" and not is_loopback_host(upstream_host):
            add(
                Finding(
                    "high",
                    "upstream_plain_http",
                    ("upstream", "url"),
                    f"plain HTTP to {upstream_host}, which is not on this host: use https://",
                )
            )
    cors_places: list[tuple[tuple[str | int, ...], object]] = [(("cors",), policy.cors)]
    cors_places += [(("versions", i, "cors"), v.cors) for i, v in enumerate(policy.versions)]
    cors_places += [(("routes", i, "cors"), r.cors) for i, r in enumerate(policy.routes)]
    for field, cors in cors_places:
        if cors is not None and "*" in getattr(cors, "origins", ()):
            add(
                Finding(
                    "medium",
                    "cors_wildcard",
                    field,
                    "a CORS wildcard lets every web site call this API from its visitors' browsers",
                )
            )
    if policy.content.mode == "report":
        add(
            Finding(
                "medium",
                "stage_report_mode",
                ("content", "mode"),
                "the content stage only reports: bad media types and oversized bodies get through",
            )
        )
    if not policy.inspection.enabled:
        add(
            Finding(
                "high" if public else "medium",
                "inspection_off",
                ("inspection", "enabled"),
                "injection inspection is off: SQL, command and script injection reach the API",
            )
        )
    elif policy.inspection.mode == "report":
        add(
            Finding(
                "medium",
                "stage_report_mode",
                ("inspection", "mode"),
                "inspection only reports: injection attempts get through",
            )
        )
    if policy.openapi is not None and policy.openapi.mode == "report":
        add(
            Finding(
                "medium",
                "stage_report_mode",
                ("openapi", "mode"),
                "request validation only reports: requests the spec does not allow get through",
            )
        )
    if policy.limits.mode == "report":
        add(
            Finding(
                "medium",
                "stage_report_mode",
                ("limits", "mode"),
                "rate limits only report: floods and credential guessing are not slowed",
            )
        )
    if policy.content.body_limit > LARGE_BODY:
        add(
            Finding(
                "medium",
                "body_limit_large",
                ("content", "body_limit"),
                f"the default body limit is {policy.content.body_limit} bytes (over 10 MiB)",
            )
        )
    for i, route in enumerate(policy.routes):
        if route.body_limit is not None and route.body_limit > LARGE_BODY:
            add(
                Finding(
                    "medium",
                    "body_limit_large",
                    ("routes", i, "body_limit"),
                    f"{route.path} accepts bodies of {route.body_limit} bytes (over 10 MiB)",
                )
            )
        if route.allow is None:
            add(
                Finding(
                    "low",
                    "route_closed",
                    ("routes", i, "allow"),
                    f"{route.path} has no 'allow' rule, so nobody may call it yet",
                )
            )
        elif route.allow == "public" and set(route.methods) - {"GET", "HEAD", "OPTIONS"}:
            add(
                Finding(
                    "medium",
                    "route_public_write",
                    ("routes", i, "allow"),
                    f"{route.path} lets anyone call {', '.join(route.methods)} without credentials",
                )
            )
        identity = policy.identity
        if route.resource is not None and (
            identity is None or (not identity.issuers and identity.introspection is None)
        ):
            add(
                Finding(
                    "medium",
                    "resource_without_issuer",
                    ("routes", i, "resource"),
                    f"{route.path} wants tokens for {route.resource}, but no issuer or "
                    "introspection endpoint is configured to accept bearer tokens",
                )
            )
    introspection = policy.identity.introspection if policy.identity is not None else None
    if introspection is not None and introspection.audience is None:
        add(
            Finding(
                "medium",
                "introspection_audience_unset",
                ("identity", "introspection", "audience"),
                "opaque tokens are accepted on routes without a 'resource' whatever API they "
                "were issued for: set the audience they must name",
            )
        )
    now = (today or datetime.now(UTC)).date()
    for i, version in enumerate(policy.versions):
        dep = version.deprecated
        if dep is not None and dep.sunset is not None and dep.sunset < now and not version.retired:
            add(
                Finding(
                    "medium",
                    "sunset_passed",
                    ("versions", i, "deprecated", "sunset"),
                    f"version {version.label} passed its sunset date {dep.sunset}: retire it",
                )
            )
    if not policy.routes:
        add(Finding("medium", "no_routes", ("routes",), "no routes: every request is refused"))
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])


def _shape(path: str) -> str:
    return _PARAM.sub("{}", path)


def audit_spec(policy: Policy, spec: OpenAPISpec) -> list[Finding]:
    """Where the routes and the OpenAPI spec disagree (what ``apishield init`` left open).

    An operation of the spec without a route is refused (404), which is safe but probably not
    meant; a route method the spec does not describe is forwarded without schema validation.
    A spec path matches a route with or without the path of the spec's servers in front, as
    the validation stage matches them. A GET in the spec covers HEAD (RFC 9110 §9.3.2).
    """
    prefixes = [""]
    for url in spec.servers:
        prefix = urlsplit(url).path.rstrip("/")
        if prefix and prefix not in prefixes:
            prefixes.append(prefix)
    in_spec: set[tuple[str, str]] = set()
    for op in spec.operations:
        for prefix in prefixes:
            in_spec.add((_shape(prefix + op.path), op.method))
            if op.method == "GET":
                in_spec.add((_shape(prefix + op.path), "HEAD"))
    routed: set[tuple[str, str]] = set()
    found: list[Finding] = []
    for i, route in enumerate(policy.routes):
        shape = _shape(route.path)
        for method in route.methods:
            routed.add((shape, method))
            if (shape, method) not in in_spec:
                found.append(
                    Finding(
                        "medium",
                        "route_not_in_spec",
                        ("routes", i, "methods"),
                        f"{method} {route.path} is not in the OpenAPI spec: its requests are "
                        "forwarded without schema validation",
                    )
                )
    for op in spec.operations:
        if not any((_shape(prefix + op.path), op.method) in routed for prefix in prefixes):
            name = f" ({op.operation_id})" if op.operation_id else ""
            found.append(
                Finding(
                    "low",
                    "operation_not_routed",
                    ("routes",),
                    f"{op.method} {op.path}{name} is in the OpenAPI spec but no route has it, "
                    "so it is refused (404)",
                )
            )
    return found


def log_findings(
    policy: Policy, source: str = "policy", *, spec: OpenAPISpec | None = None, workers: int = 1
) -> list[Finding]:
    """Run the audit and log each finding (``serve`` does this at start)."""
    findings = audit_policy(policy, spec=spec, workers=workers)
    log = logging.getLogger("apishield.policy")
    for f in findings:
        level = logging.WARNING if f.severity != "low" else logging.INFO
        field = ".".join(str(p) for p in f.field)
        log.log(level, "%s: %s %s: %s: %s", source, f.severity, f.code, field, f.message)
    return findings
