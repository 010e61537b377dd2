"""Teaching cases: creation from stable studies, edits, identifier checks, search."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import pytest

from archive.catalogue import (
    CASE_ID,
    Catalogue,
    CatalogueChange,
    CatalogueError,
    IdentifierInTextError,
    SearchFilters,
    SeriesSummary,
    StudySummary,
)
from archive.db import connect

NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
NHS = "943 476 5919"


def fake_scan(text: str) -> list[str]:
    """Stand-in for the ingest check in tests that are not about the check itself."""
    return ["an NHS number"] if re.search(r"\d{3} ?\d{3} ?\d{4}", text) else []


@pytest.fixture
def changes() -> list[CatalogueChange]:
    return []


@pytest.fixture
def cat(changes: list[CatalogueChange]) -> Catalogue:
    return Catalogue(connect(":memory:"), "NSR", on_change=changes.append, scanner=fake_scan)


def study(n: int = 1, series: int = 2, modality: str = "CT", **kw: object) -> StudySummary:
    uid = f"2.25.{1000 + n}"
    values: dict = dict(
        study_uid=uid,
        patient_pseudonym=f"PSN{n:04d}",
        modalities=[modality],
        body_part="CHEST",
        series_count=series,
        instance_count=series * 10,
        age_band="40-44",
        sex="F",
        level="limited-access",
        intake="dicom",
        study_description="CT THORAX",
        series=[
            SeriesSummary(f"{uid}.{i}", modality, f"series {i}", 10, f"orth-{n}-{i}")
            for i in range(1, series + 1)
        ],
    )
    values.update(kw)
    return StudySummary(**values)


def add(cat: Catalogue, n: int, **teaching: object) -> str:
    case = cat.upsert_from_study(study(n), f"orthanc-{n}", NOW)
    if teaching:
        cat.edit(case.case_id, dict(teaching), "trainer1")
    return case.case_id


# -- cases from studies ----------------------------------------------------------------


def test_upsert_is_idempotent_and_refreshes_counts(cat: Catalogue) -> None:
    first = cat.upsert_from_study(study(1, series=1), "orthanc-1", NOW)
    cat.edit(first.case_id, {"title": "Pneumothorax"}, "trainer1")
    again = cat.upsert_from_study(study(1, series=3, modality="CT"), "orthanc-1", NOW)
    assert again.case_id == first.case_id
    assert (again.series_count, again.instance_count, len(again.series)) == (3, 30, 3)
    assert again.title == "Pneumothorax"  # teaching metadata survives a refresh
    assert cat.search("").total == 1
    assert cat.case_for_study("2.25.1001").case_id == first.case_id
    assert cat.case_for_study("2.25.9999") is None


def test_refresh_adds_modalities_and_keeps_withdrawn(cat: Catalogue) -> None:
    case = cat.upsert_from_study(study(1, series=1), "orthanc-1", NOW)
    cat.set_status(case.case_id, "withdrawn")
    more = study(1, series=1)
    more = StudySummary(
        **{
            **more.__dict__,
            "modalities": ["CT", "PT"],
            "series": [*more.series, SeriesSummary("2.25.1001.9", "PT", "pet", 5, "o9")],
        }
    )
    again = cat.upsert_from_study(more, "orthanc-1", NOW)
    assert again.status == "withdrawn"
    assert again.modalities == ["CT", "PT"]
    assert again.series_count == 2
    filters = SearchFilters.of(modality="PT", status="withdrawn")
    assert [c.case_id for c in cat.search("", filters).items] == [case.case_id]


def test_case_id_format_and_no_patient_data(cat: Catalogue) -> None:
    ids = [cat.upsert_from_study(study(n), f"o-{n}", NOW).case_id for n in range(1, 4)]
    assert ids == ["NSR-2026-00001", "NSR-2026-00002", "NSR-2026-00003"]
    assert all(CASE_ID.match(i) for i in ids)
    case = cat.get(ids[0])
    for private in (case.patient_pseudonym, case.study_uid, case.age_band, "1001"):
        assert private not in case.case_id
    assert "patient_pseudonym" not in case.to_dict()
    # a new year starts a new sequence, the prefix is the school's
    later = cat.upsert_from_study(study(9), "o-9", datetime(2027, 1, 2, tzinfo=UTC))
    assert later.case_id == "NSR-2027-00001"


def test_two_catalogues_on_one_database_never_share_an_id(tmp_path) -> None:
    path = tmp_path / "archive.db"
    a = Catalogue(connect(path), "NSR", scanner=fake_scan)
    b = Catalogue(connect(path), "NSR", scanner=fake_scan)
    ids = {
        (a if n % 2 else b).upsert_from_study(study(n), f"o-{n}", NOW).case_id for n in range(1, 11)
    }
    assert len(ids) == 10


@pytest.mark.parametrize(
    "field, value",
    [
        ("study_uid", "John^Smith"),
        ("level", "identifiable"),
        ("intake", "pacs-ward-7"),
        ("age_band", "Mrs Jones"),
        ("sex", "unknown person"),
        ("patient_pseudonym", "Jane Doe 1970"),
        ("modalities", ["C T"]),
    ],
)
def test_malformed_summary_is_refused(cat: Catalogue, field: str, value: object) -> None:
    with pytest.raises(CatalogueError):
        cat.upsert_from_study(study(1, **{field: value}), "orthanc-1", NOW)
    assert cat.search("", SearchFilters.of(status=["available", "withdrawn"])).total == 0


def test_body_part_is_mapped_to_vocabulary(cat: Catalogue) -> None:
    a = cat.upsert_from_study(study(1, body_part="thorax"), "o1", NOW)
    b = cat.upsert_from_study(study(2, body_part="Dr Who's knee"), "o2", NOW)
    c = cat.upsert_from_study(study(3, body_part=""), "o3", NOW)
    assert (a.body_part, b.body_part, c.body_part) == ("CHEST", "OTHER", "UNKNOWN")


def test_description_with_identifier_is_dropped(cat: Catalogue) -> None:
    case = cat.upsert_from_study(study(1, study_description=f"CT {NHS}"), "o1", NOW)
    assert case.study_description == ""


def test_cases_for_pseudonym_includes_withdrawn(cat: Catalogue) -> None:
    one = add(cat, 1)
    cat.upsert_from_study(study(2, patient_pseudonym="PSN0001"), "o2", NOW)
    cat.set_status(one, "withdrawn")
    found = cat.cases_for_pseudonym("PSN0001")
    assert [c.status for c in found] == ["withdrawn", "available"]
    assert cat.cases_for_pseudonym("PSN0404") == []


# -- teaching metadata -------------------------------------------------------------------


def test_edit_saves_fields_and_is_reported(cat: Catalogue, changes: list) -> None:
    case_id = add(cat, 1)
    case = cat.edit(
        case_id,
        {
            "title": " Tension pneumothorax ",
            "keywords": "pneumothorax, trauma, pneumothorax",
            "difficulty": "Advanced",
            "category": "thoracic",
            "authors": ["Dr A Trainer"],
            "review_state": "reviewed",
        },
        "trainer1",
    )
    assert case.title == "Tension pneumothorax"
    assert case.keywords == ["pneumothorax", "trauma"]
    assert (case.difficulty, case.category, case.review_state) == (
        "advanced",
        "thoracic",
        "reviewed",
    )
    assert case.edited_by == "trainer1" and case.vocabulary_version == cat.vocabulary.version
    edit = [c for c in changes if c.action == "catalogue.case.edit"][-1]
    assert edit.target == case_id and edit.actor == "trainer1"
    assert edit.detail == {"fields": "authors,category,difficulty,keywords,review_state,title"}
    assert "Tension" not in str(edit.detail)


@pytest.mark.parametrize(
    "changes_, message",
    [
        ({"difficulty": "expert"}, "difficulty"),
        ({"category": "astrology"}, "category"),
        ({"review_state": "published"}, "review_state"),
        ({"patient_pseudonym": "x"}, "cannot be edited"),
        ({"title": 42}, "title must be text"),
        ({}, "no changes"),
    ],
)
def test_invalid_edits_refused(cat: Catalogue, changes_: dict, message: str) -> None:
    case_id = add(cat, 1)
    with pytest.raises(CatalogueError, match=message):
        cat.edit(case_id, changes_, "trainer1")


def test_identifier_in_history_refused_and_nothing_saved(cat: Catalogue, changes: list) -> None:
    case_id = add(cat, 1, title="Old title")
    with pytest.raises(IdentifierInTextError) as err:
        cat.edit(
            case_id,
            {"title": "New title", "clinical_history": f"Chest pain, NHS no {NHS}"},
            "trainer1",
        )
    assert err.value.field == "clinical_history"
    assert "clinical_history" in str(err.value) and NHS not in str(err.value)
    assert cat.get(case_id).title == "Old title"
    refused = changes[-1]
    assert refused.outcome == "denied" and refused.detail["field"] == "clinical_history"
    with pytest.raises(IdentifierInTextError, match="keywords"):
        cat.edit(case_id, {"keywords": ["ok", NHS]}, "trainer1")


def test_identifier_check_uses_the_ingest_residual_scan() -> None:
    """Needs archive.deid.residual.scan_text (built by the de-identification room)."""
    real = Catalogue(connect(":memory:"), "NSR")
    case_id = add(real, 1)
    with pytest.raises(IdentifierInTextError, match="clinical_history"):
        real.edit(case_id, {"clinical_history": f"Referred, NHS number {NHS}"}, "trainer1")
    assert real.edit(case_id, {"clinical_history": "Fall from ladder."}, "t").clinical_history


def test_edit_fails_closed_when_scanner_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "archive.deid.residual", None)
    real = Catalogue(connect(":memory:"), "NSR")
    case_id = add(real, 1)
    with pytest.raises(CatalogueError, match="cannot check free text"):
        real.edit(case_id, {"findings": "Fracture."}, "trainer1")
    assert real.get(case_id).findings == ""


def test_failed_audit_rolls_back_the_edit() -> None:
    def broken(change: CatalogueChange) -> None:
        raise CatalogueError("audit log unavailable")

    cat = Catalogue(connect(":memory:"), "NSR", scanner=fake_scan)
    case_id = cat.upsert_from_study(study(1), "o1", NOW).case_id
    cat.on_change = broken
    with pytest.raises(CatalogueError, match="audit"):
        cat.edit(case_id, {"title": "Never saved"}, "trainer1")
    assert cat.get(case_id).title == ""
    assert cat.search("never").total == 0


def test_annotate_appends(cat: Catalogue) -> None:
    case_id = add(cat, 1, teaching_points="Look at the apex.", keywords=["pneumothorax"])
    case = cat.annotate(case_id, "teaching_points", "Check the lines.", "trainer1")
    assert case.teaching_points == "Look at the apex.\n\nCheck the lines."
    case = cat.annotate(case_id, "keywords", "trauma, pneumothorax", "trainer1")
    assert case.keywords == ["pneumothorax", "trauma"]
    with pytest.raises(CatalogueError):
        cat.annotate(case_id, "difficulty", "advanced", "trainer1")


def test_status_and_level(cat: Catalogue, changes: list) -> None:
    case_id = add(cat, 1)
    assert cat.set_level(case_id, "publication").level == "publication"
    assert cat.set_status(case_id, "quarantined", actor="personnel1").status == "quarantined"
    assert changes[-1].detail == {"from": "available", "to": "quarantined"}
    with pytest.raises(CatalogueError):
        cat.set_status(case_id, "deleted")
    with pytest.raises(CatalogueError):
        cat.set_level(case_id, "identifiable")


def test_only_trainers_and_personnel_can_edit() -> None:
    """The rule is data (policies/access/actions.toml, case.edit), asked of archive.core."""
    from pathlib import Path

    from archive.access.principal import Principal
    from archive.core import authorise, load_action_policy

    policy = load_action_policy(Path(__file__).resolve().parents[2] / "policies")

    def can_edit(roles) -> bool:
        return bool(authorise(policy, Principal("u", tuple(roles), True), "case.edit"))

    assert can_edit(["trainer"]) and can_edit(("registrar", "personnel"))
    assert not can_edit(["registrar"])
    assert not can_edit(["other-speciality"]) and not can_edit([])


# -- search --------------------------------------------------------------------------------


@pytest.fixture
def library(cat: Catalogue) -> dict[str, str]:
    """Six cases whose text differs in known ways."""
    ids = {}
    specs = [
        (
            "ptx",
            1,
            "CT",
            "CHEST",
            "thoracic",
            "advanced",
            "Subtle pneumothorax",
            "Small apical pneumothorax after central line insertion.",
            "pneumothorax",
        ),
        (
            "ptx2",
            2,
            "CR",
            "CHEST",
            "emergency",
            "primary",
            "Rib fractures",
            "Multiple rib fractures; a tiny pneumothorax is mentioned in the discussion.",
            "fracture",
        ),
        (
            "sah",
            3,
            "CT",
            "HEAD",
            "neuroradiology",
            "intermediate",
            "Subarachnoid haemorrhage",
            "Blood in the basal cisterns.",
            "haemorrhage",
        ),
        (
            "scaph",
            4,
            "CR",
            "WRIST",
            "musculoskeletal",
            "primary",
            "Scaphoid fracture",
            "Occult scaphoid waist fracture.",
            "fracture",
        ),
        (
            "app",
            5,
            "US",
            "ABDOMEN",
            "gastrointestinal",
            "primary",
            "Appendicitis",
            "Non-compressible appendix with hyperaemia.",
            "appendicitis",
        ),
        (
            "ms",
            6,
            "MR",
            "BRAIN",
            "neuroradiology",
            "advanced",
            "Multiple sclerosis",
            "Periventricular plaques perpendicular to the ventricles.",
            "demyelination",
        ),
    ]
    for key, n, mod, part, category, difficulty, title, findings, keyword in specs:
        s = study(n, modality=mod, body_part=part)
        case = cat.upsert_from_study(s, f"o{n}", datetime(2026, 1, n, tzinfo=UTC))
        cat.edit(
            case.case_id,
            {
                "title": title,
                "findings": findings,
                "keywords": [keyword],
                "category": category,
                "difficulty": difficulty,
            },
            "trainer1",
        )
        ids[key] = case.case_id
    return ids


def found(page) -> list[str]:
    return [c.case_id for c in page.items]


def test_best_match_ranks_first(cat: Catalogue, library: dict) -> None:
    page = cat.search("pneumothorax")
    assert page.total == 2
    assert found(page) == [library["ptx"], library["ptx2"]]
    assert found(cat.search("subtle pneumothorax"))[0] == library["ptx"]
    assert found(cat.search("a subtle pneumothorax on CT for the ST2"))[0] == library["ptx"]
    assert found(cat.search("scaphoid"))[0] == library["scaph"]


def test_query_syntax(cat: Catalogue, library: dict) -> None:
    assert found(cat.search("fracture -scaphoid")) == [library["ptx2"]]
    assert found(cat.search('"basal cisterns"')) == [library["sah"]]
    assert cat.search('"cisterns basal"').total == 0
    assert found(cat.search("append*")) == [library["app"]]
    assert found(cat.search("haemorrhages")) == [library["sah"]]  # stemming
    assert cat.search('pneumo" OR * NEAR(').total >= 0  # user syntax cannot break the query
    assert cat.search("-fracture").total == 4


def test_all_terms_first_then_any(cat: Catalogue, library: dict) -> None:
    strict = cat.search("scaphoid fracture")
    assert strict.matched == "all" and found(strict) == [library["scaph"]]
    # no case has both: unknown words go first, then the more common word
    assert found(cat.search("scaphoid zebra")) == [library["scaph"]]
    loose = cat.search("fracture scaphoid appendicitis")
    assert loose.matched == "partial"
    assert set(found(loose)) in ({library["scaph"]}, {library["app"]})
    assert cat.search("zebra unicorn").total == 0


@pytest.mark.parametrize(
    "filters, expected",
    [
        (dict(modality="CT"), {"ptx"}),  # sah is withdrawn
        (dict(modality=["ct", "MR"]), {"ptx", "ms"}),
        (dict(body_part="thorax"), {"ptx", "ptx2"}),
        (dict(category="neuroradiology"), {"ms"}),
        (dict(category="neuroradiology", status=["withdrawn", "quarantined"]), {"sah", "ms"}),
        (dict(difficulty="primary"), {"ptx2", "scaph", "app"}),
        (dict(difficulty="primary", modality="CR", body_part="WRIST"), {"scaph"}),
        (dict(level="publication"), {"app"}),
        (dict(status="quarantined"), {"ms"}),
        (dict(status="withdrawn"), {"sah"}),
    ],
)
def test_each_filter(cat: Catalogue, library: dict, filters: dict, expected: set) -> None:
    cat.set_level(library["app"], "publication")
    cat.set_status(library["ms"], "quarantined")
    cat.set_status(library["sah"], "withdrawn")
    page = cat.search("", SearchFilters.of(**filters), per_page=50)
    assert set(found(page)) == {library[k] for k in expected}
    assert page.total == len(expected)


def test_collection_filter_combines_with_text(cat: Catalogue, library: dict) -> None:
    col = cat.create_collection("FRCR 2B chest", "", "trainer1")
    cat.add_to_collection(col.collection_id, [library["ptx2"], library["scaph"]], "trainer1")
    only = SearchFilters.of(collection=col.collection_id)
    assert set(found(cat.search("", only))) == {library["ptx2"], library["scaph"]}
    assert found(cat.search("pneumothorax", only)) == [library["ptx2"]]


def test_withdrawn_hidden_unless_asked(cat: Catalogue, library: dict) -> None:
    cat.set_status(library["ptx"], "withdrawn")
    assert library["ptx"] not in found(cat.search("pneumothorax"))
    assert library["ptx"] not in found(cat.search("", per_page=50))
    assert cat.search("", per_page=50).total == 5
    asked = cat.search("pneumothorax", SearchFilters.of(status=["withdrawn"]))
    assert found(asked) == [library["ptx"]]


def test_paging_and_sorting(cat: Catalogue, library: dict) -> None:
    order = [library[k] for k in ("ptx", "ptx2", "sah", "scaph", "app", "ms")]
    assert found(cat.search("", sort="added", per_page=50)) == order
    assert found(cat.search("", sort="-added", per_page=50)) == order[::-1]
    assert found(cat.search("", per_page=50)) == order[::-1]  # no query: newest first
    titles = [c.title for c in cat.search("", sort="title", per_page=50).items]
    assert titles == sorted(titles, key=str.lower)
    pages = [found(cat.search("", sort="added", page=p, per_page=4)) for p in (1, 2, 3)]
    assert pages == [order[:4], order[4:], []]
    assert cat.search("", page=2, per_page=4).total == 6
    assert found(cat.search("fracture", sort="title")) == [library["ptx2"], library["scaph"]]
    with pytest.raises(CatalogueError):
        cat.search("", sort="random")
    with pytest.raises(CatalogueError):
        cat.search("", per_page=0)


def test_search_index_follows_edits(cat: Catalogue, library: dict) -> None:
    cat.edit(library["app"], {"title": "Mucocele of the appendix"}, "trainer1")
    assert found(cat.search("mucocele")) == [library["app"]]
    assert cat.search("appendicitis").total == 1  # keyword still there
    cat.edit(library["app"], {"keywords": []}, "trainer1")
    assert cat.search("appendicitis").total == 0


@pytest.mark.parametrize(
    "text",
    [
        "Seen by Mrs Marigold Pennywhistle",
        "Referred on 12 June 2021",
        "contact 07700 900123",
        "MRN PLANT-99117",
        "daughter Rosalind",
        "post to LS1 4AP",
    ],
)
def test_teaching_text_with_free_text_identifier_refused(text: str) -> None:
    """Issue 24: the same free-text screen as ingest applies to what trainers type."""
    real = Catalogue(connect(":memory:"), "NSR")
    case_id = add(real, 1)
    with pytest.raises(IdentifierInTextError, match="clinical_history"):
        real.edit(case_id, {"clinical_history": text}, "trainer1")
    assert real.get(case_id).clinical_history == ""
