"""Power cuts during a C-STORE batch: SIGKILL the whole archive at a random moment.

Each file goes in its own storescu call, so its exit status is exactly what the sender
was told. After a restart every acknowledged instance must be there and decrypt to what
Orthanc recorded (fsck compares each plaintext with the index's MD5), leftovers of the
cut are found and safely cleaned, the audit chain verifies, and the sender can resend
the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import pydicom
import pytest

from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, new_archive, register_node

SCU = "CRASH_SCU"
N = 40


def _pixel_hash(data: bytes) -> str:
    return hashlib.sha256(pydicom.dcmread(io.BytesIO(data)).PixelData).hexdigest()


def _send_until(archive: RunningArchive, files: list[Path], stop: threading.Event, acked: dict):
    for path in files:
        if stop.is_set():
            return
        result = storescu(archive.dicom_port, archive.aet, SCU, [path])
        acked[path] = result.returncode == 0 and "Store Failed" not in result.stderr


def _reported_sops(archive: RunningArchive) -> set[str]:
    """SOP UIDs with a pixel report in the home's archive.db (read-only)."""
    uri = f"file:{archive.config.home.db_path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT sop_uid FROM ingest_pixel_reports")}


def _fsck(archive: RunningArchive, *extra: str) -> dict:
    result = archive.cli("fsck", "--json", *extra)
    return json.loads(result.stdout) if result.stdout.strip() else {"error": result.stderr}


@pytest.mark.parametrize("seed", [11, 22, 33])
def test_sigkill_during_cstore_batch_loses_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    archive = new_archive(tmp_path / "home")
    register_node(archive, "crash-scu", SCU, store=True)
    series = make_ct_series(N, patient=f"CRASH^{seed}", patient_id=f"C{seed}", seed=seed)
    files = write_files(tmp_path / "in", [to_bytes(ds) for ds in series])
    pixels = {
        path: hashlib.sha256(ds.PixelData).hexdigest()
        for path, ds in zip(files, series, strict=True)
    }
    archive.start()
    try:
        stop, acked = threading.Event(), {}
        sender = threading.Thread(target=_send_until, args=(archive, files, stop, acked))
        sender.start()
        time.sleep(rng.uniform(0.3, 2.5))
        archive.kill()  # the power cut: serve and Orthanc SIGKILLed together
        stop.set()
        sender.join(timeout=120)
        told_stored = [p for p, ok in acked.items() if ok]

        archive.start()
        on_disk = {_pixel_hash(data) for data in archive.stored_dicom()}  # all decrypt
        lost = [p.name for p in told_stored if pixels[p] not in on_disk]
        assert not lost, f"seed {seed}: acknowledged but lost after the cut: {lost}"
        # The sender retries what it was not told was stored; afterwards all are there.
        for path in files:
            if not acked.get(path):
                assert storescu(archive.dicom_port, archive.aet, SCU, [path]).returncode == 0
        deadline = time.monotonic() + 30
        while archive.counts()["instances"] < N and time.monotonic() < deadline:
            time.sleep(0.2)
        assert archive.counts()["instances"] == N
        stored = archive.stored_dicom()
        # A file written just before the cut but never indexed (an orphan, which fsck
        # reports and removes below) may stand beside its resent copy: count instances.
        uids = {pydicom.dcmread(io.BytesIO(d), stop_before_pixels=True).SOPInstanceUID
                for d in stored}  # fmt: skip
        assert len(uids) == N
        # The records of a stored instance (pixel report, ...) are committed without
        # their own fsync, carried by the ledger row's synchronous commit before Orthanc
        # answers (issue 26): none may be missing after the cut.
        assert not uids - _reported_sops(archive), "a stored instance lost its pixel report"
        assert len(stored) - N <= 1, "more than the one file the cut can leave unindexed"
        assert {_pixel_hash(d) for d in stored} == set(pixels.values())
    finally:
        archive.stop()

    # Stopped: fsck checks every file against Orthanc's index; only safe leftovers of
    # the cut (temporaries, files written before Orthanc committed) may be found.
    first = _fsck(archive)
    assert "findings" in first, first
    assert {f["kind"] for f in first["findings"]} <= {"partial", "orphan_file", "audit_head"}, first
    if not first["ok"]:
        assert _fsck(archive, "--repair")["ok"]
    assert _fsck(archive)["ok"]
    audit = archive.cli("audit", "verify", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert json.loads(audit.stdout)["ok"]
