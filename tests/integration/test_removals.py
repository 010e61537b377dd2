"""Removal requests end to end through a real archive: written approval before export.

request -> self-approval refused -> TPD approves -> export (CLI, passphrase) -> decrypt
with pyrage -> manifest verified against what the archive stored -> download limit and
expiry enforced; commercial purposes and publication of a limited-access case refused.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyrage
import pytest

from archive.export import open_package, verify_package
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, register_node
from tests.integration.test_pulls import wait_for_cases

SCU = "SUITE_SCU"
PASSPHRASE = "export passphrase for the tests"


@pytest.fixture
def suite(archive_home: RunningArchive, tmp_path: Path):
    register_node(archive_home, "suite-scu", SCU, store=True)
    add_user(archive_home, "trainer1", ["trainer"])
    add_user(archive_home, "tpd1", ["tpd"])
    add_user(archive_home, "tpdtrainer", ["tpd", "trainer"])  # may request and approve
    archive_home.start()
    try:
        series = make_ct_series(2, patient="REMOVE^PATIENT", patient_id="PIDREM1")
        files = write_files(tmp_path / "in", [to_bytes(ds) for ds in series])
        for _ in range(30):  # the DICOM port may open after /teaching/health
            sent = storescu(archive_home.dicom_port, archive_home.aet, SCU, files)
            if sent.returncode == 0:
                break
            time.sleep(1)
        assert sent.returncode == 0, sent.stderr
        yield archive_home, wait_for_cases(archive_home, 1)[0], tmp_path
    finally:
        archive_home.stop()


def _post(archive, user, path, body):
    with client(archive, user) as http:
        return http.post(path, json=body)


def test_request_approve_export_decrypt_verify(suite) -> None:
    archive, case_id, tmp_path = suite
    made = _post(
        archive, "tpdtrainer", "/teaching/removals",
        {"cases": [case_id], "purpose": "teaching_materials", "destination": "RCR lecture"},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    rid = made.json()["id"]

    # Nothing leaves before approval.
    with client(archive, "tpdtrainer") as http:
        early = http.get(
            f"/teaching/removals/{rid}/download", headers={"X-Export-Passphrase": PASSPHRASE}
        )
    assert early.status_code >= 400 and b"DICM" not in early.content

    own = _post(archive, "tpdtrainer", f"/teaching/removals/{rid}/approve", {"text": "ok"})
    assert own.status_code >= 400
    assert "request" in own.json()["error"].lower()

    # Issue 21: nobody approves in another's name; the refusal says why, in one line.
    theirs = tmp_path / "requester.pw"
    theirs.write_text(archive.passwords["tpdtrainer"])
    impostor = archive.cli(
        "removals", "approve", str(rid), "--text", "Approved.",
        "--as", "tpd1", "--password-file", str(theirs),
    )  # fmt: skip
    assert impostor.returncode == 1 and "HTTP 403" not in impostor.stderr
    assert "tpd1" in impostor.stderr and "password" in impostor.stderr
    assert len(impostor.stderr.strip().splitlines()) == 1

    secret = tmp_path / "tpd1.pw"
    secret.write_text(archive.passwords["tpd1"])
    approved = archive.cli(
        "removals", "approve", str(rid), "--text", "Approved for the RCR lecture only.",
        "--as", "tpd1", "--password-file", str(secret), "--json",
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr

    mine = tmp_path / "req.pw"
    mine.write_text(archive.passwords["tpdtrainer"])
    phrase = tmp_path / "phrase"
    phrase.write_text(PASSPHRASE)
    out = tmp_path / "package.age"
    exported = archive.cli(
        "removals", "export", str(rid), "-o", str(out), "--passphrase-file", str(phrase),
        "--as", "tpdtrainer", "--password-file", str(mine),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    blob = out.read_bytes()
    assert b"DICM" not in blob
    plain = pyrage.passphrase.decrypt(blob, PASSPHRASE)
    assert plain  # age, decryptable by any age implementation
    contents = open_package(blob, passphrase=PASSPHRASE)
    assert verify_package(contents) == []
    manifest = contents.manifest
    assert manifest["approval"]["reference"] == f"REMOVAL-{rid:06d}"
    assert manifest["approval"]["approver"] == "tpd1"
    assert [c["case_id"] for c in manifest["cases"]] == [case_id]
    stored = {hashlib.sha256(b).hexdigest() for b in archive.stored_dicom()}
    listed = {i["sha256"] for c in manifest["cases"] for i in c["instances"]}
    assert listed == stored and len(listed) == 2
    assert "educational" in contents.terms.lower()

    # One download only (policy default): the second is refused.
    again = archive.cli(
        "removals", "export", str(rid), "-o", str(tmp_path / "again.age"),
        "--passphrase-file", str(phrase), "--as", "tpdtrainer", "--password-file", str(mine),
    )  # fmt: skip
    assert again.returncode != 0
    assert "download" in again.stderr.lower()
    assert not (tmp_path / "again.age").exists()


def test_expiry_enforced(suite) -> None:
    archive, case_id, _ = suite
    rid = _post(
        archive, "trainer1", "/teaching/removals",
        {"cases": [case_id], "purpose": "teaching_materials", "destination": "workshop"},
    ).json()["id"]  # fmt: skip
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    ok = _post(
        archive, "tpd1", f"/teaching/removals/{rid}/approve",
        {"text": "Workshop, today only.", "expires_at": soon, "max_downloads": 3},
    )  # fmt: skip
    assert ok.status_code == 200, ok.text
    time.sleep(3)
    with client(archive, "trainer1") as http:
        late = http.get(
            f"/teaching/removals/{rid}/download", headers={"X-Export-Passphrase": PASSPHRASE}
        )
        shown = http.get(f"/teaching/removals/{rid}").json()
    assert late.status_code == 409  # a refusal of state (issue 21), with what to do next
    assert "expired" in late.json()["error"] and late.json()["next"]
    assert shown["status"] == "expired"
    assert shown["downloads"] == []


def test_commercial_and_limited_access_publication_refused(suite) -> None:
    archive, case_id, _ = suite
    commercial = _post(
        archive, "trainer1", "/teaching/removals",
        {"cases": [case_id], "purpose": "commercial", "destination": "vendor"},
    )  # fmt: skip
    assert commercial.status_code == 400
    assert "commercial" in commercial.json()["error"]
    publication = _post(
        archive, "trainer1", "/teaching/removals",
        {"cases": [case_id], "purpose": "publication_journal", "destination": "journal"},
    )  # fmt: skip
    assert publication.status_code == 400
    assert "publication" in publication.json()["error"]
    with client(archive, "trainer1") as http:
        assert http.get("/teaching/removals").json()["removals"] == []
