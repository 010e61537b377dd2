"""Pulls to a real suite workstation (dcmtk storescp) through a real archive.

Pulled instances must arrive byte-identical to what the archive stored; the
workstation's own AE may C-FIND and C-MOVE (to itself), an unregistered AE may not;
untrained users and unreleased cases are refused; every pull lands in the inventory.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive import db
from archive.governance import PullInventory
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, base_env, client, free_port, register_node

SCU = "SUITE_SCU"
WS_AET = "WS1"


class StoreSCP:
    """A workstation: dcmtk storescp writing every received file to a directory."""

    def __init__(self, directory: Path, aet: str = WS_AET) -> None:
        self.directory = directory
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["storescp", "-aet", aet, "--output-directory", str(directory), str(self.port)],
            env=base_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)

    def files(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.directory.iterdir()) if p.is_file()]

    def clear(self) -> None:
        for p in self.directory.iterdir():
            p.unlink()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def wait_for_cases(archive: RunningArchive, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = db.connect(archive.config.home.db_path)
        try:
            rows = conn.execute(
                "SELECT case_id FROM catalogue_cases WHERE status = 'available' ORDER BY case_id"
            ).fetchall()
        except Exception:  # noqa: BLE001 - table not created yet
            rows = []
        finally:
            conn.close()
        if len(rows) >= count:
            return [r[0] for r in rows]
        time.sleep(0.5)
    raise AssertionError(f"no {count} available case(s); log:\n{archive.log_tail()}")


@pytest.fixture
def suite(archive_home: RunningArchive, tmp_path: Path) -> Iterator[tuple]:
    scp = StoreSCP(tmp_path / "ws1")
    register_node(archive_home, "suite-scu", SCU, store=True)
    added = archive_home.cli(
        "workstations", "add", "ws-01", "--aet", WS_AET, "--host", "127.0.0.1",
        "--port", str(scp.port), "--location", "Suite room 2",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    add_user(archive_home, "trainer1", ["trainer"])
    add_user(archive_home, "newbie", ["registrar"], trained=False)
    archive_home.start()
    try:
        series = make_ct_series(3, patient="PULL^PATIENT", patient_id="PIDPULL1")
        files = write_files(tmp_path / "in", [to_bytes(ds) for ds in series])
        for _ in range(30):  # the DICOM port may open a moment after /teaching/health
            sent = storescu(archive_home.dicom_port, archive_home.aet, SCU, files)
            if sent.returncode == 0:
                break
            time.sleep(1)
        assert sent.returncode == 0, sent.stderr
        cases = wait_for_cases(archive_home, 1)
        yield archive_home, scp, cases[0], tmp_path
    finally:
        archive_home.stop()
        scp.stop()


def dataset_bytes(blob: bytes) -> bytes:
    """The Part-10 file after its file meta group: the dataset exactly as encoded.

    The file meta (group 0002) is rewritten by every receiver (its own implementation
    UID, the sending AE), so byte identity is judged on everything after it."""
    assert blob[128:132] == b"DICM"
    assert blob[132:136] == b"\x02\x00\x00\x00"  # (0002,0000) group length
    length = int.from_bytes(blob[140:144], "little")
    return blob[144 + length :]


def _digests(blobs: list[bytes]) -> set[str]:
    return {hashlib.sha256(dataset_bytes(b)).hexdigest() for b in blobs}


# The keys a retrieve by DICOM sets to the case (issue 23: OsiriX lists the pulled study
# under the case ID and title, as the C-FIND showed it); everything else is as stored.
_CASE_KEYS = ("PatientID", "PatientName", "AccessionNumber", "StudyDescription")


def _as_stored_but_case_keys(blobs: list[bytes], case_id: str | None = None) -> set[str]:
    import io

    import pydicom

    out = set()
    for blob in blobs:
        ds = pydicom.dcmread(io.BytesIO(blob))
        if case_id is not None and str(ds.get("PatientID", "")) != case_id:
            out.add(f"PatientID not the case ID: {ds.PatientID}")
        for key in _CASE_KEYS:
            if key in ds:
                del ds[key]
        body = io.BytesIO()
        ds.save_as(body, enforce_file_format=False)
        out.add(hashlib.sha256(bytes(ds.PixelData) + repr(sorted(ds.to_json_dict(
            bulk_data_threshold=1, bulk_data_element_handler=lambda e: "")
        .items())).encode()).hexdigest())  # fmt: skip
    return out


def test_pull_rest_and_cli_arrive_byte_identical(suite) -> None:
    archive, scp, case_id, tmp_path = suite
    stored = archive.stored_dicom()
    assert len(stored) == 3
    with client(archive, "trainer1") as http:
        answer = http.post("/teaching/pulls", json={"cases": [case_id], "workstation": "ws-01"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["pulled"][0]["instances"] == 3
    received = scp.files()
    assert len(received) == 3
    assert _digests(received) == _digests(stored)

    scp.clear()
    secret = tmp_path / "trainer1.pw"
    secret.write_text(archive.passwords["trainer1"] + "\n")
    result = archive.cli(
        "pull", case_id, "--to", "ws-01", "--as", "trainer1", "--password-file", str(secret)
    )
    assert result.returncode == 0, result.stderr
    assert _digests(scp.files()) == _digests(stored)

    conn = db.connect(archive.config.home.db_path)
    try:
        inventory = PullInventory(conn)
        assert inventory.inventory() == {"ws-01": [case_id]}
        assert [p["user"] for p in inventory.pulls(case_id)] == ["trainer1", "trainer1"]
    finally:
        conn.close()
    audit = archive.cli("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_pull_refusals(suite) -> None:
    archive, scp, case_id, tmp_path = suite
    with client(archive, "newbie") as http:
        denied = http.post("/teaching/pulls", json={"cases": [case_id], "workstation": "ws-01"})
    assert denied.status_code in (401, 403)
    with client(archive, "trainer1") as http:
        unknown_case = http.post(
            "/teaching/pulls", json={"cases": ["NSR-999999"], "workstation": "ws-01"}
        )
        unknown_ws = http.post(
            "/teaching/pulls", json={"cases": [case_id], "workstation": "suite-scu"}
        )
    assert unknown_case.status_code == 404
    assert unknown_ws.status_code == 404  # a source is not a workstation
    assert "not a registered suite workstation" in unknown_ws.json()["error"]
    assert unknown_ws.json()["next"]
    # Issue 21: nobody pulls in another's name from the CLI: trainer1's name without
    # trainer1's password is refused with the reason, and nothing is sent.
    wrong = tmp_path / "not-trainer1.pw"
    wrong.write_text("certainly not trainer1's password\n")
    forged = archive.cli("pull", case_id, "--to", "ws-01", "--as", "trainer1",
                         "--password-file", str(wrong))  # fmt: skip
    assert forged.returncode == 1 and "wrong" in forged.stderr
    assert len(forged.stderr.strip().splitlines()) == 1
    assert scp.files() == []


def _findscu(archive: RunningArchive, calling: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["findscu", "-S", "-aet", calling, "-aec", archive.aet, "-k", "QueryRetrieveLevel=STUDY",
         "-k", "StudyInstanceUID", "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=60, check=False,
    )  # fmt: skip


def _study_uid(archive: RunningArchive, case_id: str) -> str:
    conn = db.connect(archive.config.home.db_path)
    try:
        row = conn.execute(
            "SELECT study_uid FROM catalogue_cases WHERE case_id = ?", (case_id,)
        ).fetchone()
    finally:
        conn.close()
    return row[0]


def _movescu(
    archive: RunningArchive, calling: str, dest: str, study_uid: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["movescu", "-S", "-aet", calling, "-aec", archive.aet, "-aem", dest,
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
         "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=120, check=False,
    )  # fmt: skip


def test_workstation_query_retrieve_and_unregistered_refused(suite) -> None:
    archive, scp, case_id, _ = suite
    uid = _study_uid(archive, case_id)
    found = _findscu(archive, WS_AET)
    assert found.returncode == 0, found.stderr
    assert "Find Response: 1 (Pending)" in found.stderr + found.stdout

    stranger = _findscu(archive, "STRANGER")
    said = (stranger.stderr + stranger.stdout).lower()
    assert "find response" not in said
    assert "abort" in said or "reject" in said or stranger.returncode != 0

    moved = _movescu(archive, WS_AET, WS_AET, uid)
    assert moved.returncode == 0, moved.stderr
    received = scp.files()
    assert len(received) == len(archive.stored_dicom())
    assert _as_stored_but_case_keys(received, case_id) == _as_stored_but_case_keys(
        archive.stored_dicom()
    )

    scp.clear()
    refused = _movescu(archive, "STRANGER", WS_AET, uid)
    assert scp.files() == []
    said = (refused.stderr + refused.stdout).lower()
    assert "abort" in said or "reject" in said or refused.returncode != 0
