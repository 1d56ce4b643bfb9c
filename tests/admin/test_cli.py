"""The admin commands: secrets printed once, grants revoked with their client or user
(AUTH 28), passwords never on the command line, one-line errors and no traceback."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from apishield.admin.cli import apikeys_app, clients_app, store_app, users_app
from apishield.identity.apikeys import StoreApiKeyVerifier
from apishield.identity.secretkey import load_secret_keys
from apishield.policy.load import load_policy
from apishield.store import Store
from tests.admin.conftest import Admin
from tests.store.backends import drop_schema, postgres_url, unique_schema


def fields(output: str) -> dict[str, str]:
    """``name: value`` lines of a command's standard output."""
    found = {}
    for line in output.splitlines():
        name, sep, value = line.partition(": ")
        if sep and " " not in name:
            found[name] = value
    return found


def assert_one_line_error(stderr: str, expected: str) -> None:
    assert stderr.strip() == expected, stderr
    assert "Traceback" not in stderr


# -- clients -----------------------------------------------------------------------------------


async def test_clients_create_list_delete(admin: Admin, store: Store) -> None:
    created = await admin(
        clients_app, "create", "billing", "--grant-type", "client_credentials", "--scope", "a:b"
    )
    assert created.exit_code == 0, created.output
    values = fields(created.stdout)
    client_id, secret = values["client_id"], values["client_secret"]
    assert created.stdout.count(secret) == 1
    assert "shown this once" in created.stderr
    assert await store.clients.authenticate(client_id, secret) is not None

    listed = await admin(clients_app, "list")
    assert listed.exit_code == 0
    assert client_id in listed.stdout and "billing" in listed.stdout
    assert secret not in listed.output

    deleted = await admin(clients_app, "delete", client_id)
    assert deleted.exit_code == 0 and "revoked" in deleted.stdout
    assert await store.clients.get(client_id) is None

    again = await admin(clients_app, "delete", client_id)
    assert again.exit_code == 1
    assert_one_line_error(again.stderr, f"apishield: no such client {client_id!r}")


async def test_clients_delete_revokes_grants(admin: Admin, store: Store) -> None:
    """AUTH-28-client: deleting a client from the command line revokes its tokens."""
    client, _ = await store.clients.register(name="c", grant_types=["client_credentials"])
    await store.access_tokens.record(
        "jti-1", expires_at=store.now() + timedelta(minutes=5), client_id=client.id
    )
    result = await admin(clients_app, "delete", client.id)
    assert result.exit_code == 0, result.output
    assert await store.access_tokens.is_revoked("jti-1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--grant-type", "implicit"],
            "apishield: grant type 'implicit' is not supported "
            "(use client_credentials, authorization_code, refresh_token)",
            id="AUTH-13-implicit",
        ),
        pytest.param(
            ["--grant-type", "authorization_code", "--redirect-uri", "http://evil.example/cb"],
            "apishield: redirect URI 'http://evil.example/cb' must be https://, "
            "or http:// on 127.0.0.1 or [::1]",
            id="AUTH-15-plain-http",
        ),
    ],
)
async def test_clients_refused(admin: Admin, args: list[str], message: str) -> None:
    result = await admin(clients_app, "create", "x", *args)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, message)


async def test_private_key_jwt_client(admin: Admin, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}')
    result = await admin(
        clients_app, "create", "svc", "--auth-method", "private_key_jwt", "--jwks-file", str(jwks)
    )
    assert result.exit_code == 0, result.output
    assert "client_secret" not in result.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = await admin(
        clients_app, "create", "svc", "--auth-method", "private_key_jwt", "--jwks-file", str(broken)
    )
    assert result.exit_code == 2
    assert_one_line_error(
        result.stderr, f"apishield: {broken}: not a readable JSON file (JSONDecodeError)"
    )


# -- API keys ----------------------------------------------------------------------------------


async def test_apikeys_lifecycle(admin: Admin, store: Store, policy_file: Path) -> None:
    """AUTH-30-shown-once from the command line: printed when made, never listed."""
    created = await admin(
        apikeys_app,
        "create",
        "--owner",
        "billing",
        "--scope",
        "invoices:read",
        "--expires",
        "90d",
        "--allow-ip",
        "10.0.0.0/8",
    )
    assert created.exit_code == 0, created.output
    values = fields(created.stdout)
    key, key_id = values["api_key"], values["key_id"]
    assert key.startswith("ask_test_") and created.stdout.count(key) == 1

    keys = load_secret_keys(load_policy(policy_file).state)
    verifier = StoreApiKeyVerifier(store, pepper=keys.api_key_pepper, prefix="ask_test")
    principal = await verifier.verify_api_key(key, client_ip="10.1.1.1")
    assert principal.subject == "billing" and principal.scopes == {"invoices:read"}

    listed = await admin(apikeys_app, "list")
    assert listed.exit_code == 0 and key not in listed.output
    assert f"{key[:13]}…{key[-4:]}" in listed.stdout and "active" in listed.stdout

    rolled = await admin(apikeys_app, "roll", key_id, "--grace", "1h")
    assert rolled.exit_code == 0, rolled.output
    new_key = fields(rolled.stdout)["api_key"]
    assert new_key != key and key not in rolled.output
    assert "stops working in 1h" in rolled.stderr
    listed = await admin(apikeys_app, "list", "--owner", "billing")
    assert "rolled" in listed.stdout and new_key not in listed.output

    revoked = await admin(apikeys_app, "revoke", fields(rolled.stdout)["key_id"])
    assert revoked.exit_code == 0
    missing = await admin(apikeys_app, "revoke", "key_nope")
    assert missing.exit_code == 1
    assert_one_line_error(missing.stderr, "apishield: no such API key 'key_nope'")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["--expires", "soon"],
            2,
            "apishield: --expires: 'soon' is neither a duration (90d) nor a date",
            id="bad-expiry",
        ),
        pytest.param(
            ["--allow-ip", "10.0.0.300/8"],
            1,
            "apishield: '10.0.0.300/8' is not an IP address or CIDR block",
            id="bad-cidr",
        ),
    ],
)
async def test_apikeys_refused(admin: Admin, args: list[str], code: int, message: str) -> None:
    result = await admin(apikeys_app, "create", "--owner", "x", *args)
    assert result.exit_code == code
    assert_one_line_error(result.stderr, message)


