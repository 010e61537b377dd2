"""SIGKILL during key rotation: `archive keys rotate` killed mid-rewrap, archive stopped.

The rotation rewraps one 116-byte header per file behind a journal; the keyring records
the rotation as pending until every file is done. Killed after some files, a rerun must
resume the same rotation (no further key), every stored file must still decrypt to the
same bytes, the archive must start and serve, and the audit chain must verify.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import ARCHIVE_BIN, new_archive, register_node

SCU = "ROT_SCU"
N = 60  # instances: two attachments each, so ~120 headers to rewrap


def _rotate_and_kill(archive, after_lines: int = 1) -> bool:
    """Run `archive keys rotate`, SIGKILL it after its first progress line(s).
    True if it was killed before finishing."""
    process = subprocess.Popen(
        [ARCHIVE_BIN, "keys", "rotate", "--home", str(archive.home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=archive.env,
        start_new_session=True,
    )
    seen = 0
    killed = False
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("rewrapped "):
            done, total = (int(x) for x in line.split()[1].split("/"))
            seen += 1
            if seen >= after_lines and done < total:
                os.killpg(process.pid, signal.SIGKILL)
                killed = True
                break
    process.wait()
    process.stderr.close()
    return killed and process.returncode == -signal.SIGKILL


def test_sigkill_mid_rotation_resumes_and_loses_nothing(tmp_path: Path) -> None:
    archive = new_archive(tmp_path / "home")
    register_node(archive, "rot-scu", SCU, store=True)
    series = make_ct_series(N, patient="ROTATE^KILL", patient_id="RK1", seed=7)
    files = write_files(tmp_path / "in", [to_bytes(ds) for ds in series])
    archive.start()
    try:
        result = storescu(archive.dicom_port, archive.aet, SCU, files)
        assert result.returncode == 0, result.stderr
        before = sorted(archive.stored_dicom())
        assert len(before) == N
    finally:
        archive.stop()

    status = json.loads(archive.cli("keys", "status", "--json").stdout)
    killed = any(_rotate_and_kill(archive, after_lines=1 + attempt) for attempt in range(5))
    assert killed, "the rotation always finished before it could be killed"
    mid = json.loads(archive.cli("keys", "status", "--json").stdout)
    assert mid["rotation_pending"], mid  # killed mid-rewrap: the keyring knows
    assert sorted(archive.stored_dicom()) == before  # readable mid-rotation, old+new keys

    resumed = archive.cli("keys", "rotate", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed"] is True, report
    assert report["failures"] == {}, report
    assert report["retired"], report  # every file now names the new key
    after = json.loads(archive.cli("keys", "status", "--json").stdout)
    assert not after["rotation_pending"], after
    assert status["rotation_pending"] is None or not status["rotation_pending"]

    archive.start()
    try:
        assert archive.counts()["instances"] == N
        assert sorted(archive.stored_dicom()) == before
    finally:
        archive.stop()
    fsck = archive.cli("fsck", "--json")
    assert json.loads(fsck.stdout)["ok"], fsck.stdout + fsck.stderr
    audit = archive.cli("audit", "verify", "--json")
    assert audit.returncode == 0 and json.loads(audit.stdout)["ok"], audit.stdout + audit.stderr
