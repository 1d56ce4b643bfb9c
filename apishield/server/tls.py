"""The server's TLS settings: Mozilla's *intermediate* profile (v5.7) on Python's ``ssl``.

The bar is what ``sslyze --mozilla_config=intermediate`` checks:

- protocols TLS 1.2 and TLS 1.3 only (RFC 8996 deprecates 1.0 and 1.1);
- TLS 1.2 suites: ECDHE with AES-GCM or ChaCha20-Poly1305 only (no CBC, no RSA key exchange;
  the profile's DHE suites are left out because no DH parameters are configured, so OpenSSL
  could not negotiate them anyway); TLS 1.3 keeps OpenSSL's default three AEAD suites;
- key-exchange groups X25519, P-256 and P-384 only (see ``restrict_groups``);
- no session tickets (RFC 5077 tickets are encrypted with a long-lived process key, which
  undoes forward secrecy until that key rotates), no compression (CRIME), no renegotiation;
- the client's cipher order is honoured, as the profile says, since every suite on the list
  is strong and clients know best whether they have AES hardware.

Trust assumption: the certificate and key files are trusted input chosen by the operator; this
module only checks that they are readable, well-formed and belong together, so that a mistake
is a one-line ``ConfigError`` at start-up instead of a traceback or a server that cannot
complete a handshake.
"""

from __future__ import annotations

import ctypes
import datetime
import functools
import logging
import os
import ssl
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from apishield.errors import ConfigError

logger = logging.getLogger("apishield.server")

INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
"""Mozilla intermediate TLS 1.2 suites that need no DH parameters, in the profile's order."""

INTERMEDIATE_GROUPS = "X25519:P-256:P-384"
"""Key-exchange groups the profile allows, in OpenSSL's list syntax."""

FALLBACK_CURVE = "prime256v1"
"""The single curve used when the full group list cannot be set (a subset of the profile)."""

_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's ssl.h; SSL_CTX_set1_groups_list() is this ctrl
_MIN_RSA_BITS = 2048  # the profile's certificate key size floor


