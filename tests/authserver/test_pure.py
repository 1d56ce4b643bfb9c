"""The decisions without I/O: PKCE, redirect matching, parameters, issuer, login tokens, key
rotation plans, scopes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from apishield.authserver.config import ServerConfig, default_issuer, validate_issuer
from apishield.authserver.csrf import LoginTokens, LoginTransaction
from apishield.authserver.errors import OAuthError, PageError
from apishield.authserver.http import DuplicateParameter, parse_params
from apishield.authserver.pkce import s256, valid_challenge, verify_pkce
from apishield.authserver.redirects import match_redirect_uri
from apishield.authserver.scopes import grant_resource, grant_scope
from apishield.authserver.signing import KeyChange, choose_signing_key, plan_settle
from apishield.errors import ConfigError
from apishield.store.records import SigningKeyRecord

# RFC 7636 Appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_rfc7636_vector() -> None:
    assert s256(VERIFIER) == CHALLENGE
    assert verify_pkce(VERIFIER, CHALLENGE, "S256")


@pytest.mark.parametrize(
    ("verifier", "challenge", "method"),
    [
        pytest.param(VERIFIER, VERIFIER, "plain", id="AUTH-14-plain"),
        pytest.param(VERIFIER, CHALLENGE, None, id="AUTH-14-method-missing-is-plain"),
        pytest.param(None, CHALLENGE, "S256", id="AUTH-14-no-verifier"),
        pytest.param(VERIFIER, "", "S256", id="AUTH-14-verifier-without-challenge"),
        pytest.param(VERIFIER, None, "S256", id="AUTH-14-no-challenge"),
        pytest.param(VERIFIER[:-1], CHALLENGE, "S256", id="AUTH-14-short-verifier"),
        pytest.param(VERIFIER + "!", CHALLENGE, "S256", id="AUTH-14-verifier-charset"),
        pytest.param(CHALLENGE, CHALLENGE, "S256", id="AUTH-14-challenge-as-verifier"),
        pytest.param(VERIFIER, CHALLENGE.lower(), "S256", id="AUTH-14-case-changed"),
    ],
)
def test_pkce_refused(verifier: str | None, challenge: str | None, method: str | None) -> None:
    assert not verify_pkce(verifier, challenge, method)


def test_challenge_shape() -> None:
    assert valid_challenge(CHALLENGE, "S256")
    assert not valid_challenge(CHALLENGE + "A", "S256")
    assert not valid_challenge(CHALLENGE, "s256")


REGISTERED = ["https://app.example.com/cb", "http://127.0.0.1:8400/cb", "http://[::1]/cb?x=1"]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        pytest.param("https://app.example.com/cb", True, id="AUTH-15-exact"),
        pytest.param("https://app.example.com/cb?", False, id="AUTH-15-empty-query"),
        pytest.param("https://app.example.com//cb", False, id="AUTH-15-double-slash"),
        pytest.param("https://app.example.com/cb;x", False, id="AUTH-15-path-parameter"),
        pytest.param("https://app.example.com:8400/cb", False, id="AUTH-15-https-port"),
        pytest.param("http://127.0.0.1:1/cb", True, id="AUTH-15-loopback-any-port"),
        pytest.param("http://127.0.0.1:65535/cb", True, id="AUTH-15-loopback-high-port"),
        pytest.param("http://127.0.0.1:65536/cb", False, id="AUTH-15-loopback-bad-port"),
        pytest.param("http://127.0.0.1:/cb", False, id="AUTH-15-loopback-empty-port"),
        pytest.param("http://127.0.0.1:80a/cb", False, id="AUTH-15-loopback-port-junk"),
        pytest.param("http://127.0.0.1.evil.example:1/cb", False, id="AUTH-15-loopback-prefix"),
        pytest.param("http://[::1]:9/cb?x=1", True, id="AUTH-15-loopback-v6-query-kept"),
        pytest.param("http://[::1]:9/cb?x=2", False, id="AUTH-15-loopback-v6-query-changed"),
        pytest.param("http://[::1]:9/cb?x=1#f", False, id="AUTH-15-loopback-fragment"),
        pytest.param("http://[0:0:0:0:0:0:0:1]:9/cb?x=1", False, id="AUTH-15-loopback-spelling"),
    ],
)
def test_match_redirect_uri(requested: str, expected: bool) -> None:
    assert (match_redirect_uri(requested, REGISTERED) == requested) is expected


def test_params() -> None:
    params = parse_params(b"a=1&b=&resource=x&resource=y&c=%C3%A9")
    assert params.get("a") == "1" and params.get("b") is None and "b" not in params
    assert params.all("resource") == ["x", "y"] and params.get("c") == "é"
    with pytest.raises(DuplicateParameter):
        parse_params("a=1&a=2")
    for bad in (b"a=%ff", "a=é".encode(), b"a=1&" * 70):
        with pytest.raises(ValueError):
            parse_params(bad)


@pytest.mark.parametrize(
    "issuer",
    [
        "http://as.example.com",
        "https://as.example.com/tenant",
        "https://as.example.com?x=1",
        "https://as.example.com#f",
        "https://user@as.example.com",
        "ftp://as.example.com",
        "https://",
    ],
)
def test_issuer_refused(issuer: str) -> None:
    with pytest.raises(ConfigError):
        validate_issuer(issuer)


def test_issuer_accepted() -> None:
    assert validate_issuer("https://AS.example.com/") == "https://as.example.com"
    assert validate_issuer("http://127.0.0.1:8443") == "http://127.0.0.1:8443"
    assert ServerConfig(issuer="https://as.example.com:8443").token_endpoint == (
        "https://as.example.com:8443/oauth2/token"
    )


def test_default_issuer() -> None:
    assert default_issuer("127.0.0.1:8443") == "https://localhost:8443"
    assert default_issuer("[::1]:443") == "https://localhost"
    for address in ("0.0.0.0:8443", "10.0.0.5:443", "api.example.com:443"):
        with pytest.raises(ConfigError):
            default_issuer(address)


def test_login_token() -> None:
    tokens = LoginTokens(secrets.token_bytes(32))
    transaction = LoginTransaction("c", "https://a/cb", ("s",), ("https://r",), "x" * 43, None, 100)
    sealed = tokens.seal(transaction, "cookie-1")
    assert tokens.open(sealed, "cookie-1", now=99) == transaction
    for token, cookie, now in (
        (sealed, "cookie-2", 99),
        (sealed, "cookie-1", 100),
        (sealed + "A", "cookie-1", 99),
        (LoginTokens(secrets.token_bytes(32)).seal(transaction, "cookie-1"), "cookie-1", 99),
        ("é.é", "cookie-1", 99),
        (None, "cookie-1", 99),
    ):
        with pytest.raises(PageError):
            tokens.open(token, cookie, now=now)


T0 = datetime(2030, 1, 1, tzinfo=UTC)


def key(
    kid: str, state: str, not_before: float = 0, retire_after: float | None = None
) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=kid,
        alg="ES256",
        private_key=b"",
        public_jwk={},
        state=state,
        created_at=T0,
        not_before=T0 + timedelta(seconds=not_before),
        retire_after=None if retire_after is None else T0 + timedelta(seconds=retire_after),
    )


def test_plan_settle() -> None:
    delay = timedelta(seconds=660)
    keys = [key("a", "active"), key("b", "next", not_before=100), key("c", "retiring", 0, 50)]
    early = plan_settle(keys, now=T0 + timedelta(seconds=10), retire_delay=delay)
    assert early == []
    assert choose_signing_key(keys, early, now=T0 + timedelta(seconds=10)) == "a"
    now = T0 + timedelta(seconds=100)
    changes = plan_settle(keys, now=now, retire_delay=delay)
    assert changes == [
        KeyChange("b", "active"),
        KeyChange("a", "retiring", now + delay),
        KeyChange("c", "retired"),
    ]
    assert choose_signing_key(keys, changes, now=now) == "b"
    assert choose_signing_key([], [], now=now) is None


def test_scopes() -> None:
    assert grant_scope(None, ("a", "b")) == ("a", "b")
    assert grant_scope("b a b", ("a", "b")) == ("b", "a")
    for bad in ("a c", "a  b", 'a"'):
        with pytest.raises(OAuthError):
            grant_scope(bad, ("a", "b"))
    assert grant_resource([], ("https://r",)) == ("https://r",)
    with pytest.raises(OAuthError):
        grant_resource(["https://x"] * 9, ("https://x",))
