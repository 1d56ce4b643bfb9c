"""The authorization endpoint and the login page: exact redirect URIs (AUTH 15), PKCE and no
implicit flow at the front door (AUTH 13, 14), the login form's defences (AUTH 22)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from apishield.authserver import AuthorizationServer, ServerConfig
from apishield.authserver.pkce import s256
from apishield.ratelimit.rates import Rate
from apishield.store import Store
from tests.authserver.conftest import (
    ISSUER,
    PASSWORD,
    REDIRECT,
    Client,
    Harness,
    form_token,
    new_verifier,
    query_of,
)

# The pages do not depend on the backend; the token tests cover both.
pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

LOOPBACK = "http://127.0.0.1:8400/callback"
LOOPBACK6 = "http://[::1]/cb"


@pytest.fixture
async def app(harness: Harness) -> Client:
    # A public client: its registration costs no Argon2id hash.
    return await harness.client(redirect_uris=(REDIRECT, LOOPBACK, LOOPBACK6), auth_method="none")


def assert_error_page(response: httpx.Response, code: str) -> None:
    assert response.status_code == 400, response.text
    assert "location" not in response.headers  # never redirected to an unchecked URI
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert f"Error code: {code}</p>" in response.text


@pytest.mark.parametrize(
    ("requested", "accepted"),
    [
        pytest.param(REDIRECT, True, id="AUTH-15-exact"),
        pytest.param(REDIRECT + "/", False, id="AUTH-15-trailing-slash"),
        pytest.param("https://APP.example.com/cb", False, id="AUTH-15-host-case"),
        pytest.param("https://app.example.com/CB", False, id="AUTH-15-path-case"),
        pytest.param("http://app.example.com/cb", False, id="AUTH-15-scheme"),
        pytest.param("https://app.example.com:443/cb", False, id="AUTH-15-explicit-port"),
        pytest.param("https://app.example.com:8443/cb", False, id="AUTH-15-https-port-varies"),
        pytest.param(REDIRECT + "?next=/admin", False, id="AUTH-15-added-query"),
        pytest.param(REDIRECT + "#x", False, id="AUTH-15-fragment"),
        pytest.param("https://app.example.com/cb/../cb", False, id="AUTH-15-dot-segments"),
        pytest.param("https://app.example.com.evil.example/cb", False, id="AUTH-15-suffix-host"),
        pytest.param("https://evil.example/cb", False, id="AUTH-15-other-host"),
        pytest.param("https://user@app.example.com/cb", False, id="AUTH-15-userinfo"),
        pytest.param("https://app.example.com/cb%2F..", False, id="AUTH-15-encoded-path"),
        pytest.param(LOOPBACK, True, id="AUTH-15-loopback-exact"),
        pytest.param("http://127.0.0.1:51234/callback", True, id="AUTH-15-loopback-port-varies"),
        pytest.param("http://127.0.0.1/callback", True, id="AUTH-15-loopback-no-port"),
        pytest.param("http://[::1]:50505/cb", True, id="AUTH-15-loopback-v6-port-varies"),
        pytest.param("http://127.0.0.1:51234/other", False, id="AUTH-15-loopback-path"),
        pytest.param("http://127.0.0.1:51234/callback?x=1", False, id="AUTH-15-loopback-query"),
        pytest.param("http://localhost:8400/callback", False, id="AUTH-15-loopback-name"),
        pytest.param("https://127.0.0.1:8400/callback", False, id="AUTH-15-loopback-scheme"),
        pytest.param("http://127.0.0.2:8400/callback", False, id="AUTH-15-loopback-other-ip"),
        pytest.param("http://127.0.0.1:0/callback", False, id="AUTH-15-loopback-port-zero"),
        pytest.param("http://u@127.0.0.1:1/callback", False, id="AUTH-15-loopback-userinfo"),
    ],
)
async def test_redirect_uri(harness: Harness, app: Client, requested: str, accepted: bool) -> None:
    page = await harness.login_form(
        app, redirect_uri=requested, code_challenge=s256(new_verifier())
    )
    if accepted:
        assert page.status_code == 200 and 'name="txn"' in page.text
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(requested))
        assert f"form-action 'self' {origin};" in page.headers["content-security-policy"]
    else:
        assert_error_page(page, "redirect_uri_mismatch")


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("unknown-client", id="AUTH-15-unknown-client-page"),
        pytest.param("no-redirect-uri", id="AUTH-15-missing-redirect-uri-page"),
        pytest.param("repeated-parameter", id="AUTH-15-repeated-parameter-page"),
        pytest.param("client-without-code-grant", id="AUTH-15-client-without-code-grant"),
    ],
)
async def test_error_page_never_redirects(harness: Harness, app: Client, case: str) -> None:
    challenge = s256(new_verifier())
    if case == "unknown-client":
        response = await harness.http.get(
            "/oauth2/authorize",
            params={"client_id": "nope", "redirect_uri": REDIRECT, "response_type": "code"},
        )
    elif case == "no-redirect-uri":
        response = await harness.http.get(
            "/oauth2/authorize", params={"client_id": app.id, "response_type": "code"}
        )
    elif case == "client-without-code-grant":
        machine = await harness.machine()
        response = await harness.login_form(machine, code_challenge=challenge)
    else:
        response = await harness.http.get(
            f"/oauth2/authorize?client_id={app.id}&redirect_uri={REDIRECT}&response_type=code"
            f"&code_challenge={challenge}&code_challenge_method=S256&state=a&state=b"
        )
    expected = {
        "unknown-client": "invalid_client",
        "no-redirect-uri": "redirect_uri_mismatch",
        "client-without-code-grant": "invalid_client",
        "repeated-parameter": "invalid_request",
    }
    assert_error_page(response, expected[case])


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param(
            {"response_type": "token"}, "unsupported_response_type", id="AUTH-13-no-implicit"
        ),
        pytest.param({"code_challenge": None}, "invalid_request", id="AUTH-14-challenge-required"),
        pytest.param(
            {"code_challenge_method": "plain"}, "invalid_request", id="AUTH-14-plain-refused"
        ),
        pytest.param(
            {"code_challenge_method": None}, "invalid_request", id="AUTH-14-method-defaults-plain"
        ),
        pytest.param({"code_challenge": "short"}, "invalid_request", id="AUTH-14-bad-challenge"),
        pytest.param(
            {"scope": "orders:read admin"}, "invalid_scope", id="AUTH-18-scope-at-authorize"
        ),
        pytest.param(
            {"resource": "https://evil.example"},
            "invalid_target",
            id="AUTH-18-resource-at-authorize",
        ),
    ],
)
async def test_error_redirect(
    harness: Harness, app: Client, params: dict[str, str | None], error: str
) -> None:
    query = {
        "response_type": "code",
        "client_id": app.id,
        "redirect_uri": REDIRECT,
        "code_challenge": s256(new_verifier()),
        "code_challenge_method": "S256",
        "state": "st-9",
    }
    for name, value in params.items():
        if value is None:
            query.pop(name)
        else:
            query[name] = value
    response = await harness.http.get("/oauth2/authorize", params=query)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    assert query_of(location) == {"error": error, "state": "st-9", "iss": ISSUER}


async def test_login_page_headers(harness: Harness, app: Client) -> None:
    """AUTH-22: CSP with frame-ancestors 'none', Referrer-Policy, a __Host- cookie."""
    page = await harness.login_form(app, code_challenge=s256(new_verifier()))
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self' https://app.example.com",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "style-src 'sha256-" in csp and "unsafe-inline" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-apishield-login=")
    for attribute in ("Path=/", "Secure", "HttpOnly", "SameSite=Strict"):
        assert attribute in cookie
    assert "domain" not in cookie.lower()
    assert "<script" not in page.text.lower()
    assert 'method="post" action="/oauth2/login"' in page.text


async def test_login_success_redirects_with_code(harness: Harness, app: Client) -> None:
    """AUTH-22-303-after-post: the answer to the POST is a 303 to the client."""
    await harness.user()
    answer = await harness.sign_in(app, state="s&t=1")
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = query_of(location)
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == "s&t=1" and query["iss"] == ISSUER
    assert "Max-Age=0" in answer.headers["set-cookie"]


async def _failed_page(harness: Harness, answer: httpx.Response) -> str:
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/oauth2/login?txn=") and location.endswith("&e=failed")
    page = await harness.http.get(location)
    assert page.status_code == 200
    return page.text.replace(form_token(page.text), "TXN")


@pytest.mark.parametrize(
    "mode",
    [pytest.param("message-and-work", id="AUTH-22-same-message-unknown-user-wrong-password")],
)
async def test_same_answer_for_unknown_user(
    harness: Harness, app: Client, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    from apishield.store import hashing

    await harness.user()
    calls: list[str] = []
    original = hashing.verify_secret_sync

    def counting(encoded: str, secret: str) -> bool:
        calls.append("verify")
        return original(encoded, secret)

    monkeypatch.setattr(hashing, "verify_secret_sync", counting)
    wrong = await _failed_page(harness, await harness.sign_in(app, password="not the password"))
    work_wrong = len(calls)
    unknown = await _failed_page(harness, await harness.sign_in(app, username="nobody"))
    work_unknown = len(calls) - work_wrong
    assert wrong == unknown and "Wrong username or password." in wrong
    # the unknown user costs the same Argon2id verification (a dummy hash) as a wrong password
    assert work_wrong == work_unknown == 1, mode


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param("no-cookie", id="AUTH-22-csrf-no-cookie"),
        pytest.param("other-cookie", id="AUTH-22-csrf-token-of-another-session"),
        pytest.param("tampered", id="AUTH-22-csrf-tampered-request"),
        pytest.param("no-token", id="AUTH-22-csrf-no-token"),
        pytest.param("expired", id="AUTH-22-csrf-expired"),
        pytest.param("cross-site", id="AUTH-22-csrf-cross-site-post"),
    ],
)
async def test_login_csrf(harness: Harness, app: Client, attack: str) -> None:
    await harness.user()
    page = await harness.login_form(app, code_challenge=s256(new_verifier()))
    token = form_token(page.text)
    headers = {"sec-fetch-site": "same-origin"}
    if attack == "no-cookie":
        harness.http.cookies.clear()
    elif attack == "other-cookie":
        await harness.login_form(app, code_challenge=s256(new_verifier()))  # a new cookie
    elif attack == "tampered":
        payload, mac = token.split(".")
        token = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac
    elif attack == "no-token":
        token = ""
    elif attack == "expired":
        harness.clock.advance(harness.config.login_ttl + 1)
    else:
        headers = {"sec-fetch-site": "cross-site"}
    answer = await harness.http.post(
        "/oauth2/login",
        data={"txn": token, "username": "ada", "password": PASSWORD},
        headers=headers,
    )
    assert_error_page(answer, "csrf_invalid")
    assert "code=" not in answer.headers.get("location", "")


@pytest.fixture
async def strict(
    store: Store, harness: Harness
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    """A server whose login throttles are 2 attempts a minute per user and 3 per address."""
    config = ServerConfig(issuer=ISSUER, login_user_rate=Rate(2, 60), login_ip_rate=Rate(3, 60))
    server = AuthorizationServer(store, harness.keys, config)
    transports = {}
    for ip in ("198.51.100.1", "198.51.100.2"):
        transports[ip] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server, client=(ip, 1)), base_url=ISSUER
        )
    harness.http = transports["198.51.100.1"]
    try:
        yield harness, transports["198.51.100.2"]
    finally:
        for client in transports.values():
            await client.aclose()
        await server.aclose()


async def _attempt(h: Harness, app: Client, http: httpx.AsyncClient, username: str) -> str:
    page = await http.get(
        "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": app.id,
            "redirect_uri": REDIRECT,
            "code_challenge": s256(new_verifier()),
            "code_challenge_method": "S256",
        },
    )
    answer = await http.post(
        "/oauth2/login",
        data={"txn": form_token(page.text), "username": username, "password": "wrong password!"},
    )
    assert answer.status_code == 303
    return answer.headers["location"].rsplit("&e=", 1)[-1]


@pytest.mark.parametrize("scope", [pytest.param("user", id="AUTH-22-throttled-per-user")])
async def test_login_throttled_per_user(
    strict: tuple[Harness, httpx.AsyncClient], app: Client, scope: str
) -> None:
    h, elsewhere = strict
    await h.user()
    assert [await _attempt(h, app, h.http, "ada") for _ in range(2)] == ["failed", "failed"]
    # from another address too: the user name is throttled wherever the attempts come from
    assert await _attempt(h, app, elsewhere, "ada") == "throttled"
    assert await _attempt(h, app, elsewhere, "grace") == "failed", scope


@pytest.mark.parametrize("scope", [pytest.param("ip", id="AUTH-22-throttled-per-ip")])
async def test_login_throttled_per_ip(
    strict: tuple[Harness, httpx.AsyncClient], app: Client, scope: str
) -> None:
    h, elsewhere = strict
    outcomes = [await _attempt(h, app, h.http, f"user{i}") for i in range(4)]
    assert outcomes == ["failed", "failed", "failed", "throttled"]
    assert await _attempt(h, app, elsewhere, "user9") == "failed", scope


async def test_client_disabled_while_signing_in(harness: Harness, app: Client) -> None:
    await harness.user()
    page = await harness.login_form(app, code_challenge=s256(new_verifier()))
    await harness.store.clients.set_disabled(app.id, True)
    answer = await harness.http.post(
        "/oauth2/login",
        data={"txn": form_token(page.text), "username": "ada", "password": PASSWORD},
    )
    assert_error_page(answer, "invalid_client")


async def test_long_state_not_echoed(harness: Harness, app: Client) -> None:
    response = await harness.login_form(
        app, code_challenge=s256(new_verifier()), code_challenge_method="plain", state="s" * 1025
    )
    assert response.status_code == 303
    assert query_of(response.headers["location"]) == {"error": "invalid_request", "iss": ISSUER}
