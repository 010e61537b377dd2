"""The vault's instance ledger against a real Orthanc: its ids are Orthanc's own, rows come
and go with the stored files, and a home made before the ledger is backfilled at start."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from archive import db
from archive.vault.ledger import InstanceLedger
from tests.corpus import make_ct_series, make_sr_instance, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, register_node
from tests.integration.test_pulls import wait_for_cases

pytestmark = pytest.mark.orthanc
SCU = "LEDGER_SCU"


def _orthanc_ids(archive: RunningArchive) -> dict[int, set[str]]:
    """Public ids by level (Orthanc's index: 2 study, 3 series, 4 instance)."""
    index = archive.config.home.index_dir / "index"
    conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT resourceType, publicId FROM Resources").fetchall()
    finally:
        conn.close()
    out: dict[int, set[str]] = {1: set(), 2: set(), 3: set()}
    for kind, public in rows:
        if kind - 1 in out:
            out[kind - 1].add(public)
    return out


def _ledger_rows(archive: RunningArchive) -> list[tuple]:
    conn = db.connect(archive.config.home.db_path)
    try:
        InstanceLedger(conn)
        rows = conn.execute(
            "SELECT uuid, orthanc_study_id, orthanc_series_id, orthanc_instance_id"
            " FROM vault_instances"
        ).fetchall()
        return [tuple(r) for r in rows]
    finally:
        conn.close()


def _send(archive: RunningArchive, files: list[Path]) -> None:
    for _ in range(30):  # the DICOM port may open a moment after /teaching/health
        sent = storescu(archive.dicom_port, archive.aet, SCU, files)
        if sent.returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(sent.stderr)


def test_ledger_ids_are_orthancs_and_old_homes_are_backfilled(
    archive_home: RunningArchive, tmp_path: Path
) -> None:
    register_node(archive_home, "ledger-scu", SCU, store=True)
    series = make_ct_series(3, patient="LEDGER^ONE", patient_id="PIDLEDGER1")
    sr = make_sr_instance(patient="LEDGER^ONE", patient_id="PIDLEDGER1")
    sr.StudyInstanceUID = series[0].StudyInstanceUID
    files = write_files(tmp_path / "in", [to_bytes(ds) for ds in [*series, sr]])
    archive_home.start()
    try:
        _send(archive_home, files)
        wait_for_cases(archive_home, 1)
    finally:
        archive_home.stop()
    orthanc = _orthanc_ids(archive_home)
    rows = _ledger_rows(archive_home)
    assert len(rows) == 4
    assert {r[1] for r in rows} == orthanc[1]
    assert {r[2] for r in rows} == orthanc[2]
    assert {r[3] for r in rows} == orthanc[3]

    # A home from before the ledger: no rows. The next start records every stored file.
    conn = db.connect(archive_home.config.home.db_path)
    try:
        conn.execute("DELETE FROM vault_instances")
    finally:
        conn.close()
    archive_home.start()
    try:
        assert "instance ledger: 4/4 file(s) recorded" in archive_home.log.read_text()
    finally:
        archive_home.stop()
    assert sorted(_ledger_rows(archive_home)) == sorted(rows)
