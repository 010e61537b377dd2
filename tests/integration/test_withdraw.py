"""Consent withdrawal through a real archive: `archive withdraw` removes exactly one
patient's cases (two studies sent separately), nobody else's; their encrypted files are
gone; and the opt-out register discards that patient's later studies, audited.

Also the proof required by plugins/closure_routes.py: orthanc.RestApiDelete from a REST
callback with the Python storage area does not deadlock (the route answers in time).
"""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from archive import db
from archive.audit import query as audit_query
from archive.governance import OptOutRegister
from tests.corpus import make_ct_series, to_bytes
from tests.harness import RunningArchive, add_user, client

ISSUER = "HOSP-A"


def _send(archive: RunningArchive, user: str, datasets) -> None:
    with client(archive, user) as http:
        for ds in datasets:
            answer = http.post("/instances", content=to_bytes(ds))
            assert answer.status_code == 200, answer.text


def _cases(archive: RunningArchive) -> dict[str, tuple[str, str]]:
    conn = db.connect(archive.config.home.db_path)
    try:
        rows = conn.execute(
            "SELECT case_id, patient_pseudonym, status FROM catalogue_cases"
        ).fetchall()
    except Exception:  # noqa: BLE001 - not created yet
        rows = []
    finally:
        conn.close()
    return {r[0]: (r[1], r[2]) for r in rows}


def _wait_cases(archive: RunningArchive, count: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cases = _cases(archive)
        if sum(1 for _, s in cases.values() if s == "available") >= count:
            return cases
        time.sleep(0.3)
    raise AssertionError(f"no {count} cases; log:\n{archive.log_tail()}")


def _audited(archive: RunningArchive, action: str, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = audit_query(archive.config.home.audit_dir, action=action)
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


@pytest.fixture
def archive(archive_home: RunningArchive, tmp_path: Path):
    add_user(archive_home, "pat", ["personnel"])
    secret = tmp_path / "pat.pw"
    secret.write_text(archive_home.passwords["pat"])
    archive_home.start()
    try:
        yield archive_home, secret
    finally:
        archive_home.stop()


def test_withdraw_removes_exactly_one_patients_cases_and_blocks_later_sends(archive) -> None:
    arc, secret = archive
    first = make_ct_series(2, patient="ONE^PATIENT", patient_id="P-ONE", issuer=ISSUER, seed=1)
    _send(arc, "pat", first)
    _wait_cases(arc, 1)  # stable before the second study: sent separately
    second = make_ct_series(
        3, patient="ONE^PATIENT", patient_id="P-ONE", issuer=ISSUER, seed=2, study_date="20240301"
    )
    other = make_ct_series(2, patient="TWO^OTHER", patient_id="P-TWO", issuer=ISSUER, seed=3)
    _send(arc, "pat", second)
    _send(arc, "pat", other)
    cases = _wait_cases(arc, 3)
    by_patient: dict[str, list[str]] = {}
    for case_id, (pseudonym, _status) in cases.items():
        by_patient.setdefault(pseudonym, []).append(case_id)
    assert sorted(len(v) for v in by_patient.values()) == [1, 2]
    mine = next(v for v in by_patient.values() if len(v) == 2)
    theirs = next(v for v in by_patient.values() if len(v) == 1)
    assert arc.counts()["instances"] == 7

    started = time.monotonic()
    done = arc.cli(
        "withdraw", "--issuer", ISSUER,  # the ID on stdin, never in argv
        "--as", "pat", "--password-file", str(secret), "--json",
        input_text="P-ONE\n", timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + arc.log_tail()
    assert time.monotonic() - started < 110  # no deadlock in the delete path
    out = __import__("json").loads(done.stdout)
    assert sorted(out["cases"]) == sorted(mine)
    assert all(r["files"] >= 1 and r["shredded"] == r["files"] for r in out["removed"])
    # No source identifier in the answer or the audit log.
    assert "P-ONE" not in done.stdout and "ONE^PATIENT" not in done.stdout

    after = _cases(arc)
    assert all(after[c][1] == "withdrawn" for c in mine)
    assert all(after[c][1] == "available" for c in theirs)
    assert arc.counts()["instances"] == 2 and arc.counts()["studies"] == 1
    stored = [pydicom.dcmread(__import__("io").BytesIO(b)) for b in arc.stored_dicom()]
    assert len(stored) == 2
    assert {ds.PatientID for ds in stored} == {after[theirs[0]][0]}

    conn = db.connect(arc.config.home.db_path)
    try:
        register = OptOutRegister(conn)
        assert register.contains(after[mine[0]][0])
        assert not register.contains(after[theirs[0]][0])
        stored_digests = [r[0] for r in conn.execute("SELECT * FROM governance_optout")]
    finally:
        conn.close()
    assert after[mine[0]][0] not in " ".join(map(str, stored_digests))  # hashed only

    # A later study of the objecting patient is discarded at ingest, with an audit record.
    later = make_ct_series(1, patient="ONE^PATIENT", patient_id="P-ONE", issuer=ISSUER, seed=4)
    with client(arc, "pat") as http:
        http.post("/instances", content=to_bytes(later[0]))
    records = _audited(arc, "ingest.opted_out")
    assert records, arc.log_tail()
    assert arc.counts()["instances"] == 2
    log = "".join(p.read_text() for p in arc.config.home.audit_dir.rglob("*") if p.is_file())
    assert "P-ONE" not in log and "ONE^PATIENT" not in log
    assert _audited(arc, "withdrawal.record") and _audited(arc, "withdrawal.remove")
