"""The teaching catalogue through a real Orthanc: C-STORE -> stable study -> case -> REST.

One archive for the module: two studies arrive by C-STORE (a two-series CT chest and an
MR head), become cases once Orthanc declares them stable, and the tests then read, edit,
search and group them over HTTP as named users. Tests that change a case use their own
fields, so their order does not matter.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydicom.uid import MRImageStorage

from archive.audit import query as audit_query
from archive.catalogue import CASE_ID
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, new_archive, register_node

SOURCE_AE = "SRC_AE"
NHS_NUMBER = "943 476 5919"  # a valid (check digit) NHS number


def _studies() -> tuple[list, list]:
    chest = make_ct_series(3, patient="HARGREAVES^EDITH", patient_id="PIDCHEST41", seed=1)
    chest += make_ct_series(
        2,
        patient="HARGREAVES^EDITH",
        patient_id="PIDCHEST41",
        study_uid=chest[0].StudyInstanceUID,
        series_number=2,
        seed=2,
    )
    for ds in chest:
        ds.BodyPartExamined = "CHEST"
    head = make_ct_series(2, patient="PEMBERTON^OSWALD", patient_id="PIDHEAD77", seed=3)
    for ds in head:
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.BodyPartExamined = "HEAD"
        ds.StudyDescription = "MR brain"
    return chest, head


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A running archive that received both studies by C-STORE; users added."""
    root = tmp_path_factory.mktemp("catalogue")
    archive = new_archive(root / "home")
    register_node(archive, "src", SOURCE_AE, store=True)
    add_user(archive, "tina", ["trainer"])
    add_user(archive, "pat", ["personnel"])
    add_user(archive, "reggie", ["registrar"])
    add_user(archive, "bob", ["board_member"])
    archive.start()
    try:
        chest, head = _studies()
        files = write_files(root / "in", [to_bytes(ds) for ds in chest + head])
        result = storescu(archive.dicom_port, archive.aet, SOURCE_AE, files)
        assert result.returncode == 0, result.stderr
        with client(archive, "tina") as http:
            cases = _wait_for_cases(http, 2)
        yield {"archive": archive, "chest": chest, "head": head, "cases": cases}
    finally:
        archive.stop()


def _wait_for_cases(http: httpx.Client, count: int, timeout: float = 60) -> dict[str, dict]:
    """Poll the catalogue until `count` cases exist; keyed by first modality."""
    deadline = time.monotonic() + timeout
    items: list = []
    while time.monotonic() < deadline:
        answer = http.get("/teaching/cases", params={"sort": "added"})
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        if len(items) >= count:
            return {c["modalities"][0]: c for c in items}
        time.sleep(0.25)
    raise AssertionError(f"only {len(items)} of {count} cases after {timeout}s")


@pytest.fixture(scope="module")
def archive(sent: dict) -> RunningArchive:
    return sent["archive"]


