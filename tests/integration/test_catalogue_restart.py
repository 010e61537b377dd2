"""A study Orthanc stored but never reported stable (restart first) still becomes a case.

Orthanc forgets unstable studies when it stops, so no STABLE_STUDY change ever comes for
them; the sync adapter catches up at ORTHANC_STARTED. A long stable age makes the order
deterministic: the study cannot become stable before the first stop.
"""

from __future__ import annotations

import time
from pathlib import Path

from archive import db
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import add_user, client, new_archive, register_node


def _case_count(archive) -> int:
    conn = db.connect(archive.config.home.db_path)
    try:
        return conn.execute("SELECT count(*) FROM catalogue_cases").fetchone()[0]
    finally:
        conn.close()


def test_study_stored_before_a_restart_is_catalogued_at_start(tmp_path: Path) -> None:
    archive = new_archive(
        tmp_path / "home", serve_args=["--allow-unencrypted-volume", "--stable-age", "600"]
    )
    register_node(archive, "src", "SRC_AE", store=True)
    add_user(archive, "tina", ["trainer"])
    archive.start()
    try:
        files = write_files(tmp_path / "in", [to_bytes(ds) for ds in make_ct_series(2)])
        assert storescu(archive.dicom_port, archive.aet, "SRC_AE", files).returncode == 0
    finally:
        archive.stop()
    assert _case_count(archive) == 0  # never reported stable
    archive.start()
    try:
        with client(archive, "tina") as http:
            deadline = time.monotonic() + 30
            total = 0
            while time.monotonic() < deadline and not total:
                total = http.get("/teaching/cases").json()["total"]
                time.sleep(0.2)
            assert total == 1
            case = http.get("/teaching/cases").json()["items"][0]
            assert (case["instance_count"], case["status"]) == (2, "available")
    finally:
        archive.stop()
