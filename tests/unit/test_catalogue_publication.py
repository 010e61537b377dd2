"""The review to the point of publication (issue 24): a named reviewer, not the uploader,
with the checks' results, moves a case to "publication" in one audited act; anything
missing refuses and leaves the level alone. Publication removals then pass."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archive.access.principal import Principal
from archive.catalogue import Catalogue, SeriesSummary, StudySummary
from archive.catalogue.publication import Attestation, review_packet, review_publication
from archive.core import Ports, Refusal
from archive.db import connect
from archive.governance import load_policy as load_governance
from archive.governance.errors import LevelRefusedError
from archive.governance.removals.records import check_levels
from archive.ingest import flags
from archive.paths import POLICIES_DIR
from archive.pixels import load_masking_policy

NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
STUDY = "2.25.777"
US_SERIES, CT_SERIES = f"{STUDY}.1", f"{STUDY}.2"
ALL = Attestation(True, True, True, "common presentation; nothing rare about it")


class Log:
    def __init__(self) -> None:
        self.events = []

    def append(self, event) -> int:
        self.events.append(event)
        return len(self.events)


def person(user: str, *roles: str) -> Principal:
    return Principal(user, roles or ("trainer",), True)


@pytest.fixture
def world():
    conn = connect(":memory:")
    cat = Catalogue(conn, "NSR", scanner=lambda text: [])
    summary = StudySummary(
        study_uid=STUDY,
        patient_pseudonym="PSN0001",
        modalities=["US", "CT"],
        body_part="ABDOMEN",
        series_count=2,
        instance_count=3,
        age_band="40-44",
        sex="F",
        level="limited-access",
        intake="dicom",
        series=[
            SeriesSummary(US_SERIES, "US", "liver", 1, "o-1"),
            SeriesSummary(CT_SERIES, "CT", "abdomen", 2, "o-2"),
        ],
    )
    case = cat.upsert_from_study(summary, "orthanc-1", NOW)
    ocr = {"frames": 1, "words": 0, "kinds": []}
    outcome = {"action": "release", "assessed": True, "ocr": ocr}
    flags.record_pixel_report(conn, STUDY, US_SERIES, "2.25.1", "US", outcome, "rest:alice")
    for sop in ("2.25.2", "2.25.3"):
        flags.record_pixel_report(conn, STUDY, CT_SERIES, sop, "CT", {"action": "release"}, "alice")
    log = Log()
    ports = Ports(conn, log, POLICIES_DIR, source="test")
    return conn, cat, case.case_id, ports, log, load_masking_policy(POLICIES_DIR)


def review(world, who: Principal, attestation: Attestation = ALL):
    conn, cat, case_id, ports, log, masking = world
    return review_publication(ports, who, cat, case_id, attestation, masking)


def test_named_reviewer_moves_the_case_to_publication_with_one_audit_record(world):
    conn, cat, case_id, ports, log, masking = world
    with pytest.raises(LevelRefusedError, match="reviewed to publication"):
        check_levels(
            load_governance(), "publication_journal", [case_id], {case_id: "limited-access"}
        )
    done = review(world, person("bob"))
    assert not isinstance(done, Refusal), done
    assert cat.get(case_id).level == "publication"
    assert [(e.action, e.outcome, e.actor) for e in log.events] == [
        ("case.review_publication", "success", "bob")
    ]
    assert log.events[0].detail["rarity"].startswith("common presentation")
    levels = {case_id: cat.get(case_id).level}
    assert check_levels(load_governance(), "publication_journal", [case_id], levels)


def test_the_uploader_may_not_review_their_own_case(world):
    conn, cat, case_id, *_ = world
    refused = review(world, person("alice"))
    assert isinstance(review(world, person("ALICE")), Refusal)
    assert isinstance(refused, Refusal) and "your own" in refused.reason
    assert cat.get(case_id).level == "limited-access"


def test_missing_checks_or_rarity_refuse_and_leave_the_level(world):
    conn, cat, case_id, *_ = world
    for attestation in (
        Attestation(False, True, True, "common presentation; not rare"),
        Attestation(True, True, True, ""),
    ):
        refused = review(world, person("bob"), attestation)
        assert isinstance(refused, Refusal) and refused.code == "invalid"
        assert cat.get(case_id).level == "limited-access"


def test_a_series_without_an_ocr_report_refuses(world):
    conn, cat, case_id, *_ = world
    conn.execute("DELETE FROM ingest_pixel_reports WHERE series_uid = ?", (US_SERIES,))
    refused = review(world, person("bob"))
    assert isinstance(refused, Refusal) and "no pixel report" in refused.reason
    assert cat.get(case_id).level == "limited-access"


def test_an_open_face_flag_or_identifying_text_refuses(world):
    conn, cat, case_id, ports, log, masking = world
    flags.record_flags(conn, STUDY, CT_SERIES, [flags.FACE_SURFACE_FLAG])
    refused = review(world, person("bob"))
    assert isinstance(refused, Refusal) and "face" in refused.reason
    flags.decide_flag(conn, STUDY, flags.FACE_SURFACE_FLAG, "carol", "defaced copy checked")
    cat.repo.update_case(case_id, {"clinical_history": "seen by Mrs Marigold Plant at home"})
    packet = review_packet(conn, cat.get(case_id), masking)
    assert packet.free_text == {"clinical_history": ["title and name"]}
    refused = review(world, person("bob"))
    assert isinstance(refused, Refusal) and "clinical_history" in refused.reason
    assert "Marigold" not in refused.reason
    cat.repo.update_case(case_id, {"clinical_history": "seen at home"})
    assert not isinstance(review(world, person("bob")), Refusal)


def test_a_registrar_or_an_already_published_case_is_refused(world):
    assert isinstance(review(world, person("rita", "registrar")), Refusal)
    assert not isinstance(review(world, person("bob")), Refusal)
    again = review(world, person("bob"))
    assert isinstance(again, Refusal) and again.code == "state"


def test_a_home_without_any_pixel_record_refuses_cleanly():
    # the ingest tables do not exist yet: read inside perform's transaction, not migrated
    conn = connect(":memory:")
    cat = Catalogue(conn, "NSR", scanner=lambda text: [])
    summary = StudySummary(
        study_uid="2.25.5", patient_pseudonym="PSN5", modalities=["CT"], body_part="HEAD",
        series_count=1, instance_count=1, age_band="40-44", sex="F", level="limited-access",
        intake="dicom", series=[SeriesSummary("2.25.5.1", "CT", "head", 1, "o-5")],
    )  # fmt: skip
    case = cat.upsert_from_study(summary, "orthanc-5", NOW)
    log = Log()
    refused = review_publication(
        Ports(conn, log, POLICIES_DIR), person("bob"), cat, case.case_id, ALL,
        load_masking_policy(POLICIES_DIR),
    )  # fmt: skip
    assert isinstance(refused, Refusal) and "no pixel report" in refused.reason
    assert cat.get(case.case_id).level == "limited-access"
    assert [e.outcome for e in log.events] == ["denied"]
