"""AUTH 38: no key, secret, token, code or password in any log line.

Runs the flows of the store, API keys, the authentication stage and the admin commands with
every logger at DEBUG (SQLAlchemy's and the drivers' included) and greps every captured line,
exception text included, for every secret the flows handled.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from apishield.admin.cli import apikeys_app, clients_app, users_app
from apishield.identity.apikeys import ApiKeyManager, ApiKeyRefusal, StoreApiKeyVerifier
from apishield.identity.secretkey import load_secret_key, load_secret_keys
from apishield.policy import parse_policy
from apishield.policy.models import State
from apishield.store import Store, StoreUnavailableError
from apishield.store.hashing import token_digest
from tests.pipeline.test_authentication import POLICY, StubBearer, compose
from tests.store import backends

clock = backends.clock
postgres_session_url = backends.postgres_session_url
sqlite_template = backends.sqlite_template
store = backends.store
store_url = backends.store_url

PASSWORD = "Tr0ub4dor&3-horse-battery"
DEAD_PASSWORD = "pg-password-hunter2"


@contextmanager
def every_log_line(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every record of every logger at DEBUG, formatted with its exception, in ``lines``."""
    lines: list[str] = []
    caplog.set_level(logging.DEBUG)
    detached: list[logging.Logger] = []
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            if not logger.propagate:  # e.g. after configure_logging: reach it directly
                logger.addHandler(caplog.handler)
                detached.append(logger)
    try:
        yield lines
    finally:
        for logger in detached:
            logger.removeHandler(caplog.handler)
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        lines.extend(
            formatter.format(record)
            for record in caplog.records
            # the test's own HTTP client logs the URLs it sends, credentials in queries
            # included: that is the client-side leak the gateway refuses such URLs for
            if not record.name.startswith(("httpx", "httpcore"))
        )


