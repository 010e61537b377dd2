"""The HTTPS certificate Orthanc serves with (SslCertificate: one PEM file, key + cert).

`archive init` makes a self-signed one in HOME/keys/https.pem so the demo can run with
`[http] tls = true`; production replaces that file with the school's certificate and
key (same file, same PEM layout) - nothing else changes. Orthanc reads it at start.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from archive.paths import HomePaths

CERTIFICATE_NAME = "https.pem"
DEFAULT_DAYS = 398  # the longest lifetime browsers accept for a server certificate


def certificate_path(home: HomePaths) -> Path:
    """Where Orthanc's configuration points SslCertificate (see ops/orthanc.template.json)."""
    return home.keys_dir / CERTIFICATE_NAME


def make_self_signed(home: HomePaths, hosts: list[str], days: int = DEFAULT_DAYS) -> Path:
    """Write a new self-signed certificate for `hosts` (names or IPs) with its key, 0600.

    For demonstrations only: clients must be told to trust it (or skip verification).
    """
    # RSA: Orthanc 1.10.1's embedded HTTP server serves RSA certificates.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Teaching archive (self-signed demo)"),
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path = certificate_path(home)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, path)
    return path
