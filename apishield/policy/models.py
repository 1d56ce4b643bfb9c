"""The policy file as typed models (pydantic v2).

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting,
and every default is the secure choice: TLS on, HSTS on, no cross-origin access, JSON only,
1 MiB bodies, deny by default on routes that do not say who may call them.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from apishield.identity.settings import IdentitySettings
from apishield.inspect.settings import InspectionSettings
from apishield.policy.addresses import is_loopback_host, split_address
from apishield.policy.units import Duration, Size
from apishield.ratelimit.settings import LimitSettings, SlowClientSettings

__all__ = ["Policy", "is_loopback_host", "split_address"]

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
StageMode = Literal["enforce", "report"]
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 §5.6.2 token
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9*][A-Za-z0-9!#$&^_.+*-]*$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8443)")
    return value


def _tls_off(value: object) -> object:
    # YAML 1.1 reads a bare `off` as false: accept it as the "off" it was meant to be.
    return "off" if value is False else value


class TLSFiles(Model):
    """A certificate chain and its private key, PEM files (paths relative to the policy file)."""

    cert: Path
    key: Path


class HSTS(Model):
    """Strict-Transport-Security (RFC 6797); sent on every HTTPS response."""

    enabled: bool = True
    max_age: int = Field(default=31_536_000, ge=0)
    include_subdomains: bool = True
    preload: bool = False

    def header_value(self) -> str:
        value = f"max-age={self.max_age}"
        if self.include_subdomains:
            value += "; includeSubDomains"
        if self.preload:
            value += "; preload"
        return value


class Listen(Model):
    address: Annotated[str, Field(description="HOST:PORT")] = "127.0.0.1:8443"
    tls: Annotated[TLSFiles | Literal["dev", "off"], BeforeValidator(_tls_off)] = "dev"
    redirect_http: str | None = Field(
        default=None, description="HOST:PORT of a plain listener that only redirects to HTTPS"
    )
    hsts: HSTS = HSTS()
    require_https: bool = Field(
        default=True,
        description="refuse or redirect plain HTTP from non-loopback clients",
    )
    client_timeouts: SlowClientSettings = SlowClientSettings()
    hosts: list[str] | None = Field(
        default=None,
        description="host names this gateway answers for (Host allowlist); absent: any",
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return _address(value)

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one host name, or leave 'hosts' out to accept any")
        for host in value:
            if ":" in host.strip("[]") and not host.startswith("[") or host.endswith("]:"):
                raise ValueError(f"{host!r}: give the host name without a port")
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]", host):
                raise ValueError(f"{host!r} is not a host name")
        return value

    @field_validator("redirect_http")
    @classmethod
    def _check_redirect(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)


class State(Model):
    dir: Path = Field(
        default=Path(".apishield"),
        description="where apishield keeps its files (dev CA, SQLite); relative to the policy",
    )
    store: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://...; default: apishield.db in the state dir",
    )
    cache: str = Field(default="memory://", description="memory:// or redis://HOST:PORT/DB")
    secret_key: str | None = Field(
        default=None,
        description="env:NAME or file:PATH (pepper and encryption key); never inline. "
        "Default: a key file created in the state dir",
    )

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", "postgresql://")):
            raise ValueError(f"{value!r}: use sqlite:///PATH or postgresql://...")
        return value

    @field_validator("cache")
    @classmethod
    def _check_cache(cls, value: str) -> str:
        if value != "memory://" and not value.startswith(("redis://", "rediss://")):
            raise ValueError(f"{value!r}: use memory:// or redis://HOST:PORT/DB")
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("env:", "file:")):
            raise ValueError("give the secret key as env:NAME or file:PATH, never inline")
        return value


class Timeouts(Model):
    connect: Duration = 2.0
    read: Duration = 30.0
    total: Duration = 60.0


class Pool(Model):
    max_connections: int = Field(default=100, ge=1, le=100_000)
    idle_timeout: Duration = 30.0


class Upstream(Model):
    url: str
    timeouts: Timeouts = Timeouts()
    pool: Pool = Pool()
    stacktrace_guard: bool = Field(
        default=True, description="replace 5xx bodies that look like stack traces or debug pages"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("the upstream URL takes no query, fragment or credentials")
        return value.rstrip("/")


def _origin(value: str) -> str:
    if value == "*":
        return value
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValueError(
            f"{value!r} is not an exact origin (scheme://host[:port], no path or trailing slash)"
        )
    return value.lower()


class Cors(Model):
    """Cross-origin access (Fetch standard). Absent: no cross-origin access at all."""

    origins: list[str] = []
    credentials: bool = False
    methods: list[str] | None = Field(
        default=None, description="allowed methods; default: the route's own"
    )
    headers: list[str] = Field(default_factory=lambda: ["Content-Type", "Authorization"])
    expose_headers: list[str] = []
    max_age: int = Field(default=600, ge=0, le=86_400)

    @field_validator("origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return [_origin(v) for v in value]

    @field_validator("headers", "expose_headers")
    @classmethod
    def _check_header_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and not _TOKEN.match(name):
                raise ValueError(f"{name!r} is not a header name")
        return value

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_method(m) for m in value]

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> Cors:
        if self.credentials and ("*" in self.origins or "*" in self.headers):
            raise ValueError(
                "a wildcard cannot be combined with credentials: list the exact origins"
            )
        return self


def _method(value: str) -> str:
    if not isinstance(value, str) or value.upper() not in HTTP_METHODS:
        raise ValueError(f"{value!r} is not an HTTP method")
    return value.upper()


class Deprecation(Model):
    """RFC 9745 ``Deprecation`` and RFC 8594 ``Sunset`` for a version still served."""

    since: date | None = None
    sunset: date | None = None
    link: str | None = Field(default=None, description="where to read about the successor")


class Version(Model):
    """A route group for one API version, chosen by path prefix or by a request header."""

    name: str | None = None
    prefix: str | None = None
    header: dict[str, str] | None = Field(
        default=None, description="exactly one header name and the value that selects it"
    )
    default: bool = Field(default=False, description="header versions: used when none is sent")
    deprecated: Deprecation | None = None
    retired: bool = False
    link: str | None = Field(default=None, description="for retired versions: the successor")
    cors: Cors | None = None

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or value.endswith("/") or "{" in value:
            raise ValueError(f"{value!r} must start with '/', not end with one, hold no parameter")
        return value

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) != 1:
            raise ValueError("give exactly one header name and value")
        ((name, val),) = value.items()
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a header name")
        return {name.lower(): str(val)}

    @model_validator(mode="after")
    def _one_selector(self) -> Version:
        if (self.prefix is None) == (self.header is None):
            raise ValueError("a version is selected by exactly one of 'prefix' or 'header'")
        if self.default and self.header is None:
            raise ValueError("'default' applies to header versions only")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.prefix:
            return self.prefix.lstrip("/")
        assert self.header is not None  # noqa: S101 - guaranteed by _one_selector
        return next(iter(self.header.values()))


class AllowRule(Model):
    scopes: list[str] = []
    roles: list[str] = []


class OwnerRule(Model):
    """Object-level authorization (OWASP API1, AUTH 34): a request value must equal a claim."""

    param: str | None = Field(default=None, description="a {parameter} of the route's path")
    query: str | None = Field(default=None, description="a query-string parameter")
    body: str | None = Field(default=None, description="a JSON body field, dotted for nesting")
    claim: str = Field(description="the principal's claim it must equal: sub, tenant, org.id…")

    @model_validator(mode="after")
    def _one_source(self) -> OwnerRule:
        if sum(v is not None for v in (self.param, self.query, self.body)) != 1:
            raise ValueError("give exactly one of 'param', 'query' or 'body'")
        return self


class Route(Model):
    path: str
    methods: list[str]
    version: str | None = Field(default=None, description="name of a header version")
    allow: Literal["public"] | AllowRule | None = Field(
        default=None, description="who may call; absent means nobody (deny by default)"
    )
    content_types: list[str] | None = None
    body_limit: Size | None = None
    json_depth: int | None = Field(default=None, ge=1, le=1000)
    cache_control: str | None = None
    cors: Cors | None = None
    owner: OwnerRule | list[OwnerRule] | None = Field(
        default=None, description="object-level rules; all must hold"
    )
    resource: str | None = Field(
        default=None,
        description="resource identifier (RFC 8707) a bearer token's aud must contain; "
        "default: the issuer's audience",
    )

    @field_validator("resource")
    @classmethod
    def _check_resource(cls, value: str | None) -> str | None:
        # RFC 8707 §2: an absolute URI without a fragment, as the authorization server issues.
        if value is not None:
            parts = urlsplit(value)
            if not parts.scheme or not parts.netloc or parts.fragment or "#" in value:
                raise ValueError(f"{value!r} must be an absolute URI without a fragment")
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        names = _PARAM.findall(value)
        if len(names) != len(set(names)):
            raise ValueError(f"{value!r} names a parameter twice")
        rest = _PARAM.sub("", value)
        if "{" in rest or "}" in rest:
            raise ValueError(f"{value!r} has a malformed '{{parameter}}'")
        for segment in value.split("/")[1:]:
            if segment in (".", "..") or ("{" in segment and not _PARAM.fullmatch(segment)):
                raise ValueError(f"{value!r}: a parameter must fill a whole path segment")
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _check_methods(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            methods = [_method(m) for m in value]
            if not methods:
                raise ValueError("list at least one method")
            if len(methods) != len(set(methods)):
                raise ValueError("a method is listed twice")
            return methods
        return value

    @field_validator("content_types")
    @classmethod
    def _check_media(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_media_type(v) for v in value]

    @model_validator(mode="after")
    def _owner_params_exist(self) -> Route:
        rules = self.owner if isinstance(self.owner, list) else [self.owner] if self.owner else []
        names = set(_PARAM.findall(self.path))
        for rule in rules:
            if rule.param is not None and rule.param not in names:
                raise ValueError(f"owner.param {rule.param!r} is not a parameter of {self.path}")
        if rules and self.allow in (None, "public"):
            raise ValueError("an owner rule needs an 'allow' rule with scopes or roles")
        return self

    @property
    def owner_rules(self) -> list[OwnerRule]:
        if self.owner is None:
            return []
        return self.owner if isinstance(self.owner, list) else [self.owner]


def _media_type(value: str) -> str:
    value = value.strip().lower()
    if not _MEDIA_TYPE.match(value) or value.startswith("*"):
        raise ValueError(f"{value!r} is not a media type (type/subtype)")
    return value


class Content(Model):
    """Defaults for the content stage; routes may override each."""

    content_types: list[str] = Field(default_factory=lambda: ["application/json"])
    body_limit: Size = 1024 * 1024
    json_depth: int = Field(default=32, ge=1, le=1000)
    mode: StageMode = "enforce"

    @field_validator("content_types")
    @classmethod
    def _check_media(cls, value: list[str]) -> list[str]:
        return [_media_type(v) for v in value]


class Response(Model):
    """Headers stripped from and added to every response."""

    remove_headers: list[str] = Field(
        default_factory=lambda: [
            "Server",
            "X-Powered-By",
            "X-AspNet-Version",
            "X-AspNetMvc-Version",
            "X-Runtime",
            "X-Debug-Token",
            "X-Debug-Token-Link",
        ]
    )
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"
    referrer_policy: str = "no-referrer"
    cache_control: str = "no-store"
    set_headers: dict[str, str] = {}


class RequestIdSettings(Model):
    header: str = "X-Request-ID"

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        reserved = {
            "host",
            "authorization",
            "cookie",
            "connection",
            "content-length",
            "content-type",
            "transfer-encoding",
            "te",
            "upgrade",
            "x-forwarded-for",
        }
        if not _TOKEN.match(value) or value.lower() in reserved:
            raise ValueError(f"{value!r} cannot carry request ids")
        return value


def _openapi_shorthand(value: object) -> object:
    # `openapi: ./openapi.yaml` is the short form of `openapi: {spec: ./openapi.yaml}`.
    if isinstance(value, str | Path):
        return {"spec": value}
    if value is not None and not isinstance(value, dict | OpenAPISettings):
        raise ValueError("write the spec's path (openapi: ./openapi.yaml) or a mapping with 'spec'")
    return value


class OpenAPISettings(Model):
    """Stage 10: requests validated against the API's OpenAPI description."""

    spec: Path = Field(description="the OpenAPI 3.0 or 3.1 file, relative to the policy file")
    mode: StageMode = "enforce"
    max_string_length: int = Field(
        default=4096,
        ge=1,
        le=100 * 1024 * 1024,
        description="maxLength given to every string schema that has none",
    )
    unknown_query: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="query parameters the operation does not declare: refuse (400) or allow",
    )


