"""HTTPS with the home's certificate, through the TLS terminator in front of a real Orthanc.

Debian bookworm's Orthanc 1.10.1 segfaults (exit 139) on the first HTTPS request when
SslEnabled is true, so `archive serve` runs nginx on the public port and Orthanc on a
loopback-only internal port (archive/serve/tls_proxy.py). One archive for the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from archive.serve import tls_proxy
from tests.harness import RunningArchive, add_user, new_archive

# A second loopback address: nginx sees it, Orthanc (behind nginx) sees 127.0.0.1 only.
CLIENT = "127.0.0.2"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningArchive]:
    running = new_archive(tmp_path_factory.mktemp("tls") / "home")
    config_file = running.config.home.config_file
    text = config_file.read_text()
    assert "tls = false" in text and 'host = "127.0.0.1"' in text
    # TLS in: the public port may listen beyond loopback.
    config_file.write_text(
        text.replace("tls = false", "tls = true").replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    )
    add_user(running, "pers", ["personnel"])
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _trust(archive: RunningArchive) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(archive.home / "keys" / "https.pem"))


def _from_client(archive: RunningArchive, **kwargs) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=CLIENT, verify=_trust(archive))
    return httpx.Client(base_url=archive.url, transport=transport, timeout=30, **kwargs)


def _other_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (may be none)."""
    found: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))  # no packet sent: picks the outgoing address
            found.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def _audit(archive: RunningArchive, predicate, timeout: float = 10.0) -> list[dict]:
    """Audit records matching `predicate`, polled (the plugin group-commits every ~50 ms)."""
    path = archive.config.home.audit_dir / "audit.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        found = [r for r in records if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_https_serves_the_home_certificate_and_named_users(archive: RunningArchive) -> None:
    assert archive.url.startswith("https://")
    trust = _trust(archive)
    with httpx.Client(
        base_url=archive.url, verify=trust, auth=("pers", archive.passwords["pers"])
    ) as http:
        answer = http.get("/teaching/health")
        assert answer.status_code == 200
        assert answer.json()["plugin"] == "teaching-archive"  # personnel see the details
        assert "max-age=" in answer.headers["strict-transport-security"]
        assert http.get("/system").status_code == 200
    with httpx.Client(base_url=archive.url, verify=trust) as anonymous:
        assert anonymous.get("/system").status_code == 403
    # The served certificate is exactly the home's (pinned by fingerprint).
    pem = (archive.home / "keys" / "https.pem").read_text()
    served = ssl.get_server_certificate(("127.0.0.1", archive.config.http.port))
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest()
    assert digest == tls_proxy.certificate_fingerprint(archive.home / "keys" / "https.pem")
    assert "BEGIN CERTIFICATE" in pem
    # A client trusting only the system CAs refuses the self-signed certificate.
    with pytest.raises(httpx.ConnectError):
        httpx.get(archive.url + "/teaching/health", timeout=5)


