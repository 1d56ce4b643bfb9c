"""The login form's transaction token: CSRF protection by a signed double-submit cookie.

When the login form is shown, the browser gets a fresh random cookie (``__Host-`` prefixed:
``Secure``, ``Path=/``, no ``Domain``, so no sibling subdomain can plant one; ``HttpOnly``;
``SameSite=Strict``) and the form carries a token that holds the checked authorization
request, its expiry and the SHA-256 of that cookie, MACed with a key derived from the
gateway's secret key (HMAC-SHA-256). A POST is accepted only with a token whose MAC holds,
whose time has not run out, and whose cookie digest matches the cookie the browser sent
(constant-time comparisons). A cross-site attacker can neither read the cookie nor make a
token for it (OWASP CSRF Prevention Cheat Sheet, "Signed Double-Submit Cookie").

The token is not secret (it carries what the authorization URL carried) and holds no
credential; tampering with the request it carries breaks the MAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass

from apishield.authserver.errors import csrf_page
from apishield.identity.secretkey import derive_key

COOKIE = "__Host-apishield-login"
_CONTEXT = b"apishield login v1|"


@dataclass(frozen=True, slots=True)
class LoginTransaction:
    """A checked authorization request waiting for the user to sign in."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    resource: tuple[str, ...]
    code_challenge: str
    state: str | None
    expires: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def login_key(refresh_token_pepper: bytes) -> bytes:
    """The MAC key of login tokens: an HKDF subkey of one of the secret key's subkeys, so
    it is the same on every gateway instance and independent of every other key."""
    return derive_key(refresh_token_pepper, "login csrf v1")


def new_cookie() -> str:
    """A fresh cookie value: 128 random bits."""
    return secrets.token_urlsafe(16)


def cookie_header(value: str, *, max_age: int) -> bytes:
    """``Set-Cookie`` for the login cookie (``max_age`` 0 deletes it)."""
    return (
        f"{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ).encode("ascii")


class LoginTokens:
    """Seals and opens login transaction tokens with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the login token key needs 32 bytes")
        self._key = key

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()

    def seal(self, transaction: LoginTransaction, cookie: str) -> str:
        """The form token for ``transaction``, bound to ``cookie``."""
        document = asdict(transaction)
        document["c"] = hashlib.sha256(cookie.encode()).hexdigest()
        payload = _b64(json.dumps(document, separators=(",", ":")).encode())
        return f"{payload}.{_b64(self._mac(payload))}"

    def open(self, token: str | None, cookie: str | None, *, now: float) -> LoginTransaction:
        """The transaction in ``token``; ``csrf_invalid`` when the MAC, the time or the
        cookie binding does not hold."""
        if token is None or cookie is None:
            raise csrf_page("missing_cookie_or_token")
        payload, _, mac = token.partition(".")
        try:
            valid = payload.isascii() and hmac.compare_digest(_unb64(mac), self._mac(payload))
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise csrf_page("token_mac")
        try:
            document = json.loads(_unb64(payload))
            bound = str(document.pop("c"))
            transaction = LoginTransaction(
                client_id=str(document["client_id"]),
                redirect_uri=str(document["redirect_uri"]),
                scope=tuple(str(s) for s in document["scope"]),
                resource=tuple(str(r) for r in document["resource"]),
                code_challenge=str(document["code_challenge"]),
                state=None if document["state"] is None else str(document["state"]),
                expires=int(document["expires"]),
            )
        except (ValueError, KeyError, TypeError):
            raise csrf_page("token_payload") from None
        expected = hashlib.sha256(cookie.encode()).hexdigest()
        if not hmac.compare_digest(bound.encode(), expected.encode()):
            raise csrf_page("cookie_mismatch")
        if transaction.expires <= now:
            raise csrf_page("token_expired")
        return transaction
