"""TLS on the wire: Mozilla intermediate as served by a real GatewayServer on 127.0.0.1."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import logging
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from apishield.errors import ConfigError
from apishield.server import DevCertificates, GatewayServer, build_server_ssl_context
from apishield.server import tls as tls_module
from apishield.server.tls import INTERMEDIATE_CIPHERS, restrict_groups

from .server_support import http_get, tls_handshake

ClientFactory = Callable[[DevCertificates], ssl.SSLContext]
INTERMEDIATE_TLS12 = set(INTERMEDIATE_CIPHERS.split(":"))
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def _client(
    dev: DevCertificates,
    version: ssl.TLSVersion | None = None,
    *,
    ciphers: str | None = None,
    groups: str | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(dev.ca_cert))
    if version is not None:
        with warnings.catch_warnings():
            # Python deprecates TLS 1.0/1.1; offering them is the point of the test.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if groups is not None and not restrict_groups(context, groups):
        pytest.skip(f"this OpenSSL cannot restrict a client to {groups}")
    return context


@contextlib.contextmanager
def _serving_context(context: ssl.SSLContext) -> Iterator[int]:
    """A minimal one-connection-at-a-time TLS server for ``context``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(65536)
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        listener.close()


@pytest.fixture(scope="module")
def control_port(dev_certs: DevCertificates) -> Iterator[int]:
    """A deliberately permissive TLS server (OpenSSL defaults, TLS 1.0+, every cipher, tickets).

    Every refusal below is checked against it first, so a refusal proves something about
    apishield and not about the client.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_cert_chain(dev_certs.cert, dev_certs.key)
    with _serving_context(context) as port:
        yield port


def _outcome(port: int, context: ssl.SSLContext) -> tuple[str, str] | None:
    """(version, cipher) of a completed handshake and request, or None when refused."""
    try:
        with tls_handshake(port, context) as tls:
            version, cipher = tls.version(), tls.cipher()
            answer = http_get(tls)
    except ssl.SSLError:
        return None
    assert version is not None and cipher is not None
    assert answer.startswith(b"HTTP/1.1 200 ")
    return version, cipher[0]


TLS10 = ssl.TLSVersion.TLSv1
TLS11 = ssl.TLSVersion.TLSv1_1
TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3
CBC_ONLY = ":".join(
    (
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
    )
)


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda d: _client(d, TLS10, ciphers="DEFAULT:@SECLEVEL=0"), id="tls1.0"),
        pytest.param(lambda d: _client(d, TLS11, ciphers="DEFAULT:@SECLEVEL=0"), id="tls1.1"),
        pytest.param(lambda d: _client(d, TLS12, ciphers=CBC_ONLY), id="tls1.2-cbc-only"),
        pytest.param(
            lambda d: _client(d, TLS12, ciphers="ECDHE-ECDSA-AES128-SHA256"), id="tls1.2-cbc-sha256"
        ),
        pytest.param(lambda d: _client(d, TLS13, groups="X448"), id="tls1.3-x448-only"),
        pytest.param(lambda d: _client(d, TLS13, groups="P-521"), id="tls1.3-p521-only"),
        pytest.param(lambda d: _client(d, TLS13, groups="ffdhe2048"), id="tls1.3-ffdhe-only"),
    ],
)
def test_handshake_refused(
    make_client: ClientFactory,
    dev_certs: DevCertificates,
    threaded_server: GatewayServer,
    control_port: int,
) -> None:
    client = make_client(dev_certs)
    if _outcome(control_port, client) is None:
        pytest.skip("the local OpenSSL cannot complete this handshake with any server")
    assert threaded_server.bound_port is not None
    assert _outcome(threaded_server.bound_port, client) is None


@pytest.mark.parametrize(
    ("make_client", "version"),
    [
        pytest.param(lambda d: _client(d, TLS12), "TLSv1.2", id="tls1.2"),
        pytest.param(lambda d: _client(d, TLS13), "TLSv1.3", id="tls1.3"),
        pytest.param(lambda d: _client(d), "TLSv1.3", id="default-client"),
        pytest.param(
            lambda d: _client(d, TLS12, ciphers="ECDHE-ECDSA-CHACHA20-POLY1305"),
            "TLSv1.2",
            id="tls1.2-chacha20",
        ),
        pytest.param(lambda d: _client(d, TLS13, groups="X25519"), "TLSv1.3", id="tls1.3-x25519"),
        pytest.param(lambda d: _client(d, TLS13, groups="P-256"), "TLSv1.3", id="tls1.3-p256"),
        pytest.param(lambda d: _client(d, TLS13, groups="P-384"), "TLSv1.3", id="tls1.3-p384"),
        pytest.param(lambda d: _client(d, TLS12, groups="P-256"), "TLSv1.2", id="tls1.2-p256"),
    ],
)
def test_handshake_accepted(
    make_client: ClientFactory,
    version: str,
    dev_certs: DevCertificates,
    threaded_server: GatewayServer,
) -> None:
    assert threaded_server.bound_port is not None
    outcome = _outcome(threaded_server.bound_port, make_client(dev_certs))
    assert outcome is not None
    assert outcome[0] == version
    assert outcome[1] in (TLS13_SUITES if version == "TLSv1.3" else INTERMEDIATE_TLS12)


@pytest.mark.parametrize(
    "version", [pytest.param(TLS12, id="tls1.2"), pytest.param(TLS13, id="tls1.3")]
)
def test_no_session_ticket_issued(
    version: ssl.TLSVersion,
    dev_certs: DevCertificates,
    threaded_server: GatewayServer,
    control_port: int,
) -> None:
    def ticket(port: int) -> bool:
        with tls_handshake(port, _client(dev_certs, version)) as tls:
            http_get(tls)  # TLS 1.3 tickets arrive after the handshake, with the first data
            session = tls.session
            assert session is not None
            return session.has_ticket

    assert ticket(control_port)  # the check can see a ticket when one is sent
    assert threaded_server.bound_port is not None
    assert not ticket(threaded_server.bound_port)


def test_alpn_selects_http11(dev_certs: DevCertificates, threaded_server: GatewayServer) -> None:
    client = _client(dev_certs)
    client.set_alpn_protocols(["h2", "http/1.1"])
    assert threaded_server.bound_port is not None
    with tls_handshake(threaded_server.bound_port, client) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_fallback_when_group_list_cannot_be_set(
    dev_certs: DevCertificates, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clients = {g: _client(dev_certs, TLS13, groups=g) for g in ("P-256", "X25519", "P-521")}
    monkeypatch.setattr(tls_module, "_set_groups_list", lambda context, groups: False)
    with caplog.at_level(logging.WARNING, logger="apishield.server"):
        context = build_server_ssl_context(dev_certs.cert, dev_certs.key)
    assert "offering prime256v1 only" in caplog.text
    with _serving_context(context) as port:
        assert _outcome(port, clients["P-256"]) is not None
        assert _outcome(port, clients["X25519"]) is None
        assert _outcome(port, clients["P-521"]) is None


def test_group_setter_checks_the_pointer_is_this_contexts() -> None:
    functions = tls_module._libssl_functions()
    if functions is None:
        pytest.skip("OpenSSL's functions are not reachable from this Python")
    get_options = functions[1]
    ours, other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.options |= ssl.OP_NO_TICKET
    ours.options &= ~ssl.OP_NO_TICKET

    def pointer(context: ssl.SSLContext) -> int:
        value = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        assert value
        return value

    assert tls_module._options_match(ours, pointer(ours), get_options)
    assert not tls_module._options_match(ours, pointer(other), get_options)
    assert not ours.options & ssl.OP_NO_TICKET  # the probe restored what it toggled


def test_context_settings(dev_certs: DevCertificates) -> None:
    context = build_server_ssl_context(dev_certs.cert, dev_certs.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_TICKET
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.num_tickets == 0
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == INTERMEDIATE_TLS12


# --- bad certificate and key files -------------------------------------------------------


def _self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _key_pem(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _bad_files(case: str, tmp: Path, dev: DevCertificates) -> tuple[Path, Path]:
    cert, key = dev.cert, dev.key
    other = ec.generate_private_key(ec.SECP256R1())
    if case == "cert-missing":
        return tmp / "nope.crt", key
    if case == "key-missing":
        return cert, tmp / "nope.key"
    if case == "cert-is-directory":
        return tmp, key
    if case == "cert-not-pem":
        return _write_pem(tmp / "garbage.crt", b"hello\n"), key
    if case == "cert-is-a-key":
        return _write_pem(tmp / "key-as.crt", key.read_bytes()), key
    if case == "key-not-pem":
        return cert, _write_pem(tmp / "garbage.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    if case == "key-encrypted":
        return cert, _write_pem(tmp / "enc.key", _key_pem(other, b"secret"))
    if case == "key-mismatch":
        return cert, _write_pem(tmp / "other.key", _key_pem(other))
    if case == "rsa-1024":
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        weak_cert = _self_signed(weak).public_bytes(serialization.Encoding.PEM)
        return _write_pem(tmp / "weak.crt", weak_cert), _write_pem(tmp / "weak.key", _key_pem(weak))
    if case == "cert-unreadable":
        path = _write_pem(tmp / "locked.crt", cert.read_bytes())
        path.chmod(0)
        return path, key
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "blamed", "phrase"),
    [
        pytest.param("cert-missing", "cert", "no such file", id="cert-missing"),
        pytest.param("key-missing", "key", "no such file", id="key-missing"),
        pytest.param("cert-is-directory", "cert", "is a directory", id="cert-is-directory"),
        pytest.param("cert-not-pem", "cert", "not a PEM certificate", id="cert-not-pem"),
        pytest.param("cert-is-a-key", "cert", "not a PEM certificate", id="cert-is-a-key"),
        pytest.param("key-not-pem", "key", "not a PEM private key", id="key-not-pem"),
        pytest.param("key-encrypted", "key", "is encrypted", id="key-encrypted"),
        pytest.param("key-mismatch", "key", "does not match", id="key-mismatch"),
        pytest.param("rsa-1024", "key", "too weak", id="rsa-1024"),
        pytest.param("cert-unreadable", "cert", "permission denied", id="cert-unreadable"),
    ],
)
def test_bad_files_are_one_line_config_errors(
    case: str,
    blamed: str,
    phrase: str,
    tmp_path: Path,
    dev_certs: DevCertificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = _bad_files(case, tmp_path, dev_certs)
    if case == "cert-unreadable" and os.geteuid() == 0:
        # root reads files whatever their mode: make the read fail the way it would for others
        read_bytes = Path.read_bytes

        def refuse(path: Path) -> bytes:
            if path == cert:
                raise PermissionError(13, "Permission denied", str(path))
            return read_bytes(path)

        monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError) as caught:
        build_server_ssl_context(cert, key)
    message = str(caught.value)
    assert "\n" not in message
    assert phrase in message
    assert str(cert if blamed == "cert" else key) in message
