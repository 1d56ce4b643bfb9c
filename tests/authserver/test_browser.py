"""The login page in a real browser (AUTH 22, 16): headless Chromium signs in through the form
served by uvicorn over TLS on 127.0.0.1, is sent back to the client with a code, and the code
is exchanged for tokens. No JavaScript is needed, and the page's CSP blocks nothing it uses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import trustme
import uvicorn

from apishield import protect
from apishield.authserver import AuthorizationServer, ServerConfig, builtin_verifier
from apishield.authserver.pkce import s256
from apishield.identity.secretkey import SecretKeys
from apishield.store import Store
from apishield.types import Receive, Scope, Send
from tests.authserver.conftest import API, PASSWORD, REDIRECT, Harness, new_verifier, query_of

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no system Chromium at /usr/bin/chromium"),
]


@contextlib.asynccontextmanager
async def serve(
    store: Store, keys: SecretKeys, tmp_path: Path, mode: str = "server"
) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    """The server under uvicorn with a TLS certificate for 127.0.0.1; yields its issuer URL
    and a client TLS context that trusts the test CA. ``mode="gateway"``: the server as
    ``protect()`` mounts it, behind every stage of the pipeline (CORS on), with its lifespan."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    issuer = f"https://127.0.0.1:{sock.getsockname()[1]}"
    server_app = AuthorizationServer(store, keys, ServerConfig(issuer=issuer))
    app: Any = server_app
    if mode == "gateway":
        policy = {
            "apishield": 1,
            "state": {"dir": str(tmp_path / "state"), "store": store.url},
            "cors": {"origins": ["https://app.example.com"], "credentials": True},
            "identity": {"issuers": [{"builtin": True, "issuer": issuer}]},
        }
        app = protect(not_found, policy)
    config = uvicorn.Config(
        app,
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        lifespan="on" if mode == "gateway" else "off",
        ws="none",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        yield issuer, client_tls
    finally:
        server.should_exit = True
        await task
        sock.close()
        await server_app.aclose()


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected app: nothing of its own is reached in these tests."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("mode", ["server", "gateway"])
async def test_sign_in_in_chromium(harness: Harness, tmp_path: Path, mode: str) -> None:
    """AUTH-22 and AUTH-16 end to end: wrong password, then the right one, then the code.
    Through the gateway, the login form's post (sent with `Origin: null` under the page's
    `Referrer-Policy: no-referrer`) passes the CORS stage as the same-origin request it is."""
    from playwright.async_api import Route, async_playwright

    app = await harness.client()
    await harness.user()
    verifier = new_verifier()
    async with serve(harness.store, harness.keys, tmp_path, mode) as (issuer, client_tls):
        query = urlencode(
            {
                "response_type": "code",
                "client_id": app.id,
                "redirect_uri": REDIRECT,
                "scope": "orders:read",
                "state": "browser-state",
                "code_challenge": s256(verifier),
                "code_challenge_method": "S256",
            }
        )
        landed: list[str] = []
        console: list[str] = []

        async def client_app(route: Route) -> None:
            landed.append(route.request.url)
            await route.fulfill(status=200, content_type="text/html", body="<p>signed in</p>")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                context = await browser.new_context(
                    ignore_https_errors=True, java_script_enabled=False
                )
                await context.route("https://app.example.com/**", client_app)
                page = await context.new_page()
                page.on("console", lambda message: console.append(message.text))
                await page.goto(f"{issuer}/oauth2/authorize?{query}")
                assert await page.title() == "Sign in"
                await page.fill("#username", "ada")
                await page.fill("#password", "not the password")
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{issuer}/oauth2/login?**")
                assert "Wrong username or password." in await page.inner_text("body")
                await page.fill("#username", "ada")
                await page.fill("#password", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{REDIRECT}?**")
                cookies = await context.cookies(issuer)
            finally:
                await browser.close()
        assert landed and landed[-1].startswith(REDIRECT + "?")
        answer = query_of(landed[-1])
        assert answer["state"] == "browser-state" and answer["iss"] == issuer
        assert not any("Content Security Policy" in line for line in console), console
        assert all(c["value"] == "" for c in cookies if c["name"] == "__Host-apishield-login")

        async with httpx.AsyncClient(verify=client_tls) as http:
            response = await http.post(
                f"{issuer}/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": answer["code"],
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
                headers=app.auth(),
            )
        assert response.status_code == 200, response.text
        tokens = response.json()
        assert tokens["scope"] == "orders:read" and "refresh_token" in tokens
        verify = builtin_verifier(harness.store, None, issuer, API, clock=harness.unix)
        try:
            principal = await verify.verify_bearer(tokens["access_token"])
        finally:
            await verify.aclose()
        user = await harness.store.users.get_by_username("ada")
        assert user is not None and principal.subject == user.id