def cli(app: object, *args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(app, list(args), input=input)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.stdout


def field(output: str, name: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith(name))


async def test_no_secret_in_any_log_line(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets: list[str] = [PASSWORD, DEAD_PASSWORD]
    with every_log_line(caplog) as lines:
        # the secret key, created on first use
        state = State(dir=tmp_path / "state")
        keys = load_secret_keys(state)
        master = load_secret_key(state)
        secrets += [
            master.hex(),
            base64.urlsafe_b64encode(master).decode().rstrip("="),
            (tmp_path / "state" / "secret.key").read_text().strip(),
            keys.api_key_pepper.hex(),
            keys.refresh_token_pepper.hex(),
        ]

        # API keys: issue, verify, refuse in every way, roll, revoke
        manager = ApiKeyManager(store, pepper=keys.api_key_pepper, prefix="ask_live")
        verifier = StoreApiKeyVerifier(store, pepper=keys.api_key_pepper, prefix="ask_live")
        good = await manager.create("billing", scopes=["invoices:read"])
        fenced = await manager.create("partner", ip_allowlist=["10.0.0.0/8"])
        short = await manager.create("temp", expires_at=store.now() + timedelta(seconds=30))
        secrets += [good.key, fenced.key, short.key, good.key[9:-6]]
        await verifier.verify_api_key(good.key, client_ip="127.0.0.1")
        typo = good.key[:-1] + ("x" if good.key[-1] != "x" else "y")
        for key, ip in ((fenced.key, "192.0.2.1"), (typo, "127.0.0.1")):
            with pytest.raises(ApiKeyRefusal):
                await verifier.verify_api_key(key, client_ip=ip)
        rolled = await manager.roll(good.record.id, grace=timedelta(0))
        secrets.append(rolled.key)
        await manager.revoke(rolled.record.id)
        verifier.forget()
        for key in (good.key, rolled.key):
            with pytest.raises(ApiKeyRefusal):
                await verifier.verify_api_key(key, client_ip="127.0.0.1")

        # clients, users, codes and refresh tokens
        client, client_secret = await store.clients.register(
            name="app",
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=["https://app.example.com/cb"],
        )
        assert client_secret is not None
        secrets.append(client_secret)
        assert await store.clients.authenticate(client.id, client_secret + "x") is None
        user = await store.users.create("ada", PASSWORD)
        assert await store.users.authenticate("ada", PASSWORD + "x") is None
        code, rt0, rt1 = "code-9f8e7d6c5b4a", "refresh-0-a1b2c3d4e5", "refresh-1-f6e5d4c3b2"
        secrets += [code, rt0, rt1]
        pepper = keys.refresh_token_pepper
        await store.codes.create(
            code_hash=token_digest(pepper, code),
            client_id=client.id,
            user_id=user.id,
            redirect_uri="https://app.example.com/cb",
            code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            scope=["a"],
            resource=[],
            expires_at=store.now() + timedelta(seconds=60),
        )
        await store.codes.redeem(token_digest(pepper, code))
        await store.refresh_tokens.start_family(
            family_id="fam",
            token_hash=token_digest(pepper, rt0),
            client_id=client.id,
            user_id=user.id,
            scope=["a"],
            resource=[],
            absolute_expires_at=store.now() + timedelta(days=1),
            code_hash=token_digest(pepper, code),
        )
        await store.refresh_tokens.rotate(token_digest(pepper, rt0), token_digest(pepper, rt1))
        await store.refresh_tokens.rotate(token_digest(pepper, rt0), token_digest(pepper, "x"))
        await store.codes.redeem(token_digest(pepper, code))
        await store.users.disable("ada")

        # the authentication stage
        bearer_token = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"
        secrets.append(bearer_token)
        app = compose(parse_policy(POLICY), api_keys=verifier, bearer=StubBearer())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://api.test") as http:
            for request in (
                http.get(f"/public?access_token={bearer_token}"),
                http.get(f"/public?q={fenced.key}"),
                http.get(f"/items/{fenced.key}"),
                http.get("/public", headers={"Authorization": f"Bearer {bearer_token}"}),
                http.get("/public", headers={"Authorization": f"Basic {bearer_token}"}),
                http.get("/public", headers={"X-API-Key": fenced.key}),
                http.get("/public", headers={"X-API-Key": rolled.key}),
                http.get("/invoices", headers={"X-API-Key": short.key}),
            ):
                assert (await request).status_code in (200, 400, 401, 403)

        # a store that is down, with a password in its URL
        dead = Store(f"postgresql://app:{DEAD_PASSWORD}@127.0.0.1:1/test", auto_migrate=False)
        try:
            with pytest.raises(StoreUnavailableError):
                await StoreApiKeyVerifier(
                    dead, pepper=keys.api_key_pepper, prefix="ask_live"
                ).verify_api_key(good.key, client_ip="127.0.0.1")
        finally:
            await dead.aclose()

        # the admin commands, in a worker thread (each runs its own event loop)
        config = tmp_path / "apishield.yaml"
        config.write_text("apishield: 1\nstate: {dir: cli-state}\n")
        c = str(config)

        def commands() -> list[str]:
            made = cli(clients_app, "create", "svc", "-g", "client_credentials", "-c", c)
            key = cli(apikeys_app, "create", "--owner", "ci", "-c", c)
            rolled_key = cli(apikeys_app, "roll", field(key, "key_id"), "-c", c)
            cli(users_app, "create", "bob", "--password-stdin", "-c", c, input=PASSWORD)
            return [
                field(made, "client_secret"),
                field(key, "api_key"),
                field(rolled_key, "api_key"),
                (tmp_path / "cli-state" / "secret.key").read_text().strip(),
            ]

        secrets += await asyncio.to_thread(commands)

    assert len(lines) > 50  # the flows did log: SQL, refusals, key events
    assert any("authentication refused" in line for line in lines)
    leaks = [(s, line) for s in secrets for line in lines if s and s in line]
    assert leaks == []
