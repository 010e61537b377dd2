"""`archive serve` as a supervisor, `archive status` honest about it, nginx always in front.

Issue #20: a dead Orthanc is restarted (and why is audited) with nothing acknowledged
lost; status exits non-zero when the archive does not answer and prints where it really
listens; an anonymous request cannot grow Orthanc's memory; a URI that is not UTF-8 is
refused and audited before Orthanc; every socket is on the configured address only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from archive.serve import server
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, new_archive, register_node

SCU = "SUPERVISED_SCU"


def _serve_state(archive: RunningArchive) -> dict:
    """serve's state file (written just after Orthanc answers its first health check)."""
    path = archive.config.home.run_dir / "serve.json"
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return json.loads(path.read_text())


def _orthanc_pid(archive: RunningArchive) -> int:
    return _serve_state(archive)["children"]["orthanc"]["pid"]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _audit(archive: RunningArchive, predicate, timeout: float = 15.0) -> list[dict]:
    path = archive.config.home.audit_dir / "audit.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        found = [r for r in records if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _wait_healthy(archive: RunningArchive, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = archive.health()
        if answer and answer.get("status") == "ok":
            return True
        time.sleep(0.2)
    return False


def _raw_post(archive: RunningArchive, path: str, declared: int, send: int) -> tuple[int, int]:
    """POST `declared` bytes of body to `path` on a raw socket, streaming zeros (never
    held in memory) until `send` bytes went out or the server answered; returns the
    status and how many body bytes were sent."""
    sock = socket.create_connection(("127.0.0.1", archive.config.http.port), timeout=30)
    sent = 0
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        chunk = b"\0" * (1 << 20)
        sock.settimeout(0.05)
        answer = b""
        while sent < send:
            try:
                answer += sock.recv(4096)
                if answer:
                    break
            except TimeoutError:
                pass
            try:
                sock.settimeout(30)
                sock.sendall(chunk)
                sent += len(chunk)
                sock.settimeout(0.05)
            except OSError:  # the server closed the connection: read its answer
                break
        sock.settimeout(30)
        while b"\r\n" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
    finally:
        sock.close()
    return int(answer.split(b" ", 2)[1]), sent


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningArchive]:
    running = new_archive(tmp_path_factory.mktemp("supervised") / "home")
    config_file = running.config.home.config_file
    text = config_file.read_text()
    assert 'host = "0.0.0.0"' in text  # dicom.host's default: the school's network
    config_file.write_text(text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"'))
    add_user(running, "pers", ["personnel"])
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_status_exits_non_zero_when_the_archive_is_down(archive_home: RunningArchive) -> None:
    human = archive_home.cli("status")
    assert human.returncode == 1
    assert "not running" in human.stderr and "archive serve" in human.stderr
    machine = archive_home.cli("status", "--json")
    assert machine.returncode == 1
    report = json.loads(machine.stdout)
    assert report["up"] is False and report["serving"] is False


def test_status_exits_non_zero_when_serve_runs_but_nothing_answers(
    archive: RunningArchive,
) -> None:
    # serve holds the lock but Orthanc does not answer (stopped, not dead: no restart).
    orthanc = _orthanc_pid(archive)
    os.kill(orthanc, signal.SIGSTOP)
    try:
        result = archive.cli("status")
    finally:
        os.kill(orthanc, signal.SIGCONT)
    assert result.returncode == 1
    assert "does not answer" in result.stderr
    assert archive.cli("status").returncode == 0


def test_every_socket_is_on_the_configured_address(archive: RunningArchive) -> None:
    state = _serve_state(archive)
    nginx = server.listening_sockets(state["children"]["nginx"]["pid"])
    orthanc = server.listening_sockets(state["children"]["orthanc"]["pid"])
    front = server.listening_sockets(state["children"]["dicom-front"]["pid"])
    assert nginx == [f"127.0.0.1:{archive.config.http.port}"]
    internal = int(state["http"]["internal"].rsplit(":", 1)[1])
    # Orthanc has no DICOM server of its own: the front holds the DICOM port.
    assert orthanc == [f"127.0.0.1:{internal}"]
    assert front == [f"127.0.0.1:{archive.config.dicom.port}"]
    # status prints what really listens, read from the running processes.
    report = json.loads(archive.cli("status", "--json").stdout)
    assert report["up"] is True
    assert report["listening"] == {"nginx": nginx, "dicom-front": front, "orthanc": orthanc}
    assert report["dicom_listen"] == f"127.0.0.1:{archive.config.dicom.port}"
    human = archive.cli("status").stdout
    assert f"orthanc {', '.join(orthanc)}" in human
    assert "0.0.0.0" not in human


def test_big_anonymous_body_is_refused_without_growing_orthanc(archive: RunningArchive) -> None:
    pid = _orthanc_pid(archive)
    before = _rss_kb(pid)
    size = 300 * 1024 * 1024
    status, sent = _raw_post(archive, "/teaching/ui/login", size, size)
    assert status == 413
    assert sent < size  # refused on the way, not after reading it all
    status, sent = _raw_post(archive, "/instances", size, size)  # anonymous upload
    assert status in (401, 403)
    assert sent < size
    after = _rss_kb(pid)
    assert after - before < 8 * 1024, (before, after)
    records = _audit(
        archive,
        lambda r: r["action"] == "access.http" and r["detail"].get("status") == 413,
    )
    assert records and records[-1]["outcome"] == "denied"
    assert records[-1]["source"] == "127.0.0.1"
    # An authenticated upload of a normal (bigger than 64 KB) instance still works.
    data = to_bytes(
        make_ct_series(1, patient="BODY^LIMIT", patient_id="B1", rows=256, columns=256, seed=5)[0]
    )
    assert len(data) > 64 * 1024
    with client(archive, "pers") as http:
        answer = http.post("/instances", content=data)
    assert answer.status_code == 200, answer.text


def test_uri_that_is_not_utf8_is_refused_and_audited(archive: RunningArchive) -> None:
    with client(archive) as http:
        answer = http.get("/teaching/cases/%ff")
        assert answer.status_code == 400
        assert "Malformed URI" in answer.text
        assert http.get("/teaching/health").status_code == 200
    records = _audit(
        archive,
        lambda r: r["action"] == "access.http" and r["detail"].get("reason") == "malformed URI",
    )
    assert records and records[-1]["outcome"] == "denied"
    assert records[-1]["source"] == "127.0.0.1"
    assert "%ff" not in json.dumps(records[-1]).lower()


def _pixel_hash(data: bytes) -> str:
    return hashlib.sha256(pydicom.dcmread(io.BytesIO(data)).PixelData).hexdigest()


def test_orthanc_killed_is_restarted_audited_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    archive = new_archive(tmp_path / "home")
    register_node(archive, "supervised-scu", SCU, store=True)
    series = make_ct_series(30, patient="KILL^NINE", patient_id="K9", seed=9)
    files = write_files(tmp_path / "in", [to_bytes(ds) for ds in series])
    pixels = {
        p: hashlib.sha256(ds.PixelData).hexdigest() for p, ds in zip(files, series, strict=True)
    }
    archive.start()
    try:
        first = _orthanc_pid(archive)
        acked: dict[Path, bool] = {}
        stop = threading.Event()

        def send() -> None:
            for path in files:
                if stop.is_set():
                    return
                result = storescu(archive.dicom_port, archive.aet, SCU, [path])
                acked[path] = result.returncode == 0 and "Store Failed" not in result.stderr

        sender = threading.Thread(target=send)
        sender.start()
        while sum(acked.values()) < 5 and sender.is_alive():
            time.sleep(0.05)
        os.kill(first, signal.SIGKILL)  # Orthanc only: serve must bring it back
        stop.set()
        sender.join(timeout=120)
        assert _wait_healthy(archive), archive.log_tail()
        assert archive.process.poll() is None  # serve itself kept running
        deadline = time.monotonic() + 30  # serve.json names the new child once it is up
        while _orthanc_pid(archive) == first and time.monotonic() < deadline:
            time.sleep(0.2)
        second = _orthanc_pid(archive)
        assert second != first
        told_stored = [p for p, ok in acked.items() if ok]
        assert len(told_stored) >= 5
        on_disk = {_pixel_hash(d) for d in archive.stored_dicom()}
        lost = [p.name for p in told_stored if pixels[p] not in on_disk]
        assert not lost, f"acknowledged but lost: {lost}"
        exits = _audit(archive, lambda r: r["action"] == "serve.child_exit")
        assert exits and exits[-1]["detail"]["child"] == "orthanc"
        assert exits[-1]["detail"]["reason"] == "killed by SIGKILL"
        assert _audit(archive, lambda r: r["action"] == "serve.child_restart")
        report = json.loads(archive.cli("status", "--json").stdout)
        assert report["children"]["orthanc"]["restarts"] == 1
        assert report["children"]["orthanc"]["last_exit"] == "killed by SIGKILL"
        # The sender resends what it was not told was stored; then all are there.
        for path in files:
            if not acked.get(path):
                assert storescu(archive.dicom_port, archive.aet, SCU, [path]).returncode == 0
        assert {_pixel_hash(d) for d in archive.stored_dicom()} == set(pixels.values())
    finally:
        code = archive.stop()
    assert code == 0
