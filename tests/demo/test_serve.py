"""The demo on the wire: the sample API and the gateway on loopback, over real TLS."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from apishield.demo.credentials import DemoCredentials
from apishield.demo.run import (
    BAD_TOKEN,
    DEMO_REQUESTS,
    INFO_FILE,
    TOKEN_REQUESTS,
    DemoInfo,
    DemoRequestSpec,
    run_demo,
    serve_demo,
)
from apishield.errors import ConfigError

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"


async def start_demo(state_dir: Path, port: int = 0) -> tuple[asyncio.Task[None], DemoInfo]:
    ready: asyncio.Future[DemoInfo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_demo(
            port=port,
            state_dir=state_dir,
            install_signal_handlers=False,
            on_ready=ready.set_result,
        )
    )
    waiters: list[asyncio.Future[Any]] = [ready, task]
    await asyncio.wait(waiters, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        task.result()  # the reason it did not start
        raise AssertionError("the demo did not start")
    return task, ready.result()


async def stop_demo(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoInfo]:
    task, info = await start_demo(tmp_path / "state")
    try:
        yield info
    finally:
        await stop_demo(task)


def client_for(info: DemoInfo) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(info.ca_cert))
    return httpx.AsyncClient(base_url=info.base_url, verify=context, timeout=10)


def credentials_of(info: DemoInfo) -> DemoCredentials:
    assert info.credentials is not None
    return info.credentials


def written_credentials(state_dir: Path) -> DemoCredentials:
    """The credentials as a script reads them from demo.json, not from the running demo."""
    found = DemoCredentials.from_json(json.loads((state_dir / INFO_FILE).read_text()))
    assert found is not None
    return found


def sent_headers(
    spec: DemoRequestSpec, credentials: DemoCredentials, token: str | None = None
) -> dict[str, str]:
    """The headers the printed curl line of ``spec`` sends."""
    headers = dict(spec.headers)
    if spec.credential == "api_key":
        headers["X-API-Key"] = credentials.api_key
    elif spec.credential == "token":
        assert token is not None
        headers["Authorization"] = f"Bearer {token}"
    elif spec.credential == "bad_token":
        headers["Authorization"] = f"Bearer {BAD_TOKEN}"
    return headers


async def send(
    client: httpx.AsyncClient,
    spec: DemoRequestSpec,
    credentials: DemoCredentials,
    token: str | None = None,
) -> httpx.Response:
    return await client.request(
        spec.method,
        spec.path,
        headers=sent_headers(spec, credentials, token),
        content=None if spec.body is None else spec.body.encode(),
    )


async def client_token(client: httpx.AsyncClient, credentials: DemoCredentials) -> str:
    """The printed token request: client credentials in HTTP Basic (RFC 6749 §2.3.1)."""
    issued = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials.client_id, credentials.client_secret),
    )
    assert issued.status_code == 200, issued.text
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["token_type"].lower() == "bearer" and "refresh_token" not in body
    return str(body["access_token"])


async def test_demo_json_says_where_everything_is(demo: DemoInfo, tmp_path: Path) -> None:
    path = tmp_path / "state" / INFO_FILE
    written = json.loads(path.read_text())
    assert demo.browser_sign_in is not None
    assert written == {
        "base_url": demo.base_url,
        "ca_cert": str(demo.ca_cert),
        "upstream_url": demo.upstream_url,
        "credentials": credentials_of(demo).to_json(),
        "browser_sign_in": demo.browser_sign_in.to_json(),
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert written["credentials"]["api_key"].startswith("ask_test_")
    assert demo.base_url.startswith("https://localhost:")
    assert demo.upstream_url.startswith("http://127.0.0.1:")
    assert demo.ca_cert.is_file()
    async with httpx.AsyncClient() as plain:
        upstream = await plain.get(demo.upstream_url + "/health")
    assert upstream.json() == {"status": "ok"}
    assert upstream.headers["server"] == "demo-api/1.0"


async def test_every_guide_request_gets_the_promised_answer(demo: DemoInfo, tmp_path: Path) -> None:
    credentials = written_credentials(tmp_path / "state")
    async with client_for(demo) as client:
        answers = [await send(client, spec, credentials) for spec in DEMO_REQUESTS]
        health = await client.get("/health")
    (
        allowed,
        deprecated,
        anonymous,
        not_own,
        not_found,
        wrong_method,
        too_large,
        wrong_type,
        crash,
    ) = answers
    assert health.status_code == 200 and health.json() == {"status": "ok"}  # public

    assert allowed.status_code == 200
    assert allowed.json()["name"] == "Ada Lovelace"
    assert "server" not in allowed.headers
    assert "x-powered-by" not in allowed.headers
    assert "deprecation" not in allowed.headers

    assert deprecated.status_code == 200
    assert deprecated.json()[0]["customer_name"] == "Ada Lovelace"
    assert "deprecation" in deprecated.headers
    assert "2027" in deprecated.headers["sunset"]
    assert "migrate-to-v2" in deprecated.headers["link"]

    refusals = [
        (anonymous, 401, "authentication_required"),
        (not_own, 403, "object_access_denied"),
        (not_found, 404, "route_not_found"),
        (wrong_method, 405, "method_not_allowed"),
        (too_large, 413, "body_too_large"),
        (wrong_type, 415, "unsupported_media_type"),
        (crash, 500, "upstream_error_hidden"),
    ]
    for response, status, code in refusals:
        assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM)
        assert response.json()["code"] == code
        assert "server" not in response.headers
    assert "www-authenticate" in anonymous.headers
    assert "GET" in wrong_method.headers["allow"]
    assert "Traceback" not in crash.text
    assert "10.0.3.7" not in crash.text


async def test_orders_posted_through_the_gateway_reach_the_api(demo: DemoInfo) -> None:
    key = {"X-API-Key": credentials_of(demo).api_key}
    async with client_for(demo) as client:
        created = await client.post(
            "/v2/orders",
            json={"customer_id": 2, "item": "nanosecond wire", "quantity": 3},
            headers=key,
        )
        assert created.status_code == 201
        order_path = created.headers["location"]
        assert (await client.get(order_path, headers=key)).json()["item"] == "nanosecond wire"
        assert (await client.delete(order_path)).status_code == 401
        assert (await client.delete(order_path, headers=key)).status_code == 204
        assert (await client.get(order_path, headers=key)).status_code == 404


async def test_client_credentials_flow_as_printed(demo: DemoInfo, tmp_path: Path) -> None:
    """The token line, then each request made with $TOKEN: 200, 403 for the missing scope,
    401 for a token that is not valid."""
    credentials = written_credentials(tmp_path / "state")
    async with client_for(demo) as client:
        token = await client_token(client, credentials)
        allowed, no_scope, bad = [
            await send(client, spec, credentials, token) for spec in TOKEN_REQUESTS
        ]
    assert allowed.status_code == 200, allowed.text
    assert [order["id"] for order in allowed.json()["orders"]][:2] == [1, 2]
    assert (no_scope.status_code, no_scope.json()["code"]) == (403, "scope_missing")
    assert no_scope.headers["www-authenticate"].endswith('error="insufficient_scope"')
    assert (bad.status_code, bad.json()["code"]) == (401, "token_invalid")
    assert bad.headers["www-authenticate"].endswith('error="invalid_token"')


async def test_browser_sign_in_as_printed(demo: DemoInfo, tmp_path: Path) -> None:
    """The printed URL → login page → sign in (with its CSRF token) → redirect with a code →
    exchange with the verifier from demo.json → a user's token the API accepts."""
    written = json.loads((tmp_path / "state" / INFO_FILE).read_text())
    credentials = written_credentials(tmp_path / "state")
    sign_in = written["browser_sign_in"]
    async with client_for(demo) as browser:
        page = await browser.get(sign_in["authorize_url"])
        assert page.status_code == 200, page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        (txn,) = re.findall(r'name="txn" value="([^"]+)"', page.text)
        (action,) = re.findall(r'<form method="post" action="([^"]+)"', page.text)
        signed_in = await browser.post(
            action,
            data={"txn": txn, "username": credentials.username, "password": credentials.password},
            # what a browser adds to a form posted from the login page itself
            headers={"origin": demo.base_url, "sec-fetch-site": "same-origin"},
        )
        assert signed_in.status_code == 303, signed_in.text
        location = urlsplit(signed_in.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == credentials.redirect_uri
        query = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert query["state"] == sign_in["state"]
        assert query["iss"] == demo.base_url  # RFC 9207

        async with client_for(demo) as app:  # the client app, not the browser
            exchanged = await app.post(
                "/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "client_id": credentials.browser_client_id,
                    "redirect_uri": credentials.redirect_uri,
                    "code_verifier": sign_in["code_verifier"],
                    "code": query["code"],
                },
            )
            assert exchanged.status_code == 200, exchanged.text
            tokens = exchanged.json()
            assert set(tokens["scope"].split()) == {"customers:read", "orders:read"}
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            orders = await app.get("/v2/orders", headers=auth)
            customers = await app.get("/v2/customers", headers=auth)
            not_own = await app.get("/v2/customers/1", headers=auth)
            writing = await app.post(
                "/v2/orders", json={"customer_id": 1, "item": "x", "quantity": 1}, headers=auth
            )
            again = await app.post(
                "/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "client_id": credentials.browser_client_id,
                    "redirect_uri": credentials.redirect_uri,
                    "code_verifier": sign_in["code_verifier"],
                    "code": query["code"],
                },
            )
    assert orders.status_code == 200 and customers.status_code == 200
    assert (not_own.status_code, not_own.json()["code"]) == (403, "object_access_denied")
    assert (writing.status_code, writing.json()["code"]) == (403, "scope_missing")
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # single use