# -- users -------------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


async def test_users_create_from_stdin_and_disable(admin: Admin, store: Store) -> None:
    """AUTH-28-user: disabling a user revokes their grants."""
    created = await admin(
        users_app, "create", "ada", "--role", "admin", "--password-stdin", input=PASSWORD + "\n"
    )
    assert created.exit_code == 0, created.output
    assert PASSWORD not in created.output
    user = await store.users.authenticate("ada", PASSWORD)
    assert user is not None and user.roles == ("admin",)
    await store.access_tokens.record(
        "jti-ada", expires_at=store.now() + timedelta(minutes=5), user_id=user.id
    )

    disabled = await admin(users_app, "disable", "ada")
    assert disabled.exit_code == 0 and "revoked" in disabled.stdout
    assert await store.users.authenticate("ada", PASSWORD) is None
    assert await store.access_tokens.is_revoked("jti-ada")

    missing = await admin(users_app, "disable", "nobody")
    assert missing.exit_code == 1
    assert_one_line_error(missing.stderr, "apishield: no such user 'nobody'")


async def test_users_create_with_hidden_prompt(admin: Admin, store: Store) -> None:
    result = await admin(users_app, "create", "bob", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert await store.users.authenticate("bob", PASSWORD) is not None


@pytest.mark.parametrize(
    ("stdin", "code", "message"),
    [
        pytest.param("short\n", 1, "apishield: the password needs at least 12 characters", id="s"),
        pytest.param("\n", 2, "apishield: --password-stdin: no password on standard input", id="e"),
    ],
)
async def test_users_refused(admin: Admin, stdin: str, code: int, message: str) -> None:
    result = await admin(users_app, "create", "ada", "--password-stdin", input=stdin)
    assert result.exit_code == code
    assert_one_line_error(result.stderr, message)


async def test_username_taken(admin: Admin) -> None:
    for expected in (0, 1):
        result = await admin(users_app, "create", "ada", "--password-stdin", input=PASSWORD)
        assert result.exit_code == expected
    assert_one_line_error(result.stderr, "apishield: the username 'ada' is taken")


# -- the store and failures --------------------------------------------------------------------


async def test_the_policy_store_is_used(tmp_path: Path) -> None:
    schema = unique_schema()
    url = postgres_url(schema)
    config = tmp_path / "apishield.yaml"
    config.write_text(f'apishield: 1\nstate: {{dir: state, store: "{url}"}}\n')
    try:
        result = await Admin(config)(users_app, "create", "ada", "--password-stdin", input=PASSWORD)
        assert result.exit_code == 0, result.output
        async with Store(url) as store:
            assert await store.users.get_by_username("ada") is not None
    finally:
        await drop_schema(schema)
    config.write_text('apishield: 1\nstate: {store: "postgresql://app:hunter2@127.0.0.1:1/x"}\n')
    result = await Admin(config)(clients_app, "list")
    assert_one_line_error(
        result.stderr, "apishield: the store at postgresql://app:***@127.0.0.1:1/x is unavailable"
    )


async def test_store_migrate(admin: Admin) -> None:
    result = await admin(store_app, "migrate")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("store at revision ")


async def test_policy_problems_are_located(tmp_path: Path) -> None:
    config = tmp_path / "apishield.yaml"
    config.write_text("apishield: 1\nstate:\n  stor: x\n")
    result = await Admin(config)(clients_app, "list")
    assert result.exit_code == 2
    assert_one_line_error(
        result.stderr,
        f"apishield: {config}:3: state.stor: unknown setting "
        "(check the spelling; see `apishield schema`)",
    )
    result = await Admin(tmp_path / "absent.yaml")(users_app, "disable", "x")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, f"apishield: {tmp_path / 'absent.yaml'}: no such file")


async def test_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "occupied").write_text("a file where the state folder should be")
    config = tmp_path / "apishield.yaml"
    config.write_text("apishield: 1\nstate: {dir: occupied/state}\n")
    result = await Admin(config)(clients_app, "list")
    assert result.exit_code == 1
    expected = f"sqlite:///{tmp_path}/occupied/state/apishield.db"
    assert_one_line_error(result.stderr, f"apishield: the store at {expected} is unavailable")


def test_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "apishield.yaml"
    config.write_text("apishield: 1\nstate: {dir: state}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from apishield.admin.cli import clients_app; clients_app(prog_name='clients')",
            "delete",
            "nope",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "apishield: no such client 'nope'"
