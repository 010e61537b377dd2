"""A full disk under HOME/data: ingest refuses clearly, nothing acknowledged is lost.

HOME/data (storage area, Orthanc's index, the archive database, the audit log, the
quarantine) sits on a 24 MB tmpfs, nearly filled by a filler file. Instances are sent
one per storescu call and one per REST upload until the disk is full. The sender must be
told of every failure (non-zero storescu exit, HTTP 4xx/5xx saying the disk is full),
Orthanc keeps serving, and once the filler is deleted the resend succeeds, everything
acknowledged reads back byte-identical, fsck is clean (after repairing temporaries) and
the audit chain verifies.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, new_archive, register_node

SCU = "FULL_SCU"
SIZE = "24m"
HEADROOM = 7 * 1024 * 1024  # free space beside the filler: a few instances beyond the reserve
MAX_SENDS = 120


def _pixel_hash(data: bytes) -> str:
    return hashlib.sha256(pydicom.dcmread(io.BytesIO(data)).PixelData).hexdigest()


def _mount_tmpfs(data_dir: Path) -> None:
    """Move HOME/data onto a fresh small tmpfs, keeping its content and modes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs over HOME/data needs root (mount -t tmpfs)")
    saved = data_dir.with_name("data.before-mount")
    data_dir.rename(saved)
    data_dir.mkdir(mode=0o700)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        data_dir.rmdir()
        saved.rename(data_dir)
        pytest.skip(f"cannot mount a {SIZE} tmpfs here: {result.stderr.strip()}")
    shutil.copytree(saved, data_dir, dirs_exist_ok=True, copy_function=shutil.copy2)
    shutil.rmtree(saved)


def _unmount(data_dir: Path) -> None:
    subprocess.run(["umount", "-l", str(data_dir)], capture_output=True, check=False)


def _fill(path: Path, leave: int) -> None:
    """Write a filler file so that about `leave` bytes stay free."""
    stats = os.statvfs(path.parent)
    free = stats.f_bavail * stats.f_frsize
    with open(path, "wb") as handle:
        handle.truncate(0)
        chunk = b"\0" * (1024 * 1024)
        remaining = max(0, free - leave)
        while remaining > 0:
            handle.write(chunk[: min(len(chunk), remaining)])
            remaining -= min(len(chunk), remaining)
        handle.flush()
        os.fsync(handle.fileno())


def _instances(archive: RunningArchive, expected: int) -> int:
    """Orthanc's instance count (health follows change events: poll briefly)."""
    deadline = time.monotonic() + 20
    while (count := archive.counts()["instances"]) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def _fsck(archive: RunningArchive, *extra: str) -> dict:
    result = archive.cli("fsck", "--json", *extra)
    return json.loads(result.stdout) if result.stdout.strip() else {"error": result.stderr}


def test_full_disk_refuses_clearly_and_recovers(tmp_path: Path) -> None:
    archive = new_archive(tmp_path / "home")
    register_node(archive, "full-scu", SCU, store=True)
    add_user(archive, "intake", ["personnel"])
    data_dir = archive.config.home.data_dir
    series = make_ct_series(MAX_SENDS, patient="FULL^DISK", patient_id="FD1", rows=256, columns=256)
    payloads = [to_bytes(ds) for ds in series]
    files = write_files(tmp_path / "in", payloads)
    pixels = [hashlib.sha256(ds.PixelData).hexdigest() for ds in series]

    _mount_tmpfs(data_dir)
    try:
        archive.start()
        try:
            filler = data_dir / "filler.bin"
            _fill(filler, HEADROOM)
            acked: dict[int, bool] = {}
            refusals: list[str] = []
            with client(archive, "intake") as http:
                for index, path in enumerate(files):
                    if index % 2 == 0:
                        result = storescu(archive.dicom_port, archive.aet, SCU, [path])
                        ok = result.returncode == 0 and "Store Failed" not in result.stderr
                        if not ok:
                            refusals.append("dicom")
                    else:
                        answer = http.post("/instances", content=payloads[index])
                        ok = answer.status_code == 200
                        if not ok:
                            assert 400 <= answer.status_code < 600, answer.status_code
                            assert answer.status_code != 403, "refused by access, not ingest"
                            assert answer.text.strip(), "an HTTP failure without a message"
                            refusals.append("rest")
                    acked[index] = ok
                    if {"dicom", "rest"} <= set(refusals) and len(refusals) >= 4:
                        break
            sent = len(acked)
            assert {"dicom", "rest"} <= set(refusals), f"the disk never filled: {refusals}"
            assert sent < MAX_SENDS
            # Orthanc keeps running and answering while full.
            assert archive.process is not None and archive.process.poll() is None
            assert archive.health() is not None
            log = archive.log.read_text(errors="replace")
            assert "data volume is full" in log and "free space on" in log
            # Nothing refused was stored: Orthanc holds exactly what the senders were told.
            told_stored = [i for i, ok in acked.items() if ok]
            assert _instances(archive, len(told_stored)) == len(told_stored)
            while_full = archive.stored_dicom()  # everything on disk decrypts
            assert {_pixel_hash(d) for d in while_full} == {pixels[i] for i in told_stored}

            filler.unlink()  # space is back: the senders resend what was refused
            with client(archive, "intake") as http:
                for index in range(sent):
                    if acked[index]:
                        continue
                    if index % 2 == 0:
                        result = storescu(archive.dicom_port, archive.aet, SCU, [files[index]])
                        assert result.returncode == 0, result.stdout + result.stderr
                    else:
                        answer = http.post("/instances", content=payloads[index])
                        assert answer.status_code == 200, answer.text
            assert _instances(archive, sent) == sent
            after = archive.stored_dicom()
            assert len(after) == sent
            assert set(while_full) <= set(after), "an acknowledged instance changed or vanished"
            assert {_pixel_hash(d) for d in after} == {pixels[i] for i in range(sent)}
        finally:
            archive.stop()

        first = _fsck(archive)
        assert "findings" in first, first
        kinds = {f["kind"] for f in first["findings"]}
        assert kinds <= {"partial", "orphan_file", "audit_head"}, first
        if not first["ok"]:
            assert _fsck(archive, "--repair")["ok"]
        assert _fsck(archive)["ok"]
        audit = archive.cli("audit", "verify", "--json")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert json.loads(audit.stdout)["ok"]
    finally:
        _unmount(data_dir)
