"""Crash leftovers are cleaned when the plugin starts (plugins/storage.py).

A SIGKILL between a temporary file's creation and its rename leaves a hidden
`.<name>.<random>.tmp` beside the stored files. The storage adapter removes those from
the storage area and the quarantine before Orthanc writes anything, and leaves stored
files alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import new_archive, register_node

SCU = "CLEANUP_SCU"


def test_stale_temporaries_are_gone_after_a_restart(tmp_path: Path) -> None:
    archive = new_archive(tmp_path / "home")
    register_node(archive, "cleanup-scu", SCU, store=True)
    series = make_ct_series(2, patient="CLEAN^UP", patient_id="CU1", seed=5)
    files = write_files(tmp_path / "in", [to_bytes(ds) for ds in series])
    home = archive.config.home
    archive.start()
    try:
        assert storescu(archive.dicom_port, archive.aet, SCU, files).returncode == 0
        before = sorted(archive.stored_dicom())
        assert len(before) == 2
        archive.kill()  # a crash, then leftovers as a torn write would leave them
        shard = next(p.parent for p in home.storage_dir.rglob("*.1"))
        stale = [
            shard / ".0123abcd-0000-0000-0000-000000000000.1.a1b2c3d4e5f6.tmp",
            home.storage_dir / "ab" / "cd" / ".abcd0000-0000.1.000000000000.tmp",
            home.quarantine_dir / "ef" / "01" / ".ef010000-0000.1.ffffffffffff.tmp",
        ]
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"half-written ciphertext")
            os.utime(path, (1_000_000_000, 1_000_000_000))
        keep = home.storage_dir / "ab" / "cd" / "not-ours.txt"  # not the temporary pattern
        keep.write_bytes(b"x")

        archive.start()
        leftovers = [p for p in stale if p.exists()]
        assert not leftovers, f"temporaries survived the restart: {leftovers}"
        assert keep.exists(), "cleanup removed a file that is not a temporary"
        assert sorted(archive.stored_dicom()) == before  # stored files untouched
        assert "crash leftovers" in archive.log.read_text(errors="replace")
    finally:
        archive.stop()
