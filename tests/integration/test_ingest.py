"""De-identification on ingest through a real Orthanc: C-STORE (dcmtk) and REST alike."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from archive import db
from tests.corpus import make_ct_series, make_planted_instance, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, register_node

SCU = "SUITE_SCU"


@pytest.fixture
def archive(archive_home: RunningArchive):
    register_node(archive_home, "suite-scu", SCU, store=True)
    add_user(archive_home, "intake", ["personnel"])  # REST uploads need a named user
    archive_home.start()
    try:
        yield archive_home
    finally:
        archive_home.stop()


def _stored_files(archive: RunningArchive) -> list[bytes]:
    """What Orthanc stored, decrypted from disk (the file routes are never open)."""
    return archive.stored_dicom()


def _upload(archive: RunningArchive, payload: bytes) -> int:
    with client(archive, "intake") as http:
        return http.post("/instances", content=payload).status_code


def _every_file_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_planted_identifiers_never_stored(archive: RunningArchive, tmp_path: Path) -> None:
    ds, planted = make_planted_instance()
    files = write_files(tmp_path / "in", [to_bytes(ds)])
    result = storescu(archive.dicom_port, archive.aet, SCU, files)
    assert result.returncode == 0, result.stderr
    stored = _stored_files(archive)
    assert len(stored) == 1
    released = stored[0]
    for value in planted:
        assert value.encode() not in _without_new_uids(released), (
            f"planted value survived: {value!r}"
        )
    out = pydicom.dcmread(io.BytesIO(released))
    assert out.PatientIdentityRemoved == "YES"
    assert out.PixelData == ds.PixelData
    # At rest: neither planted values nor even the DICOM magic in any file of the home.
    for path in _every_file_under(archive.home):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # a temporary file renamed into place meanwhile: its target is listed
        assert b"DICM" not in data or path.suffix in (".toml", ".json", ".log"), path
        for value in planted:
            assert value.encode() not in _without_new_uids(data), f"{value!r} in clear in {path}"


def _without_new_uids(data: bytes) -> bytes:
    """The bytes with every 2.25 UID the archive made blanked: such a UID is ~39 random
    digits (a keyed hash under this home's random key), so about one run in 300 one of
    them contains a planted 8-digit date by chance - not a leak."""
    return re.sub(rb"2\.25\.\d+", b"2.25.X", data)


def test_rest_and_cstore_give_one_consistent_study(archive: RunningArchive, tmp_path: Path) -> None:
    series = make_ct_series(4, patient="SMITH^ALAN", patient_id="PID555")
    payloads = [to_bytes(ds) for ds in series]
    files = write_files(tmp_path / "cs", payloads[:2])
    assert storescu(archive.dicom_port, archive.aet, SCU, files).returncode == 0
    for payload in payloads[2:]:
        assert _upload(archive, payload) == 200
    # The same study sent again lands on the same (de-identified) UIDs: no duplicates.
    assert storescu(archive.dicom_port, archive.aet, SCU, files).returncode == 0
    counts = archive.counts()
    assert counts["studies"] == 1
    assert counts["instances"] == 4
    stored = _stored_files(archive)
    assert len(stored) == 4
    datasets = [pydicom.dcmread(io.BytesIO(f)) for f in stored]
    assert {d.StudyInstanceUID for d in datasets} != {series[0].StudyInstanceUID}
    assert all(d.StudyInstanceUID.startswith("2.25.") for d in datasets)
    assert len({d.PatientID for d in datasets}) == 1
    assert "PID555" not in {d.PatientID for d in datasets}


def test_burnt_in_candidates_are_held_encrypted(archive: RunningArchive, tmp_path: Path) -> None:
    # US1_UNCR has a masking template (GE LOGIQ 700): masked and stored. The same image
    # from an unknown device has none: held, encrypted, for a reviewer.
    us = pydicom.data.get_testdata_file("US1_UNCR.dcm")
    unknown = pydicom.dcmread(us)
    unknown.Manufacturer = "Unknown Devices Ltd"
    files = [us, *write_files(tmp_path / "unk", [to_bytes(unknown)])]
    result = storescu(archive.dicom_port, archive.aet, SCU, files)
    assert result.returncode == 0, result.stderr  # held safely counts as stored
    stored = [pydicom.dcmread(__import__("io").BytesIO(f)) for f in _stored_files(archive)]
    assert len(stored) == 1 and stored[0].BurnedInAnnotation == "NO"
    conn = db.connect(archive.config.home.db_path)
    items = conn.execute("SELECT reason, status FROM quarantine_items").fetchall()
    assert len(items) == 1 and "no masking template" in items[0]["reason"]
    for path in _every_file_under(archive.config.home.quarantine_dir):
        assert b"DICM" not in path.read_bytes()


def test_bad_input_refused_and_orthanc_keeps_running(archive: RunningArchive) -> None:
    for payload in (b"not dicom" * 50, to_bytes(make_ct_series(1)[0])[:300]):
        status = _upload(archive, payload)
        assert 400 <= status < 600 and status != 403, status  # refused by ingest, not access
    assert archive.counts()["instances"] == 0
    good = to_bytes(make_ct_series(1)[0])
    assert _upload(archive, good) == 200


def test_unregistered_ae_cannot_store(archive: RunningArchive, tmp_path: Path) -> None:
    files = write_files(tmp_path / "x", [to_bytes(make_ct_series(1)[0])])
    result = storescu(archive.dicom_port, archive.aet, "INTRUDER", files)
    assert result.returncode != 0
    assert archive.counts()["instances"] == 0


def test_rest_upload_records_who_ingested_for_the_quarantine(
    archive: RunningArchive, tmp_path: Path
) -> None:
    """A REST upload is attributed to its named user, so that user cannot release it."""
    unknown = pydicom.dcmread(pydicom.data.get_testdata_file("US1_UNCR.dcm"))
    unknown.Manufacturer = "Unknown Devices Ltd"
    assert _upload(archive, to_bytes(unknown)) == 200
    storescu(archive.dicom_port, archive.aet, SCU, write_files(tmp_path / "d", [to_bytes(unknown)]))
    conn = db.connect(archive.config.home.db_path)
    rows = conn.execute("SELECT id, ingested_by FROM quarantine_items ORDER BY rowid").fetchall()
    assert [r["ingested_by"] for r in rows] == ["rest:intake", "dicom"]
    add_user(archive, "other", ["personnel"])
    secret = tmp_path / "intake.password"  # the uploader tries, with its own credentials
    secret.write_text(archive.passwords["intake"])
    refused = archive.cli(
        "quarantine", "release", rows[0]["id"], "--as", "intake", "--password-file", str(secret)
    )
    assert refused.returncode != 0 and "your own" in refused.stderr
