"""TLS terminator pieces without nginx running: whose address is audited, nginx's config."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest

from archive.serve import tls_proxy
from archive.serve.home import init_home

SECRET = "s3cret-per-serve-value-0123456789abcdef"
H = tls_proxy.CLIENT_IP_HEADER
S = tls_proxy.SECRET_HEADER


@pytest.mark.parametrize(
    ("ip", "headers", "secret", "expected"),
    [
        ("127.0.0.1", {H: "10.1.2.3", S: SECRET}, SECRET, "10.1.2.3"),
        ("127.0.0.1", {H.lower(): "10.1.2.3", S.lower(): SECRET}, SECRET, "10.1.2.3"),
        ("127.0.0.1", {H: "10.1.2.3", S: SECRET + "x"}, SECRET, "127.0.0.1"),
        ("127.0.0.1", {H: "10.1.2.3"}, SECRET, "127.0.0.1"),
        ("127.0.0.1", {H: "10.1.2.3", S: ""}, SECRET, "127.0.0.1"),
        ("127.0.0.1", {H: "10.1.2.3", S: SECRET}, None, "127.0.0.1"),  # no proxy this serve
        ("127.0.0.1", {H: "10.1.2.3", S: ""}, "", "127.0.0.1"),
        ("10.9.9.9", {H: "10.1.2.3", S: SECRET}, SECRET, "10.9.9.9"),  # not from the proxy
        ("127.0.0.1", {H: "not-an-ip\nforged", S: SECRET}, SECRET, "127.0.0.1"),
        ("127.0.0.1", {H: " ::1 ", S: SECRET}, SECRET, "::1"),
    ],
)
def test_client_address_believes_only_the_proxy(ip, headers, secret, expected) -> None:
    assert tls_proxy.client_address(ip, headers, secret) == expected


def _tls(config):
    return replace(config, http=replace(config.http, tls=True))


def test_nginx_config_terminates_tls_and_streams_bodies(tmp_path: Path) -> None:
    config = _tls(init_home(tmp_path / "home", http_port=18443, dicom_port=14242))
    plan = tls_proxy.plan(config, 18999, SECRET)
    assert plan.listen_host == "127.0.0.1"
    text = tls_proxy.render_config(config, plan)
    assert "listen 127.0.0.1:18443 ssl;" in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "proxy_pass http://127.0.0.1:18999;" in text
    assert f'proxy_set_header {S} "{SECRET}";' in text
    assert f"proxy_set_header {H} $remote_addr;" in text
    assert "Strict-Transport-Security" in text
    assert "daemon off;" in text
    assert "proxy_request_buffering on;" in text and "proxy_max_temp_file_size 0;" in text
    assert str(config.home.run_dir) in text  # pid, error log and temp paths in HOME/run
    assert "secret" not in str(plan.public()).lower()
    assert plan.public()["certificate_sha256"] == tls_proxy.certificate_fingerprint(
        plan.certificate
    )
    path = tls_proxy.write_config(config, plan)
    assert path.stat().st_mode & 0o777 == 0o600


def test_internal_port_from_the_config_is_checked(tmp_path: Path) -> None:
    config = init_home(tmp_path / "home", http_port=18443, dicom_port=14242)
    assert tls_proxy.configured_internal_port(config) is None
    text = config.home.config_file.read_text()
    config.home.config_file.write_text(text.replace("[http]", "[http]\ninternal_port = 18444"))
    assert tls_proxy.pick_internal_port(config) == 18444
    config.home.config_file.write_text(text.replace("[http]", "[http]\ninternal_port = 18443"))
    with pytest.raises(tls_proxy.ProxyError, match="must differ"):
        tls_proxy.pick_internal_port(config)


def test_a_missing_certificate_is_one_clear_error(tmp_path: Path) -> None:
    config = _tls(init_home(tmp_path / "home", http_port=18443, dicom_port=14242))
    (config.home.keys_dir / "https.pem").unlink()
    with pytest.raises(tls_proxy.ProxyError, match="no certificate"):
        tls_proxy.plan(config, 18999, SECRET)


def test_a_damaged_certificate_has_no_fingerprint(tmp_path: Path) -> None:
    pem = tmp_path / "https.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n!!not base64@@\n-----END CERTIFICATE-----\n")
    assert tls_proxy.certificate_fingerprint(pem) is None


def test_plain_http_front_bounds_bodies_per_location(tmp_path: Path) -> None:
    config = init_home(tmp_path / "home", http_port=18443, dicom_port=14242)
    plan = tls_proxy.plan(config, 18999, SECRET)
    text = tls_proxy.render_config(config, plan)
    assert "listen 127.0.0.1:18443;" in text and "ssl" not in text
    assert "location = /teaching/ui/login {" in text
    login = text.split("location = /teaching/ui/login {", 1)[1].split("}", 1)[0]
    assert "client_max_body_size 64k;" in login and "auth_request" not in login
    default = text.split("location / {", 1)[1].split("}", 1)[0]
    assert "client_max_body_size 512m;" in default
    assert "auth_request /_archive_auth;" in default
    assert "proxy_request_buffering on;" in default
    assert "client_body_buffer_size 512m;" in default  # never spooled to a file
    assert "refused.log" in text and "$request_uri" not in text.split("log_format")[1][:80]


@pytest.mark.parametrize(
    "uri",
    [
        b"/teaching/cases/%ff",
        b"/teaching/cases/%FF",
        b"/a%c3",
        b"/a%c3%28",
        b"/a/%ED%A0%80",  # a UTF-16 surrogate
        b"/a/%F4%90%80%80",  # beyond U+10FFFF
        b"/a/%C0%AF",  # overlong
        b"/x%zz",
        b"/x%",
        b"/raw/\xff",
        b"/ok",
        b"/ok?q=a%20b&x=%C3%A9",
        b"/a/%e2%82%ac/\xe2\x82\xac",
        b"/a/%F0%9F%98%80",
    ],
)
def test_valid_uri_pattern_agrees_with_utf8_decoding(uri: bytes) -> None:
    pattern = re.compile(tls_proxy.valid_uri_pattern().encode("latin-1"))
    stray_percent = re.search(rb"%(?![0-9A-Fa-f]{2})", uri) is not None
    try:
        unquote_to_bytes(uri).decode("utf-8")
        valid = not stray_percent
    except UnicodeDecodeError:
        valid = False
    assert bool(pattern.match(uri)) is valid


def test_refusals_are_read_whole_lines_without_uris(tmp_path: Path) -> None:
    config = init_home(tmp_path / "home", http_port=18443, dicom_port=14242)
    log = tls_proxy.refused_log(config)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"1.5 127.0.0.2 400 1\n1.6 10.0.0.9 413 0\ngarbage\n1.7 10.0.0.1 4")
    found, offset = tls_proxy.read_refusals(config, 0)
    assert [(r.client, r.status, r.reason) for r in found] == [
        ("127.0.0.2", 400, "malformed URI"),
        ("10.0.0.9", 413, "request body too large"),
        ("unknown", 0, "unreadable log line"),
    ]
    assert tls_proxy.read_refusals(config, offset) == ([], offset)  # partial line waits
