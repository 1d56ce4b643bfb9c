"""The ``identity:`` section of the policy: API keys, token issuers, introspection."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from apishield.policy.addresses import is_loopback_host
from apishield.policy.units import Duration

Algorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,15}_[a-z][a-z0-9]{1,15}$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _https_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return value  # a local identity provider (tests, development) may speak plain HTTP
    raise ValueError(f"{what} must be an https:// URL, not {value!r}")


class ApiKeySettings(Model):
    """API keys (AUTH 29-32): accepted in exactly one header, never in the URL."""

    header: str = "X-API-Key"
    prefix: str = Field(
        default="ask_live", description="environment prefix of issued keys, e.g. ask_test"
    )

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        if not _HEADER.match(value) or value.lower() in ("authorization", "cookie", "host"):
            raise ValueError(f"{value!r} cannot carry API keys")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError(f"{value!r} is not a key prefix like 'ask_live' or 'ask_test'")
        return value


class IssuerSettings(Model):
    """An external OAuth 2.0 / OpenID Connect issuer whose access tokens are accepted."""

    issuer: str
    jwks_uri: str | None = None
    discovery: bool = Field(
        default=False, description="find jwks_uri in the issuer's metadata document"
    )
    algorithms: list[Algorithm] = Field(min_length=1)
    audience: str | list[str]
    typ: Literal["at+jwt", "not-id-token"] = Field(
        default="at+jwt",
        description="'at+jwt' (RFC 9068) or, for issuers that send 'JWT', refuse ID tokens",
    )
    roles_claim: str | None = Field(
        default=None, description="dotted path, e.g. realm_access.roles"
    )
    leeway: Duration = 60.0
    max_lifetime: Duration = 3600.0
    jwks_cache_ttl: Duration = 300.0
    jwks_refetch_cooldown: Duration = 30.0
    fetch_timeout: Duration = 5.0

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        return _https_url(value, "issuer")

    @field_validator("jwks_uri")
    @classmethod
    def _check_jwks(cls, value: str | None) -> str | None:
        return None if value is None else _https_url(value, "jwks_uri")

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerSettings:
        if (self.jwks_uri is None) == (not self.discovery):
            raise ValueError("give exactly one of 'jwks_uri' or 'discovery: true'")
        return self


class BuiltinIssuer(Model):
    """apishield's own authorization server at /oauth2."""

    builtin: Literal[True]
    issuer: str | None = Field(
        default=None,
        description="the https origin tokens name as `iss`; default https://localhost:PORT "
        "on a loopback listener (required elsewhere)",
    )
    audience: str | list[str] | None = Field(
        default=None, description="`aud` of issued tokens; default: the issuer"
    )
    introspectors: list[str] = Field(
        default=[], description="client ids allowed to introspect other clients' tokens"
    )
    access_token_ttl: Duration = Field(default=600.0, le=3600.0)
    refresh_token_ttl: Duration = 30 * 24 * 3600.0
    code_ttl: Duration = Field(default=60.0, le=60.0)


class IntrospectionSettings(Model):
    """Opaque tokens checked with RFC 7662 introspection, using the gateway's own credentials."""

    endpoint: str
    client_id: str
    client_secret: str = Field(description="env:NAME or file:PATH, never inline")
    cache_ttl: Duration = 60.0
    fetch_timeout: Duration = 5.0
    audience: str | list[str] | None = Field(
        default=None,
        description="aud an active token must contain on routes without a 'resource' "
        "(AUTH 6); unset, the endpoint's word that a token is active is taken for any API",
    )

    @field_validator("audience")
    @classmethod
    def _check_audience(cls, value: str | list[str] | None) -> str | list[str] | None:
        names = [value] if isinstance(value, str) else value or []
        if value is not None and (not names or any(not n.strip() for n in names)):
            raise ValueError("give one or more non-blank audiences, or leave 'audience' out")
        return value

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _https_url(value, "endpoint")

    @field_validator("client_secret")
    @classmethod
    def _check_secret(cls, value: str) -> str:
        if not value.startswith(("env:", "file:")):
            raise ValueError("give the secret as env:NAME or file:PATH, never inline")
        return value


def _issuer_kind(value: object) -> str:
    # Pick the branch by shape, so an error names the entry's real problem, not both branches'.
    if isinstance(value, dict):
        return "builtin-issuer" if "builtin" in value else "external-issuer"
    return "builtin-issuer" if isinstance(value, BuiltinIssuer) else "external-issuer"


class IdentitySettings(Model):
    api_keys: ApiKeySettings | None = None
    issuers: list[
        Annotated[
            Annotated[IssuerSettings, Tag("external-issuer")]
            | Annotated[BuiltinIssuer, Tag("builtin-issuer")],
            Discriminator(_issuer_kind),
        ]
    ] = []
    introspection: IntrospectionSettings | None = None
    token_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