def build_server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server ``SSLContext`` for ``cert`` (PEM chain, leaf first) and ``key`` (PEM, unencrypted).

    Implements Mozilla's intermediate profile as described in this module's docstring. Raises
    ``ConfigError`` with one line naming the file and the problem: missing, unreadable, not PEM,
    encrypted key, key too weak, or key not matching the certificate.
    """
    certificate = _check_certificate(cert)
    private_key = _check_key(key)
    # cryptography compares public keys by value (the key's public numbers)
    if certificate.public_key() != private_key.public_key():
        raise ConfigError(f"TLS key {key}: does not match the certificate in {cert}")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    # OP_NO_TICKET alone still lets TLS 1.3 send (stateful) tickets; zero means none at all.
    context.num_tickets = 0
    # httptools speaks HTTP/1.1 only; announcing it stops clients from guessing at h2.
    context.set_alpn_protocols(["http/1.1"])
    if not restrict_groups(context):
        logger.warning(
            "TLS: this Python/OpenSSL cannot set a list of key-exchange groups; "
            "offering %s only (X25519 and P-384 unavailable)",
            FALLBACK_CURVE,
        )
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror or "rejected"
        raise ConfigError(
            f"TLS certificate {cert}: OpenSSL refused it with its key ({reason})"
        ) from None
    return context


def restrict_groups(context: ssl.SSLContext, groups: str = INTERMEDIATE_GROUPS) -> bool:
    """Limit ``context``'s key-exchange groups (TLS 1.2 ECDHE curves and TLS 1.3 key shares).

    Returns True when exactly ``groups`` is in force, False when only ``FALLBACK_CURVE`` is.

    ``ssl.SSLContext.set_ecdh_curve`` takes a single curve. Newer CPython adds
    ``SSLContext.set_groups``, used when present; for the versions without it, the alternatives
    considered were:

    - an OpenSSL configuration file with ``Groups = ...`` loaded through ``OPENSSL_CONF`` and a
      re-executed process. It replaces the system's OpenSSL configuration (crypto policies,
      providers) unless carefully chained, applies to every context in the process including
      upstream and JWKS clients, reaches child processes through the environment, and does
      nothing for ``apishield.protect`` or tests, which never re-execute;
    - ``SSL_CTX_set1_groups_list`` on this context only, called through ``ctypes``. It needs the
      ``SSL_CTX`` pointer, which CPython's ``_ssl.c`` declares as the first field after the
      object header of ``PySSLContext``. Reading a wrong pointer could crash, so the pointer
      is first proven to be this context's: the library's own
      ``SSL_CTX_get_options`` must return ``context.options``, and must follow a change made
      through Python. Symbols are taken from the ``_ssl`` extension's own handle, so the call
      reaches the same OpenSSL that ``_ssl`` uses.

    The second is used: it is scoped to the server context, needs no restart and works
    everywhere the first works. Whatever happens, the context is first pinned to
    ``FALLBACK_CURVE``, so a failure leaves a subset of the profile, never OpenSSL's defaults.
    Call it while building the context, before any connection uses it.
    """
    context.set_ecdh_curve(FALLBACK_CURVE)
    setter = getattr(context, "set_groups", None)  # Python 3.15+
    if callable(setter):
        try:
            setter(groups)
        except (ssl.SSLError, ValueError):
            return False
        return True
    return _set_groups_list(context, groups)


def _set_groups_list(context: ssl.SSLContext, groups: str) -> bool:
    import _ssl

    if sys.implementation.name != "cpython" or not isinstance(context, _ssl._SSLContext):
        return False
    functions = _libssl_functions()
    if functions is None:
        return False
    ctrl, get_options = functions
    header = object.__basicsize__  # includes debug or free-threaded header fields
    pointer = ctypes.c_void_p.from_address(id(context) + header).value
    if not pointer or not _options_match(context, pointer, get_options):
        return False
    return _as_int(ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii"))) == 1


@functools.cache
def _libssl_functions() -> tuple[Callable[..., object], Callable[[int], object]] | None:
    """``SSL_CTX_ctrl`` and ``SSL_CTX_get_options`` of the OpenSSL that ``_ssl`` is linked to."""
    import _ssl

    if _ssl._SSLContext.__basicsize__ < object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p):
        return None
    try:
        # dlsym on the extension's own handle searches it, then the libraries it links.
        path = getattr(_ssl, "__file__", None)
        if not path:
            return None  # a statically linked _ssl: we could not be sure to reach its OpenSSL
        lib = ctypes.CDLL(path)
        ctrl = lib.SSL_CTX_ctrl
        get_options = lib.SSL_CTX_get_options
    except (OSError, AttributeError):
        return None
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    get_options.restype = ctypes.c_uint64 if ssl.OPENSSL_VERSION_INFO >= (3,) else ctypes.c_ulong
    get_options.argtypes = [ctypes.c_void_p]
    return ctrl, get_options


def _options_match(
    context: ssl.SSLContext, pointer: int, get_options: Callable[[int], object]
) -> bool:
    mask = 0xFFFF_FFFF_FFFF_FFFF
    saved = context.options
    try:
        if _as_int(get_options(pointer)) & mask != int(saved) & mask:
            return False
        context.options = saved ^ ssl.OP_NO_TICKET
        return _as_int(get_options(pointer)) & mask == int(context.options) & mask
    finally:
        context.options = saved


def _as_int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"TLS {what} {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"TLS {what} {path}: is a directory, not a PEM file") from None
    except PermissionError:
        raise ConfigError(f"TLS {what} {path}: permission denied (cannot read it)") from None
    except OSError as exc:
        raise ConfigError(f"TLS {what} {path}: cannot read it ({exc.strerror})") from None


def _check_certificate(path: Path) -> x509.Certificate:
    data = _read(path, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"TLS certificate {path}: not a PEM certificate") from None
    leaf = chain[0]
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        logger.warning("TLS certificate %s expired on %s", path, leaf.not_valid_after_utc)
    elif leaf.not_valid_before_utc > now:
        logger.warning("TLS certificate %s is not valid before %s", path, leaf.not_valid_before_utc)
    return leaf


def _check_key(path: Path) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    data = _read(path, "key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"TLS key {path}: is encrypted; give an unencrypted key readable only by apishield"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"TLS key {path}: not a PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigError(
                f"TLS key {path}: RSA {key.key_size} bits is too weak (use 2048 or more)"
            )
    elif isinstance(key, dsa.DSAPrivateKey) or not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"TLS key {path}: use an RSA or ECDSA key for a TLS server")
    if os.name == "posix" and os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("TLS key %s is readable by other users; chmod 600 it", path)
    return key
