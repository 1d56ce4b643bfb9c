"""Authorization server metadata (RFC 8414; AUTH 21) and the JWK Set document (RFC 7517 §5).

The metadata says what the server does and nothing it does not: the code flow with PKCE
``S256`` only, three grants, no implicit ``token`` response type, issuer identification in
authorization responses (RFC 9207), and the client authentication methods per endpoint.
"""

from __future__ import annotations

from typing import Any

from apishield.authserver.clientauth import ASSERTION_ALGORITHMS
from apishield.authserver.config import (
    AUTHORIZE_PATH,
    INTROSPECT_PATH,
    JWKS_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    ServerConfig,
)
from apishield.authserver.grants import GRANT_TYPES
from apishield.authserver.http import Response, json_response
from apishield.authserver.signing import ALGORITHM

CONFIDENTIAL_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
PUBLISHED_CACHE = [(b"cache-control", b"public, max-age=300")]  # < the key publish lead


def metadata_document(config: ServerConfig) -> dict[str, Any]:
    """The RFC 8414 §2 document for ``config``."""
    return {
        "issuer": config.issuer,
        "authorization_endpoint": config.url(AUTHORIZE_PATH),
        "token_endpoint": config.url(TOKEN_PATH),
        "jwks_uri": config.url(JWKS_PATH),
        "revocation_endpoint": config.url(REVOKE_PATH),
        "introspection_endpoint": config.url(INTROSPECT_PATH),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        # "none": public clients (native apps), whose codes PKCE protects.
        "token_endpoint_auth_methods_supported": [*CONFIDENTIAL_METHODS, "none"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": [*CONFIDENTIAL_METHODS, "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "authorization_response_iss_parameter_supported": True,
        "resource_indicators_supported": True,
        "access_token_signing_alg_values_supported": [ALGORITHM],
    }


def metadata_response(config: ServerConfig) -> Response:
    response = json_response(200, metadata_document(config))
    response.headers = [h for h in response.headers if h[0] not in (b"cache-control", b"pragma")]
    return response.with_headers(PUBLISHED_CACHE)


def jwks_response(document: dict[str, Any]) -> Response:
    response = json_response(200, document)
    response.headers = [
        (b"content-type", b"application/jwk-set+json") if name == b"content-type" else (name, value)
        for name, value in response.headers
        if name not in (b"cache-control", b"pragma")
    ]
    return response.with_headers(PUBLISHED_CACHE)