async def test_a_second_start_reuses_demo_json(tmp_path: Path) -> None:
    """No new secrets on a later start: the same key, client secret and password still work."""
    state = tmp_path / "state"
    task, first = await start_demo(state)
    try:
        before = written_credentials(state)
    finally:
        await stop_demo(task)
    task, second = await start_demo(state)
    try:
        assert written_credentials(state) == before == credentials_of(second)
        assert second.browser_sign_in is not None and first.browser_sign_in is not None
        # a fresh PKCE verifier per start; the secrets stay
        assert second.browser_sign_in.code_verifier != first.browser_sign_in.code_verifier
        async with client_for(second) as client:
            by_key = await client.get("/v2/customers/1", headers={"X-API-Key": before.api_key})
            token = await client_token(client, before)
            by_token = await client.get("/v2/orders", headers={"Authorization": f"Bearer {token}"})
        assert by_key.status_code == 200 and by_token.status_code == 200
    finally:
        await stop_demo(task)


async def test_credentials_that_no_longer_verify_are_replaced(tmp_path: Path) -> None:
    """demo.json edited by hand (or from another store): nothing in it that fails is printed."""
    state = tmp_path / "state"
    task, _ = await start_demo(state)
    await stop_demo(task)
    path = state / INFO_FILE
    written = json.loads(path.read_text())
    stale = {**written["credentials"], "client_secret": "x" * 43, "password": "y" * 16}
    path.write_text(json.dumps({**written, "credentials": stale}))
    task, info = await start_demo(state)
    try:
        fresh = credentials_of(info)
        assert fresh.api_key == stale["api_key"]  # still valid: kept
        assert fresh.client_secret != stale["client_secret"]
        assert fresh.password != stale["password"]
        assert written_credentials(state) == fresh
        async with client_for(info) as client:
            await client_token(client, fresh)
    finally:
        await stop_demo(task)


