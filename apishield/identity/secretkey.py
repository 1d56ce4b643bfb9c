"""The gateway's secret key, and the subkeys derived from it.

One key, given as ``state.secret_key: env:NAME`` or ``file:PATH`` (never inline in the policy),
holding at least 32 random bytes, base64 (standard or URL-safe) or hex encoded. When the policy
names none, ``<state.dir>/secret.key`` is created on first use (0600, in a 0700 folder) and a
log line says so: that file must then be backed up with the store, since without it no stored
API key or refresh token can be verified again.

Each use gets its own subkey through HKDF-SHA-256 (RFC 5869) with a distinct ``info``, so a
pepper can never double as an encryption key: the API-key pepper, the refresh-token pepper
(also for authorization codes) and the AES-256-GCM key that seals signing keys at rest.
The trust assumption: whoever can read the key file or the environment owns the gateway.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from apishield.errors import ConfigError
from apishield.policy.models import State

logger = logging.getLogger("apishield.identity.secretkey")

MIN_KEY_BYTES = 32
KEY_FILE = "secret.key"
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_NONCE = 12  # AES-GCM's 96-bit nonce (NIST SP 800-38D §8.2.2: random nonces, ≤ 2^32 messages)


class SecretKeyError(ConfigError):
    """The secret key is missing, unreadable or too weak (raised at start-up)."""


def decode_key(text: str, *, where: str) -> bytes:
    """The key bytes in ``text`` (hex or base64); ``SecretKeyError`` when under 32 bytes or
    visibly not random. The message never quotes the key."""
    value = text.strip()
    raw: bytes | None = None
    if _HEX.match(value) and len(value) % 2 == 0:
        raw = bytes.fromhex(value)
    else:
        padded = value + "=" * (-len(value) % 4)
        # validate=True: the lenient default drops unknown characters, which would accept a
        # pass phrase as if it were a key.
        for altchars in (b"-_", b"+/"):
            try:
                raw = base64.b64decode(padded.encode("ascii"), altchars=altchars, validate=True)
                break
            except (binascii.Error, ValueError, UnicodeEncodeError):
                continue
    if raw is None or len(raw) < MIN_KEY_BYTES:
        raise SecretKeyError(
            f"state.secret_key: {where} must hold at least {MIN_KEY_BYTES} random bytes, "
            f"base64 or hex encoded (make one with: {_GENERATE})"
        )
    # 32 random bytes hold ~30 distinct values; a repeated pattern ("aaaa…", "abab…") does not.
    if len(set(raw)) < 16:
        raise SecretKeyError(f"state.secret_key: {where} does not look random: make a new one")
    return raw


def _read_env(name: str) -> bytes:
    value = os.environ.get(name)
    if not value:
        raise SecretKeyError(f"state.secret_key: the environment variable {name} is not set")
    return decode_key(value, where=f"the environment variable {name}")


def _read_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretKeyError(f"state.secret_key: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(
            f"state.secret_key: {path}: cannot read the key ({type(exc).__name__})"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "secret key file %s can be read by other users (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    return decode_key(text, where=str(path))


def _create_file(path: Path) -> bytes:
    """Create ``path`` with a new key, atomically: two processes starting together end up
    with the same key (the second one's link fails and it reads the first one's file)."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = folder / f".{KEY_FILE}.{secrets.token_hex(8)}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(MIN_KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_file(path)
    except OSError as exc:
        raise SecretKeyError(
            f"state.secret_key: cannot create {path} ({type(exc).__name__}); "
            "set state.secret_key to env:NAME or file:PATH"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    logger.warning(
        "created a new secret key in %s: back it up with the store; without it, stored API "
        "keys and refresh tokens cannot be verified",
        path,
    )
    return _read_file(path)


def load_secret_key(state: State) -> bytes:
    """The master key named by ``state.secret_key``, or the state directory's key file
    (created on first use). Raises ``SecretKeyError`` with a one-line message."""
    source = state.secret_key
    if source is None:
        path = state.dir / KEY_FILE
        return _read_file(path) if path.exists() else _create_file(path)
    kind, _, rest = source.partition(":")
    if kind == "env" and rest:
        return _read_env(rest)
    if kind == "file" and rest:
        return _read_file(Path(rest).expanduser())
    raise SecretKeyError("state.secret_key: give env:NAME or file:PATH")


def derive_key(master: bytes, purpose: str, length: int = 32) -> bytes:
    """An independent subkey of ``master`` for ``purpose`` (HKDF-SHA-256, RFC 5869 §2)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=None, info=f"apishield {purpose}".encode()
    ).derive(master)


@dataclass(frozen=True, slots=True)
class SecretKeys:
    """The subkeys of one master key. ``repr`` shows none of them."""

    api_key_pepper: bytes = field(repr=False)
    refresh_token_pepper: bytes = field(repr=False)
    signing_key_encryption: bytes = field(repr=False)

    @classmethod
    def from_master(cls, master: bytes) -> SecretKeys:
        """Derive the subkeys of ``master`` (at least 32 bytes)."""
        if len(master) < MIN_KEY_BYTES:
            raise SecretKeyError(f"the secret key needs at least {MIN_KEY_BYTES} bytes")
        return cls(
            api_key_pepper=derive_key(master, "api-key pepper v1"),
            refresh_token_pepper=derive_key(master, "refresh-token pepper v1"),
            signing_key_encryption=derive_key(master, "signing-key encryption v1"),
        )

    def seal(self, plaintext: bytes, *, associated: bytes) -> bytes:
        """AES-256-GCM encrypt ``plaintext`` (a private key), bound to ``associated`` (its
        kid), so a sealed key moved to another row does not open. Returns nonce‖ciphertext."""
        nonce = secrets.token_bytes(_NONCE)
        return nonce + AESGCM(self.signing_key_encryption).encrypt(nonce, plaintext, associated)

    def unseal(self, sealed: bytes, *, associated: bytes) -> bytes:
        """The plaintext of ``seal``; ``SecretKeyError`` when the key or the data differ."""
        try:
            return AESGCM(self.signing_key_encryption).decrypt(
                sealed[:_NONCE], sealed[_NONCE:], associated
            )
        except (InvalidTag, ValueError):
            raise SecretKeyError(
                "a sealed signing key does not open with this secret key "
                "(was state.secret_key changed?)"
            ) from None


def load_secret_keys(state: State) -> SecretKeys:
    """``SecretKeys`` derived from the policy's secret key (see ``load_secret_key``)."""
    return SecretKeys.from_master(load_secret_key(state))