def _audited(archive: RunningArchive, until, timeout: float = 30, **filters) -> list[dict]:
    """Audit records matching `filters`, polled until `until(records)` holds: the plugin
    commits audit records in groups, so they reach the file shortly after the answer."""
    deadline = time.monotonic() + timeout
    while True:
        records = audit_query(archive.config.home.audit_dir, **filters)
        if until(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _as(archive: RunningArchive, user: str) -> httpx.Client:
    return client(archive, user)


def test_cases_appear_after_cstore_of_a_multi_series_study(sent: dict) -> None:
    chest, head = sent["cases"]["CT"], sent["cases"]["MR"]
    assert chest["series_count"] == 2 and chest["instance_count"] == 5
    assert [s["instance_count"] for s in chest["series"]] == [3, 2]
    assert chest["body_part"] == "CHEST" and head["body_part"] == "HEAD"
    assert head["modalities"] == ["MR"] and head["instance_count"] == 2
    for case in (chest, head):
        assert case["status"] == "available"
        assert case["intake"] == "dicom"
        assert case["level"] == "limited-access"
        assert case["age_band"] == "50-54"  # 054Y banded at ingest, read as a band
        assert case["sex"] == "F"


def test_case_id_says_nothing_about_the_patient(sent: dict) -> None:
    archive = sent["archive"]
    originals = sent["chest"] + sent["head"]
    secrets = {
        "HARGREAVES",
        "EDITH",
        "PEMBERTON",
        "PIDCHEST41",
        "PIDHEAD77",
        "19700101",
        SOURCE_AE,
        "127.0.0.1",
        *{ds.StudyInstanceUID for ds in originals},
        *{ds.SeriesInstanceUID for ds in originals},
    }
    with _as(archive, "tina") as http:
        for case in sent["cases"].values():
            assert CASE_ID.match(case["case_id"])
            assert re.fullmatch(rf"NSR-{time.gmtime().tm_year}-\d{{5}}", case["case_id"])
            body = http.get(f"/teaching/cases/{case['case_id']}").text
            for value in secrets:
                assert value not in body, f"{value!r} in the case view"
            assert "patient_pseudonym" not in json.loads(body)


def test_case_view_shows_series_with_thumbnails(sent: dict) -> None:
    archive, chest = sent["archive"], sent["cases"]["CT"]
    with _as(archive, "reggie") as http:
        view = http.get(f"/teaching/cases/{chest['case_id']}").json()
        assert [s["number"] for s in view["series"]] == [1, 2]
        for series in view["series"]:
            answer = http.get(series["thumbnail"])
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("image/")
            image = Image.open(io.BytesIO(answer.content))
            # Rendered by the archive from the 64 px slice: a 256 px thumbnail, Lanczos.
            assert image.size == (256, 256)
        preview = http.get(view["series"][0]["thumbnail"], params={"size": "preview"})
        assert Image.open(io.BytesIO(preview.content)).size == (1024, 1024)
        assert http.get(f"/teaching/cases/{chest['case_id']}/series/3/thumbnail").status_code == 404

    def seen(records: list[dict]) -> bool:
        actions = [e["action"] for e in records]
        return "catalogue.case.view" in actions and actions.count("catalogue.case.thumbnail") >= 3

    events = _audited(archive, seen, user="reggie", case=chest["case_id"])
    actions = [e["action"] for e in events]
    assert "catalogue.case.view" in actions
    assert actions.count("catalogue.case.thumbnail") == 3


def test_trainer_edits_and_search_finds_by_relevance(sent: dict) -> None:
    archive, chest, head = sent["archive"], sent["cases"]["CT"], sent["cases"]["MR"]
    with _as(archive, "tina") as http:
        answer = http.put(
            f"/teaching/cases/{chest['case_id']}",
            json={
                "title": "Subtle apical pneumothorax",
                "findings": "Thin visceral pleural line at the right apex.",
                "diagnosis": "pneumothorax",
                "keywords": ["pneumothorax", "pleura"],
                "category": "thoracic",
                "difficulty": "advanced",
            },
        )
        assert answer.status_code == 200, answer.text
        edited = answer.json()
        assert edited["title"] == "Subtle apical pneumothorax"
        assert edited["edited_by"] == "tina"
        answer = http.post(
            f"/teaching/cases/{head['case_id']}",
            json={
                "title": "Glioblastoma with a small adjacent pneumocephalus",
                "discussion": "Pneumothorax is not a feature here.",
                "category": "neuroradiology",
                "difficulty": "intermediate",
            },
        )
        assert answer.status_code == 200, answer.text

        hits = http.get("/teaching/cases", params={"q": "pneumothorax"}).json()
        assert [c["case_id"] for c in hits["items"]][:2] == [chest["case_id"], head["case_id"]]
        only_ct = http.get("/teaching/cases", params={"q": "pneumothorax", "modality": "CT"})
        assert [c["case_id"] for c in only_ct.json()["items"]] == [chest["case_id"]]
        for params, expected in (
            ({"difficulty": "advanced"}, [chest["case_id"]]),
            ({"category": "neuroradiology"}, [head["case_id"]]),
            ({"body_part": "HEAD"}, [head["case_id"]]),
            ({"modality": "CT,MR", "sort": "title"}, [head["case_id"], chest["case_id"]]),
            ({"level": "publication"}, []),
            ({"q": "glioblastoma", "difficulty": "advanced"}, []),
        ):
            page = http.get("/teaching/cases", params=params).json()
            assert [c["case_id"] for c in page["items"]] == expected, params
        paged = http.get("/teaching/cases", params={"per_page": 1, "page": 2, "sort": "added"})
        assert paged.json()["total"] >= 2 and len(paged.json()["items"]) == 1
        assert http.get("/teaching/cases", params={"sort": "sideways"}).status_code == 400
    edits = _audited(
        archive,
        lambda r: len(r) >= 2,
        user="tina",
        action="catalogue.case.edit",
    )
    assert {e["target"] for e in edits} >= {chest["case_id"], head["case_id"]}


@pytest.mark.parametrize("typed", [f"Referred, NHS no {NHS_NUMBER}.", "GP letter ref 9434765919"])
def test_identifier_in_history_is_refused_naming_the_field(sent: dict, typed: str) -> None:
    archive, head = sent["archive"], sent["cases"]["MR"]
    with _as(archive, "pat") as http:
        answer = http.put(
            f"/teaching/cases/{head['case_id']}",
            json={"clinical_history": typed, "teaching_points": "harmless"},
        )
        assert answer.status_code == 400
        assert "clinical_history" in answer.json()["error"]
        assert typed not in answer.text
        after = http.get(f"/teaching/cases/{head['case_id']}").json()
        assert after["clinical_history"] != typed and after["teaching_points"] != "harmless"
    refusals = _audited(
        archive,
        lambda r: any(e["detail"].get("field") == "clinical_history" for e in r),
        user="pat",
        case=head["case_id"],
        outcome="denied",
    )
    assert refusals, "the refused edit was not audited"
    log = "".join(p.read_text() for p in archive.config.home.audit_dir.rglob("*") if p.is_file()
                  and not p.name.endswith(".tmp"))  # fmt: skip
    assert NHS_NUMBER not in log and "9434765919" not in log


def test_registrar_searches_but_cannot_edit(sent: dict) -> None:
    archive, chest = sent["archive"], sent["cases"]["CT"]
    with _as(archive, "reggie") as http:
        assert http.get("/teaching/cases").status_code == 200
        assert http.get(f"/teaching/cases/{chest['case_id']}").status_code == 200
        for call in (http.put, http.post):
            answer = call(f"/teaching/cases/{chest['case_id']}", json={"title": "mine now"})
            assert answer.status_code == 403, answer.text
        assert http.post("/teaching/collections", json={"title": "mine"}).status_code == 403
        assert http.get(f"/teaching/cases/{chest['case_id']}").json()["title"] != "mine now"
    # Each refusal is audited: by the HTTP filter (access.decision) or, if a request got
    # past it, by the route itself (catalogue.case.edit / catalogue.collection.create).
    denied = _audited(archive, lambda r: len(r) >= 3, user="reggie", outcome="denied")
    assert len(denied) >= 3


def test_anonymous_and_non_viewing_roles_are_refused(sent: dict) -> None:
    archive, chest = sent["archive"], sent["cases"]["CT"]
    with client(archive) as http:
        # Refused by the HTTP filter (403 for every reason) or, without it, by the route.
        assert http.get("/teaching/cases").status_code in (401, 403)
        thumbnail = http.get(f"/teaching/cases/{chest['case_id']}/series/1/thumbnail")
        assert thumbnail.status_code in (401, 403)
        assert not thumbnail.headers.get("content-type", "").startswith("image/")
    with _as(archive, "bob") as http:
        assert http.get("/teaching/cases").status_code == 403
        assert http.get(f"/teaching/cases/{chest['case_id']}/series/1/thumbnail").status_code == 403


def test_collections_ordered_and_searchable(sent: dict) -> None:
    archive, chest, head = sent["archive"], sent["cases"]["CT"], sent["cases"]["MR"]
    with _as(archive, "tina") as http:
        made = http.post(
            "/teaching/collections", json={"title": "FRCR 2B set", "description": "Mock exam"}
        )
        assert made.status_code == 200, made.text
        col = made.json()["collection_id"]
        added = http.post(f"/teaching/collections/{col}/items", json={"cases": [chest["case_id"]]})
        assert added.status_code == 200, added.text
        http.post(
            f"/teaching/collections/{col}/items", json={"cases": [head["case_id"]], "position": 1}
        )
        order = [i["case_id"] for i in http.get(f"/teaching/collections/{col}").json()["items"]]
        assert order == [head["case_id"], chest["case_id"]]
        http.put(f"/teaching/collections/{col}/items", json={"cases": [chest["case_id"]]})
        order = [i["case_id"] for i in http.get(f"/teaching/collections/{col}").json()["items"]]
        assert order == [chest["case_id"], head["case_id"]]
        in_set = http.get("/teaching/cases", params={"collection": col}).json()
        assert {c["case_id"] for c in in_set["items"]} == {chest["case_id"], head["case_id"]}
        removed = http.delete(f"/teaching/collections/{col}/items/{head['case_id']}")
        assert [i["case_id"] for i in removed.json()["items"]] == [chest["case_id"]]
        refused = http.put(f"/teaching/collections/{col}", json={"description": NHS_NUMBER})
        assert refused.status_code == 400 and "description" in refused.json()["error"]
        assert http.get("/teaching/collections/NSR-COL-9999").status_code == 404
    with _as(archive, "reggie") as http:
        listed = http.get("/teaching/collections").json()
        assert col in {c["collection_id"] for c in listed["items"]}
        assert (
            http.delete(f"/teaching/collections/{col}/items/{chest['case_id']}").status_code == 403
        )


def test_more_images_refresh_the_same_case(sent: dict, tmp_path: Path) -> None:
    archive, head = sent["archive"], sent["cases"]["MR"]
    extra = make_ct_series(
        1,
        patient="PEMBERTON^OSWALD",
        patient_id="PIDHEAD77",
        study_uid=sent["head"][0].StudyInstanceUID,
        series_number=5,
        seed=9,
    )
    extra[0].Modality = "MR"
    extra[0].SOPClassUID = extra[0].file_meta.MediaStorageSOPClassUID = MRImageStorage
    files = write_files(tmp_path / "more", [to_bytes(extra[0])])
    assert storescu(archive.dicom_port, archive.aet, SOURCE_AE, files).returncode == 0
    with _as(archive, "tina") as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            view = http.get(f"/teaching/cases/{head['case_id']}").json()
            if view["series_count"] == 2:
                break
            time.sleep(0.25)
        assert (view["series_count"], view["instance_count"]) == (2, 3)
        assert view["case_id"] == head["case_id"]
        assert http.get("/teaching/cases").json()["total"] == 2
    refreshed = _audited(
        archive,
        lambda r: head["case_id"] in {e["target"] for e in r},
        action="catalogue.case.refresh",
    )
    assert head["case_id"] in {e["target"] for e in refreshed}