class Policy(Model):
    """A whole policy file."""

    apishield: Literal[1] = Field(description="format version of this file")
    mode: Literal["production", "development"] = "production"
    listen: Listen = Listen()
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    state: State = State()
    upstream: Upstream | None = None
    cors: Cors | None = None
    content: Content = Content()
    response: Response = Response()
    request_id: RequestIdSettings = RequestIdSettings()
    identity: IdentitySettings | None = None
    inspection: InspectionSettings = InspectionSettings()
    limits: LimitSettings = LimitSettings()
    versions: list[Version] = []
    routes: list[Route] = []
    openapi: Annotated[
        OpenAPISettings | None,
        BeforeValidator(_openapi_shorthand, json_schema_input_type=str | OpenAPISettings | None),
    ] = None


def cross_check(policy: Policy) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks that span several entries; each result is (field path, message)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen_names: dict[str, int] = {}
    header_name: str | None = None
    defaults = 0
    for i, version in enumerate(policy.versions):
        if version.label in seen_names:
            problems.append((("versions", i), f"the name {version.label!r} is used twice"))
        seen_names[version.label] = i
        if version.header:
            name = next(iter(version.header))
            if header_name is not None and name != header_name:
                problems.append((("versions", i, "header"), "all header versions share one header"))
            header_name = name
        if version.default:
            defaults += 1
            if defaults > 1:
                problems.append((("versions", i, "default"), "only one version can be the default"))
    header_labels = {v.label for v in policy.versions if v.header}
    seen: dict[tuple[str, str, str | None], int] = {}
    for i, route in enumerate(policy.routes):
        if route.version is not None and route.version not in header_labels:
            problems.append(
                (("routes", i, "version"), f"{route.version!r} is not the name of a header version")
            )
        shape = _PARAM.sub("{}", route.path)
        for method in route.methods:
            key = (shape, method, route.version)
            if key in seen:
                problems.append(
                    (("routes", i), f"{method} {route.path} is already routes[{seen[key]}]")
                )
            seen[key] = i
    return problems
