"""The review to the point of publication through a real Orthanc (issue 24).

A CT series arrives by C-STORE and becomes a limited-access case; a publication removal
is refused for its level. A trainer who did not upload it reviews it over REST: refused
without the checks, then moved to publication with them (audited once); the publication
removal is then accepted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from archive.audit import query as audit_query
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, new_archive, register_node

SOURCE_AE = "PUB_SRC"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningArchive]:
    root = tmp_path_factory.mktemp("publication")
    archive = new_archive(root / "home")
    register_node(archive, "src", SOURCE_AE, store=True)
    add_user(archive, "tina", ["trainer"])
    add_user(archive, "reggie", ["registrar"])
    archive.start()
    try:
        series = make_ct_series(3, patient="PUBLISH^ME", patient_id="PIDPUB1")
        files = write_files(root / "in", [to_bytes(ds) for ds in series])
        result = storescu(archive.dicom_port, archive.aet, SOURCE_AE, files)
        assert result.returncode == 0, result.stderr
        yield archive
    finally:
        archive.stop()


def _case(archive: RunningArchive) -> dict:
    deadline = time.monotonic() + 60
    with client(archive, "tina") as http:
        while time.monotonic() < deadline:
            items = http.get("/teaching/cases").json()["items"]
            if items:
                return items[0]
            time.sleep(0.25)
    raise AssertionError("no case after 60 s")


def test_trainer_reviews_a_case_to_publication_and_publication_removals_then_work(archive):
    case = _case(archive)
    assert case["level"] == "limited-access"
    request = {"cases": [case["case_id"]], "purpose": "publication_journal",
               "destination": "BJR case report"}  # fmt: skip
    path = f"/teaching/cases/{case['case_id']}/review-publication"
    checks = {"ocr_checked": True, "face_checked": True, "free_text_checked": True,
              "rarity": "a common presentation; nothing rare identifies the patient"}  # fmt: skip
    with client(archive, "tina") as http:
        before = http.post("/teaching/removals", json=request)
        assert before.status_code >= 400 and "publication" in before.json()["error"]
        incomplete = http.post(path, json={**checks, "face_checked": False})
        assert incomplete.status_code == 400, incomplete.text
        assert "face result" in incomplete.json()["error"] and incomplete.json()["next"]
        assert http.get(f"/teaching/cases/{case['case_id']}").json()["level"] == "limited-access"
        with client(archive, "reggie") as other:
            assert other.post(path, json=checks).status_code == 403
        done = http.post(path, json=checks)
        assert done.status_code == 200, done.text
        assert done.json() == {"case_id": case["case_id"], "level": "publication",
                               "reviewer": "tina"}  # fmt: skip
        assert http.get(f"/teaching/cases/{case['case_id']}").json()["level"] == "publication"
        after = http.post("/teaching/removals", json=request)
        assert after.status_code == 200, after.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = audit_query(archive.config.home.audit_dir, action="case.review_publication")
        if len(records) >= 2:
            break
        time.sleep(0.2)
    outcomes = [(r["outcome"], r["actor"]) for r in records]
    assert outcomes == [("denied", "tina"), ("success", "tina")]
