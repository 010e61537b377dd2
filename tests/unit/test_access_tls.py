"""The demo HTTPS certificate made by `archive init`."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from archive.access.tls import certificate_path, make_self_signed
from archive.serve.home import init_home


def test_init_makes_a_private_self_signed_certificate_with_its_key(tmp_path: Path) -> None:
    config = init_home(tmp_path / "home", http_port=18042, dicom_port=14242)
    path = certificate_path(config.home)
    assert path.stat().st_mode & 0o777 == 0o600
    pem = path.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.issuer == cert.subject  # self-signed
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    rendered = (config.home.orthanc_config).read_text()
    assert str(path) in rendered  # Orthanc's SslCertificate points at it


def test_certificate_names_the_configured_host(tmp_path: Path) -> None:
    from archive.paths import HomePaths

    home = HomePaths(tmp_path)
    home.keys_dir.mkdir(parents=True)
    cert = x509.load_pem_x509_certificate(
        make_self_signed(home, ["archive.school.example", "10.1.2.3"]).read_bytes()
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "archive.school.example" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.1.2.3") in sans.get_values_for_type(x509.IPAddress)
