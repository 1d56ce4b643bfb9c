"""``tls: dev``: a local certificate authority and a ``localhost`` certificate it signs.

The development CA lives in ``<state dir>/tls/`` (folder mode 0700, private keys 0600) and is
reused while it stays valid for more than ``RENEW_BEFORE``; so is the leaf, which is renewed
alone when only it nears its end. Both use ECDSA P-256 keys and SHA-256 signatures.

Trust assumption: whoever can read the state dir can mint certificates this CA vouches for, so
the CA carries a critical Name Constraints extension (RFC 5280 §4.2.1.10) that limits it to
``localhost`` and the loopback addresses. A user who trusts it in their OS store therefore
trusts it for nothing that leaves the machine, even if the key is copied. The leaf follows what
``sslyze``'s Mozilla check and browsers require: ``basicConstraints`` critical ``CA:FALSE``,
``serverAuth`` only, a lifetime of at most 366 days (CA/Browser Forum baseline: 398).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apishield.errors import ConfigError

CA_LIFETIME = datetime.timedelta(days=730)
LEAF_LIFETIME = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=7)
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate a little clock skew between processes

LEAF_DNS_NAMES = ("localhost",)
LEAF_IP_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
_PERMITTED = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
    x509.IPAddress(ipaddress.ip_network("::1/128")),
)


@dataclass(frozen=True, slots=True)
class DevCertificates:
    """Paths of the development CA certificate and of the ``localhost`` certificate and key.

    ``new_ca`` is True when this call created the CA, so users must (re-)trust it.
    """

    ca_cert: Path
    cert: Path
    key: Path
    new_ca: bool = False


def ensure_dev_certificates(
    state_dir: Path, *, now: datetime.datetime | None = None
) -> DevCertificates:
    """Create, reuse or renew the development CA and ``localhost`` certificate in ``state_dir``.

    ``now`` is for tests. Raises ``ConfigError`` when the folder cannot be created or written.
    Unreadable or mismatched files are replaced, never trusted: the certificate served must be
    one this CA signed for these names with this key.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    folder = state_dir / "tls"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        with _locked(folder / ".lock"):
            return _ensure(folder, now)
    except OSError as exc:
        raise ConfigError(
            f"dev TLS: cannot write the development certificates in {folder} ({exc.strerror})"
        ) from None


def trust_instructions(ca_cert: Path) -> str:
    """How to make clients on this machine trust the development CA at ``ca_cert``.

    The CA is name-constrained to localhost and loopback addresses (see the module docstring),
    which is what makes adding it to a system store acceptable.
    """
    ca = shlex.quote(str(ca_cert))
    return "\n".join(
        (
            f"The development CA is {ca_cert}. It can only vouch for localhost, 127.0.0.0/8",
            "and ::1. To trust it:",
            f"  curl:            curl --cacert {ca} https://localhost:PORT/",
            f"  Python:          SSL_CERT_FILE={ca} (or httpx's verify= argument)",
            f"  Node.js:         NODE_EXTRA_CA_CERTS={ca}",
            "  Debian/Ubuntu:   sudo cp "
            f"{ca} /usr/local/share/ca-certificates/apishield-dev-ca.crt"
            " && sudo update-ca-certificates",
            f"  Fedora/RHEL:     sudo cp {ca} /etc/pki/ca-trust/source/anchors/apishield-dev-ca.crt"
            " && sudo update-ca-trust",
            "  macOS:           sudo security add-trusted-cert -d -r trustRoot"
            f" -k /Library/Keychains/System.keychain {ca}",
            f"  Windows:         certutil -user -addstore Root {ca}",
            "  Firefox keeps its own store: Settings > Certificates > Authorities > Import.",
            "Remove it the same way when you no longer need it.",
        )
    )


def _ensure(folder: Path, now: datetime.datetime) -> DevCertificates:
    ca_cert_path, ca_key_path = folder / "ca.crt", folder / "ca.key"
    cert_path, key_path = folder / "localhost.crt", folder / "localhost.key"
    new_ca = False
    ca = _load_pair(ca_cert_path, ca_key_path)
    if ca is None or not _ca_usable(ca[0], now):
        ca = _issue_ca(now)
        _write_pair(ca_cert_path, ca_key_path, *ca)
        new_ca = True
    ca_cert, ca_key = ca
    leaf = None if new_ca else _load_pair(cert_path, key_path)
    if leaf is None or not _leaf_usable(leaf[0], ca_cert, now):
        leaf = _issue_leaf(ca_cert, ca_key, now)
        _write_pair(cert_path, key_path, *leaf)
    return DevCertificates(ca_cert=ca_cert_path, cert=cert_path, key=key_path, new_ca=new_ca)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise creation between processes started together (several workers, tests)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no concurrent workers there either
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
        return None
    return cert, key


def _valid_long_enough(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _ca_usable(cert: x509.Certificate, now: datetime.datetime) -> bool:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return basic.ca and _valid_long_enough(cert, now)


def _leaf_usable(cert: x509.Certificate, ca: x509.Certificate, now: datetime.datetime) -> bool:
    if not _valid_long_enough(cert, now) or cert.not_valid_after_utc > ca.not_valid_after_utc:
        return False
    try:
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    return set(names.get_values_for_type(x509.DNSName)) >= set(LEAF_DNS_NAMES) and set(
        names.get_values_for_type(x509.IPAddress)
    ) >= set(LEAF_IP_ADDRESSES)


def _issue_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A per-install suffix tells several dev CAs apart in an OS trust store.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "apishield development"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"apishield development CA {secrets.token_hex(4)}"
            ),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(permitted_subtrees=list(_PERMITTED), excluded_subtrees=None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_leaf(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    # Never outlive the CA: a chain that expires mid-way fails on the CA's date anyway.
    not_after = min(now + LEAF_LIFETIME, ca_cert.not_valid_after_utc)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in LEAF_DNS_NAMES]
    names += [x509.IPAddress(ip) for ip in LEAF_IP_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_pair(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` so readers see the old file or the new one, never a partial key."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL with the final mode: the key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it; never widens a key beyond 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