async def test_a_taken_port_is_a_config_error(demo: DemoInfo, tmp_path: Path) -> None:
    port = int(demo.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match="cannot listen"):
        await start_demo(tmp_path / "second", port=port)


def test_run_demo_exits_2_when_the_port_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_demo(port=port, state_dir=tmp_path) == 2
    assert f"apishield demo: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_run_demo_prints_the_guide_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    script = "import sys; from pathlib import Path; from apishield.demo.run import run_demo; "
    script += "sys.exit(run_demo(port=0, state_dir=Path(sys.argv[1])))"
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state_dir / INFO_FILE).exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "demo.json was not written"
            time.sleep(0.05)
        info = json.loads((state_dir / INFO_FILE).read_text())
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.startswith(f"apishield demo: the gateway is on {info['base_url']},")
    key = info["credentials"]["api_key"]
    assert (
        f"--cacert {info['ca_cert']} -H 'X-API-Key: {key}' {info['base_url']}/v2/customers/1" in out
    )
    for secret in (key, info["credentials"]["client_secret"], info["credentials"]["password"]):
        assert secret not in err  # the log lines carry none of the demo's secrets


STATUS = re.compile(r"^HTTP/[0-9.]+ ([0-9]{3})", re.MULTILINE)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_printed_commands_work_in_a_shell(tmp_path: Path) -> None:
    """Every printed command line, run as printed with the real curl in one shell: each
    answers with the status its title promises (the token line sets $TOKEN for the next).
    The demo's log lines carry none of the secrets used (AUTH 38)."""
    state_dir = tmp_path / "state"
    script = "import sys; from pathlib import Path; from apishield.demo.run import run_demo; "
    script += "sys.exit(run_demo(port=0, state_dir=Path(sys.argv[1])))"
    log = tmp_path / "demo.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith("Stop with Ctrl-C.")):
            line = process.stdout.readline()
            assert line, f"the demo stopped early: {log.read_text()[-2000:]}"
            lines.append(line)
        titles = [line[2:5] for line in lines if re.match(r"# [0-9]{3} ", line)]
        commands = [
            line.rstrip("\n")
            for line in lines
            if line.startswith(("curl -i", "{ printf", "TOKEN=")) and "$CODE" not in line
        ]
        shell = "\n".join(f"echo '=== next'; {command}" for command in commands)
        shell += '\necho; echo "=== token $TOKEN"'
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        done = subprocess.run(
            ["sh", "-c", shell], capture_output=True, text=True, env=env, timeout=120, check=False
        )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    answers = [STATUS.findall(part)[:1] for part in done.stdout.split("=== next")[1:]]
    statuses = [found[0] for found in answers if found]
    assert len(commands) == len(titles) + 1  # the token line prints no status
    assert statuses == titles, done.stdout[-2000:]
    (token,) = re.findall(r"^=== token (\S+)$", done.stdout, re.MULTILINE)
    credentials = written_credentials(state_dir)
    logged = log.read_text()
    assert logged.count('"event":"request"') == len(commands)  # the requests were logged…
    for secret in (token, credentials.api_key, credentials.client_secret, credentials.password):
        assert secret not in logged  # …without the credentials they carried
