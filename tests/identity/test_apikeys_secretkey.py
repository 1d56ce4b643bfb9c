"""The secret key behind API-key and refresh-token peppers and signing-key encryption."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
from pathlib import Path

import pytest

from apishield.errors import ConfigError
from apishield.identity.secretkey import (
    SecretKeyError,
    SecretKeys,
    load_secret_key,
    load_secret_keys,
)
from apishield.policy.models import State

RANDOM = os.urandom(32)


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(base64.urlsafe_b64encode(RANDOM).decode().rstrip("="), id="base64url"),
        pytest.param(base64.b64encode(RANDOM).decode(), id="base64"),
        pytest.param(RANDOM.hex(), id="hex"),
        pytest.param("  " + RANDOM.hex() + "\n", id="whitespace"),
    ],
)
def test_key_from_the_environment(encoded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APISHIELD_TEST_KEY", encoded)
    assert load_secret_key(State(secret_key="env:APISHIELD_TEST_KEY")) == RANDOM


def test_key_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(RANDOM.hex())
    path.chmod(0o600)
    assert load_secret_key(State(secret_key=f"file:{path}")) == RANDOM


def test_readable_key_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "key"
    path.write_text(RANDOM.hex())
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="apishield.identity.secretkey"):
        load_secret_key(State(secret_key=f"file:{path}"))
    assert "chmod 600" in caplog.text
    assert RANDOM.hex() not in caplog.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(None, "is not set", id="unset"),
        pytest.param("", "is not set", id="empty"),
        pytest.param(os.urandom(16).hex(), "at least 32 random bytes", id="short"),
        pytest.param(
            "correct horse battery staple, a long pass phrase", "at least 32", id="phrase"
        ),
        pytest.param("a" * 64, "does not look random", id="repeated"),
        pytest.param(("ab" * 32), "does not look random", id="pattern"),
    ],
)
def test_refused_keys(value: str | None, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("APISHIELD_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("APISHIELD_TEST_KEY", value)
    with pytest.raises(ConfigError, match=message) as info:
        load_secret_key(State(secret_key="env:APISHIELD_TEST_KEY"))
    text = str(info.value)
    assert "\n" not in text and text.startswith("state.secret_key: ")
    if value:
        assert value.strip() not in text


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="no such file"):
        load_secret_key(State(secret_key=f"file:{tmp_path}/absent"))


def test_inline_keys_are_refused_by_the_policy() -> None:
    with pytest.raises(ValueError, match="never inline"):
        State(secret_key=RANDOM.hex())


def test_key_file_created_on_first_use(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = State(dir=tmp_path / "state")
    with caplog.at_level(logging.WARNING, logger="apishield.identity.secretkey"):
        first = load_secret_key(state)
    path = tmp_path / "state" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 32
    assert [r.getMessage() for r in caplog.records if "created a new secret key" in r.getMessage()]
    assert path.read_text().strip() not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="apishield.identity.secretkey"):
        assert load_secret_key(state) == first  # read back, not made again
    assert caplog.records == []
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary left


def test_subkeys_are_independent() -> None:
    keys = SecretKeys.from_master(RANDOM)
    subkeys = {keys.api_key_pepper, keys.refresh_token_pepper, keys.signing_key_encryption}
    assert len(subkeys) == 3 and all(len(k) == 32 for k in subkeys)
    assert RANDOM not in subkeys
    assert SecretKeys.from_master(RANDOM) == keys  # deterministic: peppers survive restarts
    assert SecretKeys.from_master(os.urandom(32)).api_key_pepper != keys.api_key_pepper
    assert RANDOM.hex() not in repr(keys) and "pepper=" not in repr(keys)


def test_load_secret_keys(tmp_path: Path) -> None:
    keys = load_secret_keys(State(dir=tmp_path))
    assert keys == load_secret_keys(State(dir=tmp_path))


def test_signing_keys_are_sealed_with_aes_gcm() -> None:
    keys = SecretKeys.from_master(RANDOM)
    private = secrets.token_bytes(64)
    sealed = keys.seal(private, associated=b"kid-1")
    assert private not in sealed and keys.seal(private, associated=b"kid-1") != sealed
    assert keys.unseal(sealed, associated=b"kid-1") == private
    with pytest.raises(SecretKeyError, match="does not open"):
        keys.unseal(sealed, associated=b"kid-2")  # moved to another row
    with pytest.raises(SecretKeyError, match="does not open"):
        SecretKeys.from_master(os.urandom(32)).unseal(sealed, associated=b"kid-1")
    with pytest.raises(SecretKeyError):
        keys.unseal(sealed[:-1] + bytes([sealed[-1] ^ 1]), associated=b"kid-1")
