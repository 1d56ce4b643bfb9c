"""Two gateway processes sharing one PostgreSQL store: a token issued by one is accepted by
both, and a revocation made on one — of an access token (RFC 7009), of an API key (the
``apikeys revoke`` command), of a user (``users disable``, AUTH 28) — reaches the other within
its refresh bound (5 s). The assertion is that the other instance comes to refuse; the delay
is printed for the record, never asserted."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from apishield.authserver.pkce import s256
from apishield.identity.apikeys import ApiKeyManager
from apishield.identity.secretkey import load_secret_keys
from apishield.policy.load import load_policy
from apishield.store import Store, migrate
from tests.processes import gateway_processes, ports_of
from tests.store.backends import drop_schema, postgres_url, run_in_thread, unique_schema

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://as.test"
REDIRECT = "https://app.example.com/cb"
PASSWORD = "correct horse battery staple"
CAP = 20.0  # only stops a broken test from waiting forever

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    ports: list[int]
    policy_file: Path
    store_url: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two gateways on spare loopback ports, one PostgreSQL schema of their own."""
    schema = unique_schema()
    url = postgres_url(schema)
    run_in_thread(migrate(url))
    directory = tmp_path_factory.mktemp("instances")
    policy_file = directory / "apishield.yaml"
    policy_file.write_text(
        "apishield: 1\n"
        "listen: {address: '127.0.0.1:0', tls: 'off'}\n"
        f"state: {{dir: state, store: '{url}'}}\n"
        "identity:\n"
        "  api_keys: {header: X-API-Key, prefix: ask_test}\n"
        f"  issuers: [{{builtin: true, issuer: '{ISSUER}'}}]\n"
        "routes:\n"
        "  - {path: /v1/items, methods: [GET], allow: {scopes: [items:read]}}\n"
    )
    load_secret_keys(load_policy(policy_file).state)  # one key for both, made before they start
    envs = [{"APISHIELD_TEST_POLICY": str(policy_file)}] * 2
    try:
        with gateway_processes("tests.authserver.gateway_app", envs, directory) as processes:
            yield Cluster(ports_of(directory, 2), policy_file, url)
    finally:
        run_in_thread(drop_schema(schema))
    for i, process in enumerate(processes):  # a clean stop: the purge cancelled, store closed
        output = (directory / f"gateway{i}.log").read_text()
        assert process.returncode == 0, output
        assert "Traceback" not in output and "Error" not in output, output


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def status(port: int, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"http://127.0.0.1:{port}/v1/items", headers=headers)
    return answer.status_code


async def until_refused(port: int, headers: dict[str, str]) -> float:
    """Poll ``port`` until it answers 401; the seconds it took."""
    started = time.monotonic()
    while (code := await status(port, headers)) == 200:
        assert time.monotonic() - started < CAP, "the revocation never reached this instance"
        await asyncio.sleep(0.1)
    assert code == 401, code
    return time.monotonic() - started


async def admin(cluster: Cluster, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apishield",
        *args,
        "-c",
        str(cluster.policy_file),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out
    return out.decode()


async def test_access_token_revoked_on_one_is_refused_by_the_other(cluster: Cluster) -> None:
    a, b = cluster.ports
    async with Store(cluster.store_url) as store:
        client, secret = await store.clients.register(
            name="reporting",
            grant_types=["client_credentials"],
            scopes=["items:read"],
            resources=[ISSUER],
        )
    assert secret is not None
    auth = {"authorization": basic(client.id, secret)}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{a}", timeout=30) as on_a:
        issued = await on_a.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "items:read", "resource": ISSUER},
            headers=auth,
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        bearer = {"authorization": f"Bearer {token}"}
        assert [await status(a, bearer), await status(b, bearer)] == [200, 200]
        revoked = await on_a.post("/oauth2/revoke", data={"token": token}, headers=auth)
        assert revoked.status_code == 200
    assert await status(a, bearer) == 401  # at once where it was revoked
    delay = await until_refused(b, bearer)
    print(f"access-token revocation reached the other instance after {delay:.2f} s")


async def test_api_key_revoked_by_the_command_is_refused_by_both(cluster: Cluster) -> None:
    keys = load_secret_keys(load_policy(cluster.policy_file).state)
    async with Store(cluster.store_url) as store:
        manager = ApiKeyManager(store, pepper=keys.api_key_pepper, prefix="ask_test")
        issued = await manager.create("ops", scopes=["items:read"])
    headers = {"x-api-key": issued.key}
    assert [await status(p, headers) for p in cluster.ports] == [200, 200]
    assert f"revoked {issued.record.id}" in await admin(
        cluster, "apikeys", "revoke", issued.record.id
    )
    delays = [await until_refused(p, headers) for p in cluster.ports]
    print(f"API-key revocation reached the instances after {delays[0]:.2f} s, {delays[1]:.2f} s")


async def user_token(port: int, client_id: str) -> str:
    """Sign ``ada`` in on ``port`` (authorization code with PKCE) and return her access token."""
    verifier = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        page = await http.get(
            "/oauth2/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "scope": "items:read",
                "resource": ISSUER,
                "code_challenge": s256(verifier),
                "code_challenge_method": "S256",
            },
        )
        assert page.status_code == 200, page.text
        txn = re.search(r'name="txn" value="([^"]+)"', page.text)
        assert txn is not None
        # The login cookie is `Secure` (`__Host-`): a client over plain loopback HTTP does not
        # send it back by itself.
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        answer = await http.post(
            "/oauth2/login",
            data={"txn": txn.group(1), "username": "ada", "password": PASSWORD},
            headers={"cookie": cookie, "sec-fetch-site": "same-origin", "origin": "null"},
        )
        assert answer.status_code == 303, answer.text
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        tokens = await http.post(
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
                "client_id": client_id,
            },
        )
        assert tokens.status_code == 200, tokens.text
        token: str = tokens.json()["access_token"]
        return token


async def test_disabled_user_is_refused_by_both(cluster: Cluster) -> None:
    async with Store(cluster.store_url) as store:
        app, _ = await store.clients.register(
            name="spa",
            grant_types=["authorization_code"],
            redirect_uris=[REDIRECT],
            scopes=["items:read"],
            resources=[ISSUER],
            auth_method="none",
        )
        await store.users.create("ada", PASSWORD)
    token = await user_token(cluster.ports[0], app.id)
    bearer = {"authorization": f"Bearer {token}"}
    assert [await status(p, bearer) for p in cluster.ports] == [200, 200]
    assert "disabled ada" in await admin(cluster, "users", "disable", "ada")
    delays = [await until_refused(p, bearer) for p in cluster.ports]
    print(f"disabling a user reached the instances after {delays[0]:.2f} s, {delays[1]:.2f} s")
