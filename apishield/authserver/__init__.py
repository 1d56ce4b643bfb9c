"""The built-in OAuth 2.0 authorization server (AUTH 13–28).

One pure ASGI application, ``AuthorizationServer``, with the endpoints of RFC 6749 (token,
authorization + login page), RFC 7009 (revocation), RFC 7662 (introspection), RFC 8414
(metadata) and the JWK Set; signing-key rotation (``rotate_signing_keys``, the
``signing-keys`` command); and the seam the gateway verifies its tokens through
(``builtin_verifier``, ``builtin_revocations``).
"""

from __future__ import annotations

from apishield.authserver.config import ServerConfig, default_issuer, validate_issuer
from apishield.authserver.mounting import (
    CLIENT_AUTHENTICATED_PATHS,
    authserver_cors,
    authserver_exclusions,
    authserver_routes,
    mount_authserver,
    with_authserver,
)
from apishield.authserver.server import AuthorizationServer
from apishield.authserver.signing import RotationResult, jwks_document, rotate_signing_keys
from apishield.authserver.verification import (
    StoreKeys,
    builtin_revocations,
    builtin_verifier,
)

__all__ = [
    "AuthorizationServer",
    "CLIENT_AUTHENTICATED_PATHS",
    "RotationResult",
    "ServerConfig",
    "StoreKeys",
    "authserver_cors",
    "authserver_exclusions",
    "authserver_routes",
    "builtin_revocations",
    "builtin_verifier",
    "default_issuer",
    "jwks_document",
    "mount_authserver",
    "rotate_signing_keys",
    "validate_issuer",
    "with_authserver",
]
