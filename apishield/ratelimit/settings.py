"""The ``limits:`` section of the policy: rules, response headers, storage behaviour.

```yaml
limits:
  rules:
    - {key: principal, rate: 100/minute, burst: 20}
    - {key: ip, rate: 20/minute, when: anonymous}
    - {key: [principal, route], routes: [/v2/search], rate: 10/second, quota: 10000/day}
    - {key: principal, concurrency: 10}
  headers: always            # RateLimit on every response; `refusals` or `off`
```

``limits:`` may also be the list of rules alone. Secure when left out (OWASP API4:2023,
unrestricted resource consumption): without ``rules`` the defaults below apply, and the token
endpoint and the login page keep stricter per-IP rules of their own (``auth_endpoints``).

Defaults, and why:

- ``{key: ip, rate: 300/minute, burst: 100, when: anonymous}``: callers without valid
  credentials, which includes floods of bad credentials (refused authentications count as
  anonymous), are held to 5 requests/s per address, per /64 for IPv6 (one IPv6 host owns a
  whole /64). Authenticated callers are not counted here, so many users behind one NAT are
  not throttled by their neighbours.
- ``{key: principal, rate: 1200/minute, burst: 200}``: 20 requests/s sustained per verified
  caller with room for bursts of 200; generous for real clients, a ceiling for a stolen key.
- Token endpoint: 60/minute per IP, burst 20 (tokens are cached by clients for their
  lifetime, so honest clients need few). Login: 10 POSTs/minute per IP, burst 5 (AUTH-22).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from apishield.policy.units import Duration
from apishield.ratelimit.rates import RateField

KeyPart = Literal["principal", "ip", "route"]
When = Literal["always", "anonymous", "authenticated"]
Algorithm = Literal["gcra", "sliding_window"]
HeaderMode = Literal["always", "refusals", "off"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
TOKEN_ENDPOINT = "/oauth2/token"  # noqa: S105 - a path, not a secret
LOGIN_PAGES = ("/oauth2/authorize", "/oauth2/login")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_PART_SCHEMA = {"type": "string", "enum": ["principal", "ip", "route"]}
_KEY_SCHEMA = {
    "anyOf": [_PART_SCHEMA, {"type": "array", "items": _PART_SCHEMA, "minItems": 1}],
    "description": "principal, ip, route, or a list of them",
}


def _key(value: object) -> object:
    # `key: ip` and `key: [principal, route]` are both accepted; kept as a sorted tuple so that
    # `[route, principal]` is the same key.
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("name at least one of principal, ip, route")
        if len(set(value)) != len(value):
            raise ValueError("a key part is listed twice")
        return tuple(sorted(value))
    return value


class LimitRule(Model):
    """One limit: what it counts by (``key``), how much, and which requests it applies to."""

    name: str | None = Field(
        default=None,
        description="shown in RateLimit headers and used for the storage keys; "
        "default: derived from the key",
    )
    key: Annotated[tuple[KeyPart, ...], BeforeValidator(_key), WithJsonSchema(_KEY_SCHEMA)] = Field(
        description="principal, ip, route, or a list of them"
    )
    rate: RateField | None = Field(default=None, description="e.g. 100/minute")
    burst: int | None = Field(
        default=None, ge=1, le=1_000_000, description="GCRA: requests allowed back to back"
    )
    algorithm: Algorithm = "gcra"
    quota: RateField | None = Field(
        default=None, description="e.g. 10000/day, in calendar windows (UTC)"
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=1_000_000, description="requests in flight at once"
    )
    when: When = "always"
    routes: list[str] | None = Field(
        default=None, description="route paths as written in `routes:`; default: every route"
    )
    methods: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"{value!r}: lower-case letters, digits, '-' and '_', up to 32")
        return value

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one route, or leave 'routes' out")
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must start with '/'")
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _check_methods(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            out = []
            for method in value:
                if not isinstance(method, str) or method.upper() not in _METHODS:
                    raise ValueError(f"{method!r} is not an HTTP method")
                out.append(method.upper())
            return out
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LimitRule:
        if self.rate is None and self.quota is None and self.concurrency is None:
            raise ValueError("give at least one of 'rate', 'quota' or 'concurrency'")
        if self.burst is not None and (self.rate is None or self.algorithm != "gcra"):
            raise ValueError("'burst' needs a 'rate' with algorithm gcra")
        if "principal" in self.key and self.when == "anonymous":
            raise ValueError("anonymous requests have no principal to count by")
        if self.concurrency is not None and self.when == "anonymous":
            # Anonymous rules are counted before authentication and given back after it;
            # a request slot cannot be given back half-way through the request.
            raise ValueError("'concurrency' cannot apply to anonymous callers only")
        return self

    @property
    def label(self) -> str:
        """The rule's name, or one derived from its key (``principal-route``)."""
        return self.name or "-".join(self.key)


