"""``apishield signing-keys rotate|list`` (AUTH 23): the emergency rotation command exists,
and every failure is one line."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apishield.authserver.cli import signing_keys_app
from apishield.store import Store

ENV = "APISHIELD_TEST_SECRET_KEY"


@pytest.fixture
def policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV, secrets.token_urlsafe(32))
    path = tmp_path / "apishield.yaml"
    path.write_text(
        "apishield: 1\n"
        f"state: {{dir: state, secret_key: 'env:{ENV}'}}\n"
        "identity:\n"
        "  issuers:\n"
        "    - {builtin: true, access_token_ttl: 15m}\n"
    )
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(signing_keys_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def states(policy_file: Path) -> list[dict[str, str]]:
    code, out, err = run("list", "--json", "-c", str(policy_file))
    assert code == 0, err
    rows: list[dict[str, str]] = json.loads(out)
    return rows


def test_rotate_and_list(policy_file: Path) -> None:
    code, out, _ = run("rotate", "-c", str(policy_file))
    assert code == 0 and out.startswith("created the first signing key ")
    assert [r["state"] for r in states(policy_file)] == ["active"]
    code, out, _ = run("rotate", "-c", str(policy_file))
    assert code == 0 and out.startswith("published ")
    rows = states(policy_file)
    assert [r["state"] for r in rows] == ["active", "next"]  # published, not signing yet
    assert rows[1]["signs_from"] > rows[1]["created"]
    code, out, _ = run("rotate", "-c", str(policy_file))
    assert code == 0 and out.startswith("a rotation is already pending")
    code, out, _ = run("list", "-c", str(policy_file))
    assert code == 0 and out.splitlines()[0].split() == [
        "KID",
        "ALG",
        "STATE",
        "CREATED",
        "SIGNS",
        "FROM",
        "PUBLISHED",
        "UNTIL",
    ]


@pytest.mark.parametrize("case", [pytest.param("emergency", id="AUTH-23-emergency-command")])
def test_emergency(policy_file: Path, case: str) -> None:
    assert run("rotate", "-c", str(policy_file))[0] == 0
    assert run("rotate", "-c", str(policy_file))[0] == 0
    code, out, _ = run("rotate", "--emergency", "-c", str(policy_file))
    assert code == 0 and out.startswith("retired 2 key(s);"), case
    assert sorted(r["state"] for r in states(policy_file)) == ["active", "retired", "retired"]
    # the sealed key opens with the policy's secret key and no other
    store = Store(f"sqlite:///{policy_file.parent}/state/apishield.db")

    async def check() -> None:
        try:
            keys = await store.signing_keys.all()
            assert all(k.alg == "ES256" for k in keys)
        finally:
            await store.aclose()

    asyncio.run(check())


@pytest.mark.parametrize(
    ("policy", "exit_code", "message"),
    [
        pytest.param("apishield: 1\n", 2, "no 'builtin: true' entry", id="no-builtin-issuer"),
        pytest.param("apishield: [\n", 2, "apishield.yaml", id="policy-syntax"),
        pytest.param(
            "apishield: 1\nstate: {store: 'postgresql://nobody@127.0.0.1:9/x', "
            f"secret_key: 'env:{ENV}'}}\nidentity: {{issuers: [{{builtin: true}}]}}\n",
            1,
            "is unavailable",
            id="store-down",
        ),
        pytest.param(
            "apishield: 1\nstate: {dir: state, secret_key: 'env:APISHIELD_TEST_UNSET'}\n"
            "identity: {issuers: [{builtin: true}]}\n",
            2,
            "APISHIELD_TEST_UNSET is not set",
            id="secret-key-missing",
        ),
    ],
)
def test_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, exit_code: int, message: str
) -> None:
    monkeypatch.setenv(ENV, secrets.token_urlsafe(32))
    path = tmp_path / "apishield.yaml"
    path.write_text(policy)
    code, out, err = run("rotate", "-c", str(path))
    assert code == exit_code and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
