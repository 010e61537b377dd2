"""StudySummary from Orthanc's JSON: facts read, identities ignored, fail closed."""

from __future__ import annotations

from datetime import UTC, datetime

from archive.catalogue import Catalogue
from archive.catalogue.from_orthanc import AgeBands, SeriesFacts, age_band, study_summary
from archive.db import connect

DEID = {
    "PatientIdentityRemoved": "YES",
    "DeidentificationMethod": "PS3.15 E.1-1 2024b Basic Profile\\teaching-archive deid policy 1",
    "PatientAge": "050Y",
}


def _study(series_ids: list[str]) -> dict:
    return {
        "ID": "ea79af60-6f9967d7-a2914603-6e6311be-e6869dc6",
        "MainDicomTags": {"StudyInstanceUID": "2.25.1234", "StudyDescription": "CT chest"},
        "PatientMainDicomTags": {"PatientID": "ANONKBDE7BG7", "PatientSex": "F"},
        "Series": series_ids,
    }


def _series(sid: str, number: str, modality: str, n: int, body: str = "") -> dict:
    tags = {"SeriesInstanceUID": f"2.25.9{number}", "Modality": modality, "SeriesNumber": number}
    if body:
        tags["BodyPartExamined"] = body
    return {"ID": sid, "MainDicomTags": tags, "Instances": [f"{sid}-{i}" for i in range(n)]}


def _facts(origin: str = "DicomProtocol", **tag_changes: str) -> list[SeriesFacts]:
    meta = {"Origin": origin, "RemoteAET": "SECRET_AE", "RemoteIP": "10.1.2.3"}
    return [
        SeriesFacts(_series("s2", "2", "MR", 2), {**DEID, **tag_changes}, meta),
        SeriesFacts(_series("s1", "1", "CT", 3, "CHEST"), {**DEID, **tag_changes}, meta),
    ]


def test_summary_counts_orders_series_and_bands_age() -> None:
    summary, deidentified = study_summary(_study(["s2", "s1"]), _facts(), "limited-access")
    assert deidentified
    assert [s.orthanc_series_id for s in summary.series] == ["s1", "s2"]
    assert summary.modalities == ["CT", "MR"]
    assert (summary.series_count, summary.instance_count) == (2, 5)
    assert summary.body_part == "CHEST"
    assert summary.age_band == "50-54"
    assert summary.sex == "F"
    assert summary.intake == "dicom"
    assert summary.patient_pseudonym == "ANONKBDE7BG7"


def test_sender_identity_never_reaches_the_case() -> None:
    summary, _ = study_summary(_study(["s1", "s2"]), _facts(), "limited-access")
    case = Catalogue(connect(":memory:"), "NSR", scanner=lambda t: []).upsert_from_study(
        summary, "ea79af60", datetime(2026, 1, 2, tzinfo=UTC)
    )
    text = repr(case)
    assert "SECRET_AE" not in text and "10.1.2.3" not in text
    assert case.intake == "dicom" and case.status == "available"


def test_rest_origin_and_unknown_origins() -> None:
    assert study_summary(_study([]), _facts("RestApi"), "publication")[0].intake == "rest"
    assert study_summary(_study([]), _facts("Plugins"), "publication")[0].intake == "rest"


def test_not_deidentified_is_reported() -> None:
    _, ok = study_summary(_study([]), _facts(PatientIdentityRemoved="NO"), "limited-access")
    assert not ok
    _, ok = study_summary(_study([]), _facts(DeidentificationMethod=""), "limited-access")
    assert not ok
    assert not study_summary(_study([]), [], "limited-access")[1]


def test_age_bands() -> None:
    assert age_band("050Y") == "50-54"
    assert age_band("018Y") == "18-19"
    assert age_band("090Y") == "90+"
    assert age_band("007Y") == "7Y"
    assert age_band("006M") == "6M"
    assert age_band("") == "" and age_band("fifty") == ""
    assert age_band("040Y", AgeBands(band_years=10)) == "40-49"


def test_odd_sex_is_not_known_rather_than_refused() -> None:
    study = _study([])
    study["PatientMainDicomTags"]["PatientSex"] = "X"
    assert study_summary(study, _facts(), "limited-access")[0].sex == ""
