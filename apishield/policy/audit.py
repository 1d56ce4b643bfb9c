"""`apishield check`: what in a valid policy is still unsafe, with a severity and a code.

The policy loader refuses what cannot work; the audit names what works but should not be
shipped (TLS off on a public address, a CORS wildcard, report-only stages…). ``serve`` runs the
same audit at start and logs each finding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from apishield.policy.models import Policy, is_loopback_host, split_address

Severity = Literal["high", "medium", "low"]
SEVERITY_ORDER: dict[str, int] = {"high": 0, "medium": 1, "low": 2}
LARGE_BODY = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    field: tuple[str | int, ...]
    message: str


def audit_policy(policy: Policy, *, today: datetime | None = None) -> list[Finding]:
    """Every unsafe setting in ``policy``, most severe first."""
    found: list[Finding] = []
    add = found.append
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


def log_findings(policy: Policy, source: str = "policy") -> list[Finding]:
    """Run the audit and log each finding (``serve`` does this at start)."""
    findings = audit_policy(policy)
    log = logging.getLogger("apishield.policy")
    for f in findings:
        level = logging.WARNING if f.severity != "low" else logging.INFO
        field = ".".join(str(p) for p in f.field)
        log.log(level, "%s: %s %s: %s: %s", source, f.severity, f.code, field, f.message)
    return findings
