"""``tls: dev``: the development CA and the localhost certificate."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apishield.errors import ConfigError
from apishield.server import (
    DevCertificates,
    GatewayServer,
    ensure_dev_certificates,
    trust_instructions,
)

from .server_support import http_get, tls_handshake

NOW = datetime.datetime.now(datetime.UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_extensions(dev_certs: DevCertificates) -> None:
    ca = _cert(dev_certs.ca_cert)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and not usage.value.digital_signature
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees is not None
    assert set(constraints.value.permitted_subtrees) == {
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    }
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    ca.verify_directly_issued_by(ca)


def test_leaf_extensions(dev_certs: DevCertificates) -> None:
    leaf, ca = _cert(dev_certs.cert), _cert(dev_certs.ca_cert)
    leaf.verify_directly_issued_by(ca)
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(days=366)
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha256"


def test_file_modes(dev_certs: DevCertificates) -> None:
    assert stat.S_IMODE(dev_certs.cert.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(dev_certs.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((dev_certs.ca_cert.parent / "ca.key").stat().st_mode) == 0o600
    assert not list(dev_certs.cert.parent.glob("*.tmp"))


def test_reused_on_second_call(tmp_path: Path) -> None:
    first = ensure_dev_certificates(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    second = ensure_dev_certificates(tmp_path)
    assert first.new_ca and not second.new_ca
    assert (second.ca_cert, second.cert, second.key) == (first.ca_cert, first.cert, first.key)
    assert {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()} == before


@pytest.mark.parametrize(
    ("days_later", "leaf_renewed", "ca_renewed"),
    [
        pytest.param(300, False, False, id="both-valid"),
        pytest.param(360, True, False, id="leaf-near-expiry"),
        pytest.param(400, True, False, id="leaf-expired"),
        pytest.param(725, True, True, id="ca-near-expiry"),
    ],
)
def test_renewal(tmp_path: Path, days_later: int, leaf_renewed: bool, ca_renewed: bool) -> None:
    first = ensure_dev_certificates(tmp_path, now=NOW)
    ca_before, leaf_before = _cert(first.ca_cert), _cert(first.cert)
    later = NOW + datetime.timedelta(days=days_later)
    second = ensure_dev_certificates(tmp_path, now=later)
    ca_after, leaf_after = _cert(second.ca_cert), _cert(second.cert)
    assert (ca_after.serial_number != ca_before.serial_number) is ca_renewed
    assert second.new_ca is ca_renewed
    assert (leaf_after.serial_number != leaf_before.serial_number) is leaf_renewed
    assert leaf_after.not_valid_after_utc - later > datetime.timedelta(days=7)
    leaf_after.verify_directly_issued_by(ca_after)
    key = serialization.load_pem_private_key(second.key.read_bytes(), password=None)
    assert key.public_key() == leaf_after.public_key()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("localhost.crt", id="leaf-cert"),
        pytest.param("localhost.key", id="leaf-key"),
        pytest.param("ca.key", id="ca-key"),
    ],
)
def test_damaged_files_are_replaced(tmp_path: Path, damage: str) -> None:
    first = ensure_dev_certificates(tmp_path)
    (tmp_path / "tls" / damage).write_bytes(b"not PEM")
    second = ensure_dev_certificates(tmp_path)
    assert second.new_ca is (damage == "ca.key")
    leaf = _cert(second.cert)
    leaf.verify_directly_issued_by(_cert(second.ca_cert))
    key = serialization.load_pem_private_key(second.key.read_bytes(), password=None)
    assert key.public_key() == leaf.public_key()
    assert first.cert == second.cert


def test_leaf_from_another_ca_is_replaced(tmp_path: Path) -> None:
    ensure_dev_certificates(tmp_path / "a")
    ensure_dev_certificates(tmp_path / "b")
    for name in ("localhost.crt", "localhost.key"):
        (tmp_path / "a" / "tls" / name).write_bytes((tmp_path / "b" / "tls" / name).read_bytes())
    result = ensure_dev_certificates(tmp_path / "a")
    _cert(result.cert).verify_directly_issued_by(_cert(result.ca_cert))


def test_unwritable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the state dir should be")
    with pytest.raises(ConfigError, match="cannot write the development certificates"):
        ensure_dev_certificates(blocker)


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1"])
def test_client_trusting_only_the_dev_ca_verifies(
    hostname: str, dev_certs: DevCertificates, threaded_server: GatewayServer
) -> None:
    client = ssl.create_default_context(cafile=str(dev_certs.ca_cert))
    assert threaded_server.bound_port is not None
    with tls_handshake(threaded_server.bound_port, client, hostname=hostname) as tls:
        assert http_get(tls).startswith(b"HTTP/1.1 200 ")


def test_client_without_the_dev_ca_refuses(threaded_server: GatewayServer) -> None:
    client = ssl.create_default_context(cafile=None, capath=None, cadata=None)
    client.load_verify_locations(cadata=_cert_pem_of_unrelated_ca())
    assert threaded_server.bound_port is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(threaded_server.bound_port, client).close()


def _cert_pem_of_unrelated_ca() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unrelated")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_name_constraints_stop_the_ca_vouching_for_other_names(
    dev_certs: DevCertificates, tmp_path: Path
) -> None:
    """Even with the CA key, a certificate for another name fails for clients trusting the CA."""
    ca = _cert(dev_certs.ca_cert)
    ca_key = serialization.load_pem_private_key(
        (dev_certs.ca_cert.parent / "ca.key").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.example")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    store = ssl.create_default_context(cafile=str(dev_certs.ca_cert))
    # Verify the forged leaf through OpenSSL the way a client would: serve it and connect.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf_path, key_path = tmp_path / "forged.crt", tmp_path / "forged.key"
    leaf_path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx.load_cert_chain(leaf_path, key_path)
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept_one() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                try:
                    server_ctx.wrap_socket(conn, server_side=True).close()
                except OSError:
                    pass

        thread = threading.Thread(target=accept_one)
        thread.start()
        try:
            with pytest.raises(ssl.SSLCertVerificationError, match="name constraint|permitted"):
                tls_handshake(listener.getsockname()[1], store, hostname="bank.example").close()
        finally:
            thread.join(10)


def test_trust_instructions_name_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "with space" / "ca.crt"
    text = trust_instructions(ca)
    assert f"curl --cacert '{ca}'" in text
    assert "update-ca-certificates" in text
    assert "update-ca-trust" in text
    assert "security add-trusted-cert" in text
    assert "certutil" in text
    assert "localhost" in text
