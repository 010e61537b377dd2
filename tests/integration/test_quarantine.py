"""Pixel checks on ingest and the quarantine review, through a real Orthanc and the CLI.

Orthanc's own listings are read with an open REST API for this test archive (the
benchmark entry, tests.harness.OPEN_REST), so the test sees everything Orthanc holds: what
matters here is what reaches Orthanc at all. The reviewer acts for themselves (issue
21): mask and reject with their own password checked on the home, release over REST
with the same credentials; nobody is named with --reviewer.
"""

from __future__ import annotations

import io
import json
import urllib.request

import pydicom
import pydicom.data
import pytest

from archive import db
from archive.paths import POLICIES_DIR
from archive.pixels import load_masking_policy, tesseract_available
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import OPEN_REST, RunningArchive, add_user, register_node

SCU = "SUITE_SCU"
pytestmark = pytest.mark.skipif(
    not tesseract_available(load_masking_policy(POLICIES_DIR)),
    reason="apt-get install tesseract-ocr",
)


@pytest.fixture
def archive(archive_home: RunningArchive):
    register_node(archive_home, "suite-scu", SCU, store=True)
    add_user(archive_home, "alice", ["personnel"])
    add_user(archive_home, "bob", ["personnel"])
    archive_home.env.update(OPEN_REST)  # the benchmark entry: REST open on loopback
    archive_home.start()
    try:
        yield archive_home
    finally:
        archive_home.stop()


def _get(archive: RunningArchive, path: str) -> bytes:
    with urllib.request.urlopen(archive.url + path, timeout=30) as answer:
        return answer.read()


def _instances(archive: RunningArchive) -> list[pydicom.Dataset]:
    ids = json.loads(_get(archive, "/instances"))
    return [pydicom.dcmread(io.BytesIO(_get(archive, f"/instances/{i}/file"))) for i in ids]


def _items(archive: RunningArchive) -> list[dict]:
    result = archive.cli("quarantine", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _as(archive: RunningArchive, user: str, tmp_path) -> list[str]:
    secret = tmp_path / f"{user}.pw"
    secret.write_text(archive.passwords[user])
    return ["--as", user, "--password-file", str(secret)]


def _unknown_us(tmp_path):
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("US1_UNCR.dcm"))
    ds.Manufacturer = "Unknown Devices Ltd"
    return write_files(tmp_path / "unk", [to_bytes(ds)])


def test_template_us_masked_released_ct_unaffected(archive, tmp_path):
    us = pydicom.data.get_testdata_file("US1_UNCR.dcm")
    ct = write_files(tmp_path / "ct", [to_bytes(d) for d in make_ct_series(2)])
    assert storescu(archive.dicom_port, archive.aet, SCU, [us, *ct]).returncode == 0
    stored = _instances(archive)
    assert len(stored) == 3 and _items(archive) == []
    (masked,) = [d for d in stored if d.Modality == "US"]
    assert masked.BurnedInAnnotation == "NO"
    arr = masked.pixel_array
    assert not arr[0:108].any() and not arr[345:480].any() and arr[108:345].any()
    for ct_ds in (d for d in stored if d.Modality == "CT"):
        assert "BurnedInAnnotation" not in ct_ds or ct_ds.BurnedInAnnotation != "NO"


def test_unknown_device_held_then_masked_and_released_by_other_reviewer(archive, tmp_path):
    assert storescu(archive.dicom_port, archive.aet, SCU, _unknown_us(tmp_path)).returncode == 0
    assert json.loads(_get(archive, "/instances")) == []  # nothing unreviewed in Orthanc
    (item,) = _items(archive)
    assert item["kind"] == "pixels" and "no masking template" in item["reason"]

    # release before masking: OCR still finds the burnt-in text
    named = archive.cli("quarantine", "release", item["id"], "--reviewer", "bob")
    assert named.returncode == 1 and "--reviewer is no longer accepted" in named.stderr
    refused = archive.cli("quarantine", "release", item["id"], *_as(archive, "bob", tmp_path))
    assert refused.returncode == 1 and "OCR" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert json.loads(_get(archive, "/instances")) == []

    preview = tmp_path / "preview.png"
    shown = archive.cli("quarantine", "show", item["id"], "--out", str(preview), "--json")
    assert shown.returncode == 0, shown.stderr
    assert preview.read_bytes()[:4] == b"\x89PNG" and (preview.stat().st_mode & 0o777) == 0o600

    # text outside the reviewer's regions: still not clean
    nobody = archive.cli("quarantine", "mask", item["id"], "--region", "0,0,640,108")
    assert nobody.returncode == 1 and "--password-file" in nobody.stderr  # no credentials
    partial = archive.cli("quarantine", "mask", item["id"], "--region", "0,0,640,108",
                          *_as(archive, "alice", tmp_path), "--json")  # fmt: skip
    assert partial.returncode == 0, partial.stderr
    assert json.loads(partial.stdout)["words_left"] > 0
    masked = archive.cli(
        "quarantine",
        "mask",
        item["id"],
        "--region",
        "0,0,640,108",
        "--region",
        "0,345,640,135",
        "--image-area",
        "0,108,640,237",
        *_as(archive, "alice", tmp_path),
        "--json",
    )
    assert json.loads(masked.stdout)["ocr_clean"], masked.stdout

    # the ingester may not release (records say who ingested: here the DICOM intake)
    conn = db.connect(archive.config.home.db_path)
    conn.execute(
        "UPDATE quarantine_items SET ingested_by = 'rest:alice' WHERE id = ?", (item["id"],)
    )
    same = archive.cli("quarantine", "release", item["id"], *_as(archive, "alice", tmp_path))
    assert same.returncode == 1 and "own request" in same.stderr  # actions.toml: not_own
    assert "never a study they uploaded themselves" in same.stderr

    released = archive.cli(
        "quarantine", "release", item["id"], *_as(archive, "bob", tmp_path), "--json"
    )
    assert released.returncode == 0, released.stderr
    (ds,) = _instances(archive)
    assert ds.SOPInstanceUID == item["sop_uid"] and ds.StudyInstanceUID == item["study_uid"]
    assert ds.BurnedInAnnotation == "NO" and not ds.pixel_array[0:108].any()
    assert _items(archive) == []
    files = [p for p in archive.config.home.quarantine_dir.rglob("*") if p.is_file()]
    assert files == []  # released: the ciphertext is gone


def test_reject_crypto_deletes(archive, tmp_path):
    assert storescu(archive.dicom_port, archive.aet, SCU, _unknown_us(tmp_path)).returncode == 0
    (item,) = _items(archive)
    qdir = archive.config.home.quarantine_dir
    assert [p for p in qdir.rglob("*") if p.is_file()]
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("certainly not bob's password")
    impostor = archive.cli("quarantine", "reject", item["id"], "--as", "bob",
                           "--password-file", str(wrong))  # fmt: skip
    assert impostor.returncode == 1 and "bob could not be authenticated" in impostor.stderr
    assert [p for p in qdir.rglob("*") if p.is_file()]
    result = archive.cli("quarantine", "reject", item["id"], *_as(archive, "bob", tmp_path))
    assert result.returncode == 0, result.stderr
    assert [p for p in qdir.rglob("*") if p.is_file()] == []
    assert json.loads(_get(archive, "/instances")) == []
    again = archive.cli("quarantine", "release", item["id"], *_as(archive, "bob", tmp_path))
    assert again.returncode == 1
