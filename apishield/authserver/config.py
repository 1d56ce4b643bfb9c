"""Settings of the built-in authorization server, and where its endpoints live.

The issuer identifier is an ``https`` URL without path, query or fragment (RFC 8414 §2), so
the metadata document sits at ``/.well-known/oauth-authorization-server`` (RFC 8414 §3.1) and
every endpoint is the issuer plus a fixed path. Plain ``http`` is accepted for loopback hosts
only (development, tests). Lifetimes come from the policy's ``BuiltinIssuer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from apishield.errors import ConfigError
from apishield.identity.settings import BuiltinIssuer
from apishield.policy.addresses import is_loopback_host
from apishield.ratelimit.rates import Rate

METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH = "/oauth2/authorize"
LOGIN_PATH = "/oauth2/login"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
REVOKE_PATH = "/oauth2/revoke"
INTROSPECT_PATH = "/oauth2/introspect"
JWKS_PATH = "/oauth2/jwks"
LOGIN_STYLE_PATH = "/oauth2/login.css"

MAX_ACCESS_TOKEN_TTL = 3600.0  # AUTH 19: at most one hour
MAX_CODE_TTL = 60.0  # AUTH 16
DEFAULT_PUBLISH_LEAD = 600.0  # a new key is published this long before it signs
DEFAULT_LEEWAY = 60.0  # clock skew allowed to verifiers and client assertions


def validate_issuer(url: str) -> str:
    """The issuer identifier ``url`` without a trailing ``/``; ``ConfigError`` when it is not
    an ``https`` origin (``http`` only on loopback) without path, query or fragment."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))
    if (
        not host
        or not secure
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "#" in url
        or "?" in url
        or parts.username is not None
        or parts.password is not None
    ):
        raise ConfigError(
            f"issuer {url!r} must be an https:// origin such as https://api.example.com "
            "(http:// only on loopback), without path, query or fragment (RFC 8414 §2)"
        )
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(f"issuer {url!r} has an invalid port") from None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def default_issuer(listen_address: str) -> str:
    """The issuer of a gateway listening on loopback (development): ``https://localhost:PORT``.
    Anywhere else the issuer must be configured: the gateway cannot know its public name."""
    host, _, port = listen_address.rpartition(":")
    if not is_loopback_host(host.strip("[]")):
        raise ConfigError(
            f"the built-in issuer needs its public URL (issuer: https://api.example.com): "
            f"the gateway listens on {listen_address}, not on loopback"
        )
    return f"https://localhost:{port}" if port != "443" else "https://localhost"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What the authorization server needs to know besides its store and secret key.

    ``introspectors``: client ids that may introspect any token (resource servers); every
    other client sees only tokens issued to itself (RFC 7662 §4). ``development`` adds an
    ``error_description`` to OAuth error responses.
    """

    issuer: str
    access_token_ttl: float = 600.0
    refresh_token_ttl: float = 30 * 24 * 3600.0
    code_ttl: float = 60.0
    login_ttl: float = 600.0  # how long a login form may stay open
    key_publish_lead: float = DEFAULT_PUBLISH_LEAD
    leeway: float = DEFAULT_LEEWAY
    introspectors: frozenset[str] = frozenset()
    development: bool = False
    login_user_rate: Rate = field(default_factory=lambda: Rate(5, 60))
    login_ip_rate: Rate = field(default_factory=lambda: Rate(20, 60))
    max_body: int = 64 * 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "issuer", validate_issuer(self.issuer))
        if not 0 < self.access_token_ttl <= MAX_ACCESS_TOKEN_TTL:
            raise ConfigError("access_token_ttl must be more than 0 and at most 1h (AUTH 19)")
        if not 0 < self.code_ttl <= MAX_CODE_TTL:
            raise ConfigError("code_ttl must be more than 0 and at most 60s (AUTH 16)")
        if self.refresh_token_ttl <= 0 or self.login_ttl <= 0 or self.key_publish_lead < 0:
            raise ConfigError("refresh_token_ttl, login_ttl and key_publish_lead must be positive")

    @classmethod
    def from_settings(
        cls,
        settings: BuiltinIssuer,
        issuer: str,
        *,
        development: bool = False,
        introspectors: Iterable[str] = (),
    ) -> ServerConfig:
        """The configuration for the policy's ``builtin: true`` issuer entry."""
        return cls(
            issuer=issuer,
            access_token_ttl=settings.access_token_ttl,
            refresh_token_ttl=settings.refresh_token_ttl,
            code_ttl=settings.code_ttl,
            development=development,
            introspectors=frozenset(introspectors),
        )

    def url(self, path: str) -> str:
        """The absolute URL of one of the server's paths."""
        return self.issuer + path

    @property
    def token_endpoint(self) -> str:
        return self.url(TOKEN_PATH)