def _client_context(low: ssl.TLSVersion, high: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = low
    context.maximum_version = high
    context.set_ciphers("ALL:@SECLEVEL=0")  # the client would offer TLS 1.0/1.1
    return context


def test_old_tls_versions_are_refused(archive: RunningArchive) -> None:
    address = ("127.0.0.1", archive.config.http.port)
    # Positive control: the same client, limited to TLS 1.2, connects.
    tls12 = _client_context(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(address, timeout=5) as raw, tls12.wrap_socket(raw) as tls:
        assert tls.version() == "TLSv1.2"
    context = _client_context(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    with (
        pytest.raises((ssl.SSLError, OSError)),
        socket.create_connection(("127.0.0.1", archive.config.http.port), timeout=5) as raw,
        context.wrap_socket(raw),
    ):
        pass


def test_plain_http_on_the_public_port_is_not_served(archive: RunningArchive) -> None:
    plain = archive.url.replace("https://", "http://") + "/teaching/health"
    answer = httpx.get(plain, timeout=5, follow_redirects=False)
    assert answer.status_code == 301
    assert answer.headers["location"].startswith("https://")
    assert b"teaching-archive" not in answer.content


def test_orthanc_listens_on_loopback_only_at_its_internal_port(archive: RunningArchive) -> None:
    state = tls_proxy.read_state(archive.config)
    assert state is not None and state["scheme"] == "https"
    host, port = state["internal"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) != archive.config.http.port
    rendered = json.loads(archive.config.home.orthanc_config.read_text())
    assert rendered["HttpPort"] == int(port)
    assert rendered["RemoteAccessAllowed"] is False
    assert rendered["SslEnabled"] is False
    # Orthanc 1.10.1 has no bind-address option; serve's bind shim holds its socket to
    # 127.0.0.1, so no other address of this machine reaches it, and with
    # RemoteAccessAllowed false it refuses (401, before any route or plugin) every peer
    # but 127.0.0.1 - checked from another loopback address. nginx is the only way in.
    transport = httpx.HTTPTransport(local_address=CLIENT)
    with httpx.Client(transport=transport, timeout=10) as direct:
        answer = direct.get(f"http://127.0.0.1:{port}/teaching/health")
    assert answer.status_code == 401, answer.status_code
    assert b"teaching-archive" not in answer.content
    for peer in _other_addresses():
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=10) as direct:
            direct.get(f"http://{peer}:{port}/teaching/health")
    with httpx.Client(timeout=10) as local:
        assert local.get(f"http://127.0.0.1:{port}/teaching/health").status_code == 200
    # Status says https and where it listens.
    status = json.loads(archive.cli("status", "--json").stdout)
    assert status["plugin_loaded"] is True
    assert status["url"].startswith("https://")
    assert status["https"]["listen"] == f"0.0.0.0:{archive.config.http.port}"
    assert status["https"]["internal"] == state["internal"]
    assert "secret" not in json.dumps(status).lower()


def test_audit_records_the_client_address_not_a_forged_one(archive: RunningArchive) -> None:
    marker = f"/teaching/tls-probe-{time.monotonic_ns()}"
    forged = {tls_proxy.CLIENT_IP_HEADER: "10.66.66.66", tls_proxy.SECRET_HEADER: "guess"}
    with _from_client(archive, auth=("pers", archive.passwords["pers"])) as http:
        http.get(marker, headers=forged)
    records = _audit(archive, lambda r: r.get("detail", {}).get("uri") == marker)
    assert [r["source"] for r in records] == [CLIENT]
    # Straight to Orthanc's internal port (bypassing nginx) with a forged header and a
    # wrong secret: the address Orthanc saw is audited.
    internal = tls_proxy.read_state(archive.config)["internal"]
    bypass = f"/teaching/tls-bypass-{time.monotonic_ns()}"
    httpx.get(f"http://{internal}{bypass}", headers=forged, timeout=10)
    records = _audit(archive, lambda r: r.get("detail", {}).get("uri") == bypass)
    assert [r["source"] for r in records] == ["127.0.0.1"]
    # The per-serve secret is in no log and not in Orthanc's configuration.
    conf = tls_proxy.config_path(archive.config).read_text()
    secret = conf.split(f"{tls_proxy.SECRET_HEADER} ", 1)[1].split('"')[1]
    assert len(secret) >= 32
    for path in (
        archive.config.home.orthanc_log,
        tls_proxy.error_log(archive.config),
        archive.config.home.orthanc_config,
        archive.config.home.audit_dir / "audit.jsonl",
    ):
        if path.exists():
            assert secret not in path.read_text(errors="replace"), path


def _local_client(archive: RunningArchive, **kwargs) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address="127.0.0.1", verify=_trust(archive))
    return httpx.Client(base_url=archive.url, transport=transport, timeout=30, **kwargs)


def test_failed_sign_ins_from_one_address_do_not_lock_out_personnel(
    archive: RunningArchive,
) -> None:
    """Finding 7: five wrong passwords from anywhere locked any account. Now twenty from
    one address (the client nginx saw) slow down that address only: the same personnel
    account signs in from another address at once, over Basic and on the web form."""
    add_user(archive, "staff", ["personnel"])
    with _from_client(archive, auth=("staff", "wrong-password-guess")) as attacker:
        answers = [attacker.get("/system").status_code for _ in range(20)]
    assert answers == [403] * 20
    with _local_client(archive, auth=("staff", archive.passwords["staff"])) as person:
        assert person.get("/system").status_code == 200
    records = _audit(
        archive, lambda r: r["action"] == "auth.login" and r["actor"] == "staff", timeout=5
    )
    denied = [r for r in records if r["outcome"] == "denied"]
    assert len(denied) == 20 and all(r["source"] == CLIENT for r in denied)
    reasons = [r["detail"]["reason"] for r in denied]
    assert "locked" not in reasons and reasons.count("throttled") >= 10
    # The web sign-in from the attacking address: refused with Retry-After and the reason
    # (it shares the backoff with Basic; a wrong guess lengthens it if it had run out).
    with _from_client(archive) as browser:
        for _ in range(10):
            form = browser.get("/teaching/ui/login")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            answer = browser.post(
                "/teaching/ui/login",
                data={"user": "staff", "password": "wrong-password-guess", "csrf": token},
            )
            if answer.status_code != 403:
                break
    # 429 in the domain; Orthanc 1.10.1 cannot send 429, so the adapter answers 503,
    # which carries Retry-After too (plugins/web.py).
    assert answer.status_code == 503, answer.text[:300]
    assert int(answer.headers["retry-after"]) >= 1
    assert "from this address" in answer.text and "Wait" in answer.text
    # ... and from the person's own address the web sign-in works.
    with _local_client(archive) as browser:
        form = browser.get("/teaching/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        answer = browser.post(
            "/teaching/ui/login",
            data={"user": "staff", "password": archive.passwords["staff"], "csrf": token},
        )
    assert answer.status_code == 303 and "archive_session=" in answer.headers["set-cookie"]


def test_stopping_serve_stops_the_terminator(tmp_path: Path) -> None:
    running = new_archive(tmp_path / "home")
    config_file = running.config.home.config_file
    config_file.write_text(config_file.read_text().replace("tls = false", "tls = true"))
    running.start()
    try:
        pid = tls_proxy.read_state(running.config)["pid"]
        assert Path(f"/proc/{pid}").exists()
        os.kill(running.process.pid, signal.SIGTERM)  # serve only, not its process group
        assert running.process.wait(timeout=60) == 0
    finally:
        running.stop()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"
    assert not tls_proxy.config_path(running.config).exists()  # the secret is gone too