def _rule(**fields: Any) -> LimitRule:
    return LimitRule.model_validate(fields)


DEFAULT_RULES: tuple[LimitRule, ...] = (
    _rule(name="ip", key="ip", rate="300/minute", burst=100, when="anonymous"),
    _rule(name="principal", key="principal", rate="1200/minute", burst=200),
)
AUTH_ENDPOINT_RULES: tuple[LimitRule, ...] = (
    _rule(name="oauth-token", key="ip", rate="60/minute", burst=20, routes=[TOKEN_ENDPOINT]),
    _rule(
        name="login",
        key="ip",
        rate="10/minute",
        burst=5,
        routes=list(LOGIN_PAGES),
        methods=["POST"],
    ),
)


def _header_mode(value: object) -> object:
    # YAML reads `headers: true` / `off` as booleans.
    if value is True:
        return "always"
    if value is False:
        return "off"
    return value


def _rules_only(value: object) -> object:
    return {"rules": value} if isinstance(value, list) else value


class LimitSettings(Model):
    """The ``limits:`` section (a mapping, or the list of rules alone)."""

    rules: list[LimitRule] = Field(default_factory=lambda: list(DEFAULT_RULES))
    auth_endpoints: bool = Field(
        default=True, description="stricter per-IP rules for the token endpoint and login page"
    )
    headers: Annotated[HeaderMode, BeforeValidator(_header_mode)] = Field(
        default="always",
        description="RateLimit/RateLimit-Policy on every response, on 429 only, or never",
    )
    mode: Literal["enforce", "report"] = "enforce"
    key_prefix: str = Field(default="apishield:", description="prefix of every storage key")
    ipv6_prefix: int = Field(
        default=64, ge=32, le=128, description="IPv6 clients are counted per network of this size"
    )
    lease: Duration = Field(
        default=300.0, description="concurrency: how long a slot outlives a crashed gateway"
    )
    storage_timeout: Duration = Field(
        default=0.1, description="Redis: past this, per-process limits take over"
    )
    probe_interval: Duration = Field(
        default=2.0, description="Redis: how often to try again while it is unreachable"
    )
    ban_refresh: Duration = Field(
        default=1.0, description="how often each gateway reloads the shared ban list"
    )
    max_keys: int = Field(
        default=1_000_000, ge=1000, description="memory://: bound on counters kept in memory"
    )

    @model_validator(mode="before")
    @classmethod
    def _accept_list(cls, value: Any) -> Any:
        return _rules_only(value)

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError(f"{value!r}: letters, digits and '_.:-', up to 64")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[LimitRule]) -> list[LimitRule]:
        seen: set[str] = set()
        for rule in value:
            if rule.name is not None:
                if rule.name in seen:
                    raise ValueError(f"the rule name {rule.name!r} is used twice")
                seen.add(rule.name)
        return value

    def all_rules(self) -> list[LimitRule]:
        """The rules in force: the configured ones plus, unless turned off, the auth endpoints'."""
        rules = list(self.rules)
        if self.auth_endpoints:
            names = {r.name for r in rules}
            rules += [r for r in AUTH_ENDPOINT_RULES if r.name not in names]
        return rules


class SlowClientSettings(Model):
    """How long a client may take to send a request (``listen.client_timeouts``).

    Enforced by ``apishield.server.slowclient`` on every connection; kept here, with the other
    abuse-control settings, so that the policy models can use it without importing the server.
    """

    header_timeout: Duration = Field(
        default=10.0, description="request line and headers complete within this"
    )
    body_timeout: Duration = Field(
        default=20.0, description="window over which the minimum body rate is measured"
    )
    min_body_rate: int = Field(
        default=500, ge=0, le=100_000_000, description="bytes per second a body must average"
    )
