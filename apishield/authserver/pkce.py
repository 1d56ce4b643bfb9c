"""Proof Key for Code Exchange (RFC 7636), ``S256`` only (RFC 9700 §2.1.1, AUTH 14).

``plain`` is refused: it protects nothing against an attacker who can read the authorization
request. A code is always bound to a challenge, and the token request must prove it with a
verifier; a verifier where no challenge was made is refused too (the PKCE downgrade of RFC
9700 §4.8.2), as is a challenge that is not the shape an ``S256`` one has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

METHOD = "S256"
# RFC 7636 §4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
# BASE64URL(SHA-256(...)) without padding is always 43 characters (RFC 7636 §4.2).
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def s256(verifier: str) -> str:
    """``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def valid_challenge(challenge: str | None, method: str | None) -> bool:
    """True for an ``S256`` challenge of the right shape (method absent means ``plain``,
    RFC 7636 §4.3, and is refused)."""
    return method == METHOD and challenge is not None and bool(_CHALLENGE.match(challenge))


def verify_pkce(verifier: str | None, challenge: str | None, method: str | None) -> bool:
    """True when ``verifier`` proves ``challenge`` (RFC 7636 §4.6), compared in constant time.

    False without a verifier, without a valid ``S256`` challenge, or for a malformed verifier.
    """
    if verifier is None or not _VERIFIER.match(verifier):
        return False
    if not valid_challenge(challenge, method):
        return False
    assert challenge is not None  # noqa: S101 - checked by valid_challenge
    return hmac.compare_digest(s256(verifier).encode(), challenge.encode())
