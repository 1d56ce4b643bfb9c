"""The limiter: which rules apply to a request, the checks they make, and the verdict.

Rules run in two phases (DESIGN, stage 8):

- ``ip``, before authentication: rules counted by address and/or route alone, so that floods,
  including floods of bad credentials, are refused before any signature is verified.
- ``principal``, after authentication: rules whose key holds the principal, and
  ``when: authenticated`` rules. A request without a principal skips them.

A ``when: anonymous`` rule keeps two counters per subject, so that anonymous traffic never
locks out the authenticated callers who share its address (a NAT, a proxy):

- requests without credentials, counted (exactly) before authentication, and given back if
  the request authenticates after all (mutual TLS, a session);
- refused authentications (401), counted when refused. A request with credentials is checked
  against this counter without being counted (a dry check): once an address has had too many
  refusals, its further attempts are refused before any credential is verified.

Keys: ``<prefix>{<partition>}:<rule>:<parts>:<kind>`` with the partition (Redis Cluster hash
tag) taken from the principal if the key has one, else the address, else the route. Subjects
are hashed. IPv6 clients are counted per ``ipv6_prefix`` network (a /64 by default), because
one host holds a whole /64 and would otherwise get 2^64 separate limits.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from apishield.errors import TooManyRequestsError
from apishield.ratelimit.metrics import LimiterMetrics
from apishield.ratelimit.rates import Rate
from apishield.ratelimit.settings import LimitRule, LimitSettings
from apishield.ratelimit.storage import Check, CheckKind, LimitStorage, Outcome, subject_hash

Phase = Literal["ip", "principal"]
_CODE_ORDER = ("quota_exceeded", "rate_limited", "concurrency_limited")
_PART_ORDER = ("principal", "ip", "route")  # the partition: the narrowest subject
_TAGS = {"principal": "p", "ip": "ip", "route": "r"}
MAX_HASHES = 100_000  # subject digests kept between requests


def quota_exceeded(retry_after: int) -> TooManyRequestsError:
    return TooManyRequestsError(
        code="quota_exceeded",
        headers={"Retry-After": str(retry_after)},
        hint="the quota for this period is used up; it renews at the end of the period",
    )


def rate_limited(retry_after: int) -> TooManyRequestsError:
    return TooManyRequestsError(
        headers={"Retry-After": str(retry_after)},
        hint="slow down: wait for Retry-After seconds before the next request",
    )


def concurrency_limited(retry_after: int) -> TooManyRequestsError:
    return TooManyRequestsError(
        code="concurrency_limited",
        headers={"Retry-After": str(retry_after)},
        hint="too many requests of this caller are in flight; wait for one to finish",
    )


_ERRORS = {
    "quota_exceeded": quota_exceeded,
    "rate_limited": rate_limited,
    "concurrency_limited": concurrency_limited,
}


@dataclass(frozen=True, slots=True)
class _Spec:
    """One counter a rule keeps: its kind, parameters, refusal code and policy header item."""

    suffix: str
    kind: CheckKind
    a: int
    b: int
    code: str
    name: str  # policy name in the RateLimit headers; "" for concurrency (no header)
    policy_item: str
    # Worked out once, so that a request only formats its two numbers.
    policy_bytes: bytes = field(init=False)
    state_prefix: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_bytes", self.policy_item.encode())
        object.__setattr__(self, "state_prefix", f'"{self.name}";r='.encode())


@dataclass(frozen=True, slots=True)
class _Rule:
    rule: LimitRule
    rule_id: str
    phase: Phase
    refundable: bool  # anonymous rule counted before authentication
    routes: frozenset[str] | None
    methods: frozenset[str] | None
    specs: tuple[_Spec, ...]
    parts: tuple[str, ...]  # the key's parts, partition (hash tag) first
    has_slot: bool  # keeps a concurrency slot


Role = Literal["count", "refund", "probe"]


class Planned(NamedTuple):
    """A check of one request: ``count`` it, count it to ``refund`` if the request turns out
    authenticated, or ``probe`` (dry) the refused-authentication counter."""

    check: Check
    spec: _Spec
    role: Role


@dataclass(slots=True)
class Verdict:
    """What the limits say about one request in one phase."""

    allowed: bool = True
    code: str | None = None
    retry_after: int = 0  # whole seconds, for Retry-After (RFC 9110 §10.2.3)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    leases: list[Check] = field(default_factory=list)  # concurrency slots to give back
    refundable: list[Check] = field(default_factory=list)  # anonymous counts to give back
    failures: list[Check] = field(default_factory=list)  # to count if authentication fails

    def error(self) -> TooManyRequestsError:
        """The 429 to raise for a refusal."""
        return _ERRORS[self.code or "rate_limited"](self.retry_after)


def _policy_item(name: str, rate: Rate) -> str:
    # draft-ietf-httpapi-ratelimit-headers: a String item with quota `q` and window `w`.
    return f'"{name}";q={rate.limit};w={rate.period}'


def _rule_id(rule: LimitRule) -> str:
    if rule.name:
        return rule.name
    # Unnamed rules are told apart by what they say; changing one starts fresh counters.
    text = repr(
        (rule.key, str(rule.rate), rule.burst, rule.algorithm, str(rule.quota), rule.when)
        + (tuple(rule.routes or ()), tuple(rule.methods or ()), rule.concurrency)
    )
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def compile_rules(settings: LimitSettings) -> list[_Rule]:
    """The rules in force, with their phase, keys and header items worked out once."""
    compiled: list[_Rule] = []
    labels: dict[str, int] = {}
    lease_us = int(settings.lease * 1_000_000)
    for rule in settings.all_rules():
        label = rule.label
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f"{label}-{labels[label]}"
        specs: list[_Spec] = []
        if rule.rate is not None:
            if rule.algorithm == "gcra":
                burst = rule.burst if rule.burst is not None else rule.rate.limit
                specs.append(
                    _Spec(
                        "g",
                        "gcra",
                        rule.rate.interval_us,
                        burst,
                        "rate_limited",
                        label,
                        _policy_item(label, rule.rate),
                    )
                )
            else:
                specs.append(
                    _Spec(
                        "s",
                        "sliding",
                        rule.rate.period_us,
                        rule.rate.limit,
                        "rate_limited",
                        label,
                        _policy_item(label, rule.rate),
                    )
                )
        if rule.quota is not None:
            name = f"{label}-quota"
            specs.append(
                _Spec(
                    "q",
                    "fixed",
                    rule.quota.period_us,
                    rule.quota.limit,
                    "quota_exceeded",
                    name,
                    _policy_item(name, rule.quota),
                )
            )
        if rule.concurrency is not None:
            specs.append(
                _Spec("c", "concurrency", lease_us, rule.concurrency, "concurrency_limited", "", "")
            )
        by_principal = "principal" in rule.key or rule.when == "authenticated"
        compiled.append(
            _Rule(
                rule,
                _rule_id(rule),
                "principal" if by_principal else "ip",
                refundable=not by_principal and rule.when == "anonymous",
                routes=frozenset(rule.routes) if rule.routes is not None else None,
                methods=frozenset(rule.methods) if rule.methods is not None else None,
                specs=tuple(specs),
                parts=tuple(sorted(rule.key, key=_PART_ORDER.index)),
                has_slot=any(s.kind == "concurrency" for s in specs),
            )
        )
    return compiled


def client_key(client_ip: str, ipv6_prefix: int = 64) -> str:
    """The address a limit counts by: IPv4 as is, IPv6 as its ``/ipv6_prefix`` network."""
    if ":" not in client_ip:
        return client_ip or "unknown"
    try:
        address = ipaddress.IPv6Address(client_ip.strip("[]"))
    except ValueError:
        return "unknown"
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    network = ipaddress.IPv6Network((int(address), ipv6_prefix), strict=False)
    return str(network)


class Limiter:
    """Decides, for one request and one phase, whether the configured limits allow it.

    Trust assumption: ``client_ip`` comes from the transport stage (forwarding headers believed
    from trusted proxies only) and ``principal`` from the authentication stage; neither is
    read from the request here.
    """

    def __init__(
        self,
        settings: LimitSettings,
        storage: LimitStorage,
        *,
        metrics: LimiterMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.metrics = metrics if metrics is not None else LimiterMetrics()
        self.rules = compile_rules(settings)
        self.prefix = settings.key_prefix
        self.report = settings.mode == "report"
        self.header_mode = settings.headers
        # Only `when: anonymous` rules care whether a request carries credentials.
        self.needs_credentials = any(r.refundable for r in self.rules)
        self.ipv6_prefix = settings.ipv6_prefix
        self._by_route: dict[tuple[Phase, str | None], tuple[_Rule, ...]] = {}
        self._hashes: dict[str, str] = {}

    def rules_for(self, phase: Phase, route: str | None) -> tuple[_Rule, ...]:
        """The phase's rules whose ``routes`` admit ``route`` (cached per route template)."""
        found = self._by_route.get((phase, route))
        if found is None:
            found = tuple(
                r
                for r in self.rules
                if r.phase == phase
                and (r.routes is None or route in r.routes)
                and (route is not None or "route" not in r.rule.key)
            )
            self._by_route[(phase, route)] = found
        return found

    def plan(
        self,
        phase: Phase,
        *,
        client_ip: str,
        principal: str | None,
        route: str | None,
        method: str,
        credentials: bool = False,
    ) -> list[Planned]:
        """The checks this request makes in ``phase``. No I/O.

        ``credentials``: the request carries a credential (decides which counter of a
        ``when: anonymous`` rule it meets).
        """
        rules = self.rules_for(phase, route)
        if not rules:
            return []
        if method == "HEAD":
            method = "GET"  # HEAD is GET without a body (RFC 9110 §9.3.2)
        planned: list[Planned] = []
        subjects: dict[str, str] = {}
        for compiled in rules:
            rule = compiled.rule
            if compiled.methods is not None and method not in compiled.methods:
                continue
            if principal is None and compiled.phase == "principal":
                continue
            if principal is not None and rule.when == "anonymous":
                continue  # authenticated already (the ip phase placed after authentication)
            digests = []
            for part in compiled.parts:
                digest = subjects.get(part)
                if digest is None:
                    if part == "principal":
                        value = f"p|{principal}"
                    elif part == "ip":
                        value = f"ip|{client_key(client_ip, self.ipv6_prefix)}"
                    else:
                        value = f"r|{route}"
                    digest = subjects[part] = self._hash(value)
                digests.append(digest)
            tag = _TAGS[compiled.parts[0]]
            base = f"{self.prefix}{{{tag}:{digests[0]}}}:{compiled.rule_id}:"
            if len(digests) > 1:
                base += ":".join(digests[1:]) + ":"
            member = secrets.token_hex(8) if compiled.has_slot else ""
            probe = compiled.refundable and credentials
            role: Role = "refund" if compiled.refundable else "count"
            for spec in compiled.specs:
                if probe:
                    check = Check(f"{base}x{spec.suffix}", spec.kind, spec.a, spec.b, dry=True)
                    planned.append(Planned(check, spec, "probe"))
                elif spec.kind == "concurrency":
                    check = Check(base + spec.suffix, spec.kind, spec.a, spec.b, member)
                    planned.append(Planned(check, spec, role))
                else:
                    planned.append(
                        Planned(Check(base + spec.suffix, spec.kind, spec.a, spec.b), spec, role)
                    )
        return planned

    def _hash(self, value: str) -> str:
        digest = self._hashes.get(value)
        if digest is None:
            if len(self._hashes) >= MAX_HASHES:
                self._hashes.clear()  # bounded: a flood of new subjects cannot grow it
            digest = self._hashes[value] = subject_hash(value)
        return digest

    async def check(
        self,
        phase: Phase,
        *,
        client_ip: str,
        principal: str | None,
        route: str | None,
        method: str,
        credentials: bool = False,
    ) -> Verdict:
        """Apply the phase's limits to one request: one storage round trip at most."""
        planned = self.plan(
            phase,
            client_ip=client_ip,
            principal=principal,
            route=route,
            method=method,
            credentials=credentials,
        )
        if not planned:
            return Verdict()
        outcomes = await self.storage.apply([p.check for p in planned])
        return await self._verdict(planned, outcomes)

    async def _verdict(self, planned: Sequence[Planned], outcomes: Sequence[Outcome]) -> Verdict:
        verdict = Verdict()
        denied: list[tuple[_Spec, Outcome]] = []
        for item, outcome in zip(planned, outcomes, strict=True):
            if not outcome.allowed:
                denied.append((item.spec, outcome))
            elif item.role == "probe":
                verdict.failures.append(item.check._replace(dry=False))
            elif outcome.applied:
                if item.check.kind == "concurrency":
                    verdict.leases.append(item.check)
                elif item.role == "refund":
                    verdict.refundable.append(item.check)
        if denied:
            code = min((s.code for s, _ in denied), key=_CODE_ORDER.index)
            retry = max(o.retry_after for _, o in denied)
            verdict.code = code
            if self.report:
                self.metrics.reported[code] += 1
            else:
                verdict.allowed = False
                verdict.retry_after = max(1, math.ceil(retry))
                self.metrics.refused[code] += 1
                # All or nothing across partitions too: what other partitions took is returned.
                taken = [p.check for p, o in zip(planned, outcomes, strict=True) if o.applied]
                if taken:
                    await self.storage.refund(taken)
                verdict.leases.clear()
                verdict.refundable.clear()
                verdict.failures.clear()
        else:
            self.metrics.allowed += 1
        if self.header_mode == "always" or (self.header_mode == "refusals" and denied):
            verdict.headers = _headers(planned, outcomes)
        return verdict

    async def throttle(
        self, name: str, subject: str, rate: Rate, *, burst: int | None = None
    ) -> Verdict:
        """A GCRA limit on any ``subject`` a stage or endpoint knows and the policy cannot name.

        For example the login page, which throttles per user name as well as per address
        (AUTH-22): ``await limiter.throttle("login-user", username, parse_rate("5/minute"))``.
        ``subject`` is hashed into the key; ``name`` separates unrelated throttles. Refusals
        raise nothing: the caller checks ``verdict.allowed`` and raises ``verdict.error()``.
        """
        spec = _Spec(
            "g",
            "gcra",
            rate.interval_us,
            burst if burst is not None else rate.limit,
            "rate_limited",
            name,
            _policy_item(name, rate),
        )
        key = f"{self.prefix}{{u:{self._hash(f'u|{name}|{subject}')}}}:{name}:g"
        planned = [Planned(Check(key, "gcra", spec.a, spec.b), spec, "count")]
        outcomes = await self.storage.apply([planned[0].check])
        return await self._verdict(planned, outcomes)

    async def count_failures(self, checks: Sequence[Check]) -> None:
        """Count refused authentications (the request is over; nothing is refused here)."""
        if checks:
            await self.storage.apply(checks)

    async def release(self, checks: Sequence[Check]) -> None:
        """Give back concurrency slots and anonymous counts once the request is over."""
        if checks:
            await self.storage.refund(checks)


def _headers(planned: Sequence[Planned], outcomes: Sequence[Outcome]) -> list[tuple[bytes, bytes]]:
    policies: list[bytes] = []
    states: list[bytes] = []
    for item, outcome in zip(planned, outcomes, strict=True):
        spec = item.spec
        # Concurrency has no field in the draft; the refused-authentication counter is shown
        # only when it refuses, since it is not the caller's own budget.
        if not spec.name or (item.role == "probe" and outcome.allowed):
            continue
        policies.append(spec.policy_bytes)
        remaining = outcome.remaining if outcome.allowed and outcome.remaining > 0 else 0
        states.append(b"%s%d;t=%d" % (spec.state_prefix, remaining, -int(-outcome.reset // 1)))
    if not policies:
        return []
    if len(policies) == 1:
        return [(b"ratelimit-policy", policies[0]), (b"ratelimit", states[0])]
    return [(b"ratelimit-policy", b", ".join(policies)), (b"ratelimit", b", ".join(states))]
