"""TLS and SASL material of the embedded broker, made once by `vto stack up` in <run dir>/kafka-tls/ (mode 0700):
a private CA, a broker certificate for 127.0.0.1 and localhost signed by it, and a random password per Kafka
principal (kafka-users.json, mode 0600). Production brings its own (cert-manager, a Secret): see docs/security.md.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The principals of the product, each with what it may do (streams/stack/kafka.py `acl_bindings`).
PRINCIPALS = ("vto-admin", "vto-worker", "vto-client", "vto-analytics")
VALID_DAYS = 825


def tls_dir(run_dir: Path) -> Path:
    return run_dir / "kafka-tls"


def _private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ensure(run_dir: Path) -> tuple[Path, Path]:
    """(CA certificate, broker key + certificate chain) as PEM files, made if missing."""
    folder = tls_dir(run_dir)
    ca_file, broker_file = folder / "ca.pem", folder / "broker.pem"
    if ca_file.exists() and broker_file.exists():
        return ca_file, broker_file
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("VTO Stream embedded CA"))
        .issuer_name(_name("VTO Stream embedded CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    # Kafka's PEM key store takes an unencrypted PKCS#8 key followed by the certificate chain.
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _private(broker_file, key_pem + cert.public_bytes(pem) + ca.public_bytes(pem))
    ca_file.write_bytes(ca.public_bytes(pem))
    return ca_file, broker_file


def users(run_dir: Path) -> tuple[dict[str, str], bool]:
    """{principal: password} of the embedded broker, and whether they were made just now."""
    path = tls_dir(run_dir) / "kafka-users.json"
    if path.exists():
        return dict(json.loads(path.read_text())), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = {name: secrets.token_urlsafe(24) for name in PRINCIPALS}
    _private(path, json.dumps(made).encode())
    return made, True
