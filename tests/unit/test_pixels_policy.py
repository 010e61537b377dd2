"""Pixel policy, templates, candidate rules, consent and the facial flag (no OCR runs here)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from archive.errors import ArchiveError
from archive.paths import POLICIES_DIR
from archive.pixels import (
    FACIAL_FLAG,
    Region,
    allowed_uses,
    assess,
    check_consent_level,
    consent_allows,
    define_template,
    facial_features_possible,
    is_candidate,
    load_masking_policy,
    match_template,
    save_template,
)
from archive.pixels.synthetic import VL_PHOTO_SOP_CLASS, ct_slice, make_dataset


def _read(name: str):
    """A pydicom test file; the larger ones come from the pydicom-data package."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is in pydicom-data: pip install pydicom-data")
    return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def policy():
    return load_masking_policy(POLICIES_DIR)


def _no_ocr(policy):
    """A policy whose tesseract cannot run: any OCR attempt quarantines."""
    return dataclasses.replace(
        policy, ocr=dataclasses.replace(policy.ocr, command="/nonexistent/tesseract")
    )


def _us1():
    return _read("US1_UNCR.dcm")


# --- policy and templates ------------------------------------------------------------------


def test_repository_policy_loads_with_versions(policy):
    assert policy.version == 1
    assert policy.consent.levels == (
        "record_only",
        "teaching",
        "printed_publication",
        "internet_publication",
    )
    names = {t.name for t in policy.templates}
    assert "ge-logiq700-us-480x640" in names
    assert all(t.version == 1 for t in policy.templates)


def test_template_matches_manufacturer_model_size_and_modality(policy):
    ds = _us1()
    assert match_template(ds, policy).name == "ge-logiq700-us-480x640"
    ds.Manufacturer = "  g.e. medical   SYSTEMS "  # case and spacing do not matter
    assert match_template(ds, policy) is not None
    for keyword, value in [
        ("Rows", 481),
        ("Columns", 600),
        ("Modality", "NM"),
        ("ManufacturerModelName", "LOGIQ 9"),
        ("Manufacturer", "Other Co"),
    ]:
        other = _us1()
        setattr(other, keyword, value)
        assert match_template(other, policy) is None, keyword


def test_exact_model_wins_over_wildcard(policy):
    wildcard = define_template("a-any", "Acme", "*", 100, 100, "US", [(0, 0, 10, 10)])
    exact = define_template("z-exact", "Acme", "Scan 2", 100, 100, "US", [(0, 0, 20, 20)])
    p = dataclasses.replace(policy, templates=(wildcard, exact))
    ds = Dataset()
    ds.Manufacturer, ds.ManufacturerModelName, ds.Modality = "Acme", "Scan 2", "US"
    ds.Rows = ds.Columns = 100
    assert match_template(ds, p).name == "z-exact"
    ds.ManufacturerModelName = "Scan 3"
    assert match_template(ds, p).name == "a-any"


@pytest.mark.parametrize(
    "name, regions",
    [
        ("Bad Name", [(0, 0, 10, 10)]),
        ("ok", [(95, 0, 10, 10)]),  # runs past the 100 columns
        ("ok", [(0, 0, 0, 10)]),  # empty
        ("ok", []),  # nothing to mask
    ],
)
def test_define_template_rejects_invalid(name, regions):
    with pytest.raises(ArchiveError):
        define_template(name, "Acme", "X", 100, 100, "US", regions)


def test_save_template_writes_new_file_that_loads_and_refuses_overwrite(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR / "masking", policies / "masking")
    shutil.copy(POLICIES_DIR / "consent.toml", policies / "consent.toml")
    template = define_template(
        "acme-scan2-us-100x100",
        "Acme",
        "Scan 2",
        100,
        100,
        "US",
        [Region(0, 0, 100, 12)],
        image_area=[(0, 12, 100, 88)],
    )
    path = save_template(policies, template)
    assert path.parent == policies / "masking" / "templates"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    reloaded = load_masking_policy(policies)
    ds = Dataset()
    ds.Manufacturer, ds.ManufacturerModelName, ds.Modality = "Acme", "Scan 2", "US"
    ds.Rows = ds.Columns = 100
    found = match_template(ds, reloaded)
    assert found is not None and found.regions == template.regions
    assert found.image_area == template.image_area and found.version == 1
    with pytest.raises(ArchiveError, match="already exists"):
        save_template(policies, template)


def test_invalid_policy_names_the_missing_field(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR / "masking", policies / "masking")
    shutil.copy(POLICIES_DIR / "consent.toml", policies / "consent.toml")
    text = (policies / "masking" / "policy.toml").read_text()
    (policies / "masking" / "policy.toml").write_text(text.replace("min_confidence = ", "x = "))
    with pytest.raises(ArchiveError, match="min_confidence"):
        load_masking_policy(policies)
    with pytest.raises(ArchiveError, match="missing"):
        load_masking_policy(tmp_path / "nowhere")


# --- candidates ----------------------------------------------------------------------------


def test_ultrasound_is_candidate_and_plain_ct_is_not(policy):
    assert any("modality US" in r for r in is_candidate(_us1(), policy))
    ct = _read("CT_small.dcm")
    assert is_candidate(ct, policy) == []


@pytest.mark.parametrize(
    "keyword, value, expected",
    [
        ("BurnedInAnnotation", "YES", "BurnedInAnnotation"),
        ("ImageType", ["DERIVED", "SECONDARY", "SCREEN SAVE"], "SCREEN SAVE"),
        ("ImageType", ["ORIGINAL", "PRIMARY", "DOSE_INFO"], "DOSE"),
        ("SeriesDescription", "Dose Report", "dose report"),
        ("SeriesDescription", "Patient Protocol", "patient protocol"),
        ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7.4", "Multi-frame True Color Secondary"),
        ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF"),
        ("ConversionType", "SD", "scanned document"),
        ("ConversionType", "WSD", "Conversion Type WSD"),
        ("ImageType", ["DERIVED", "PRIMARY", "AXIAL"], "image type DERIVED"),
        ("ImageType", ["ORIGINAL", "SECONDARY"], "image type SECONDARY"),
        ("BurnedInAnnotation", "MAYBE", "BurnedInAnnotation is not NO"),
        ("Modality", "NM", "modality NM"),
    ],
)
def test_header_rules_mark_candidates(policy, keyword, value, expected):
    ds = ct_slice()
    setattr(ds, keyword, value)
    reasons = is_candidate(ds, policy)
    assert any(expected in r for r in reasons), reasons


def test_overlay_plane_marks_candidate(policy):
    ds = ct_slice()
    ds.add_new(0x60003000, "OW", b"\0" * 32)
    assert "overlay plane present" in is_candidate(ds, policy)


# --- assess without OCR --------------------------------------------------------------------


def test_ct_is_released_without_running_ocr(policy):
    # tesseract cannot run under this policy: a release proves OCR was never attempted
    verdict = assess(ct_slice(), _no_ocr(policy))
    assert verdict.action == "release"
    assert verdict.dataset is not None


def test_ocr_missing_quarantines_candidates_fail_closed(policy):
    for ds in (
        _us1(),
        make_dataset(
            np.zeros((32, 32), np.uint8),
            modality="XA",
            sop_class="1.2.840.10008.5.1.4.1.1.12.1",
            photometric="MONOCHROME2",
        ),
    ):
        verdict = assess(ds, _no_ocr(policy))
        assert verdict.action == "quarantine"
        assert verdict.reasons[0] == "OCR unavailable"
        assert verdict.dataset is None


def test_ocr_disabled_by_policy_quarantines_template_candidates(policy):
    off = dataclasses.replace(policy, ocr=dataclasses.replace(policy.ocr, enabled=False))
    verdict = assess(_us1(), off)
    assert verdict.action == "quarantine" and verdict.reasons[0] == "OCR unavailable"


def test_candidate_without_template_quarantines_without_patient_values(policy):
    ds = _read("color3d_jpeg_baseline.dcm")
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID998877"
    verdict = assess(ds, _no_ocr(policy))  # OCR reads every candidate first (issue 24)
    assert verdict.action == "quarantine"
    assert verdict.reasons[0] == "OCR unavailable"
    text = " ".join(verdict.reasons + verdict.flags)
    assert "DOE" not in text and "PID998877" not in text


def test_encapsulated_pdf_is_quarantined(policy):
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.Modality = "DOC"
    ds.EncapsulatedDocument = b"%PDF-1.4"
    verdict = assess(ds, policy)
    assert verdict.action == "quarantine" and "Encapsulated PDF" in verdict.reasons[0]


# --- photographs and consent ---------------------------------------------------------------


def _photo():
    rgb = np.full((48, 64, 3), 180, np.uint8)
    return make_dataset(rgb, modality="XC", sop_class=VL_PHOTO_SOP_CLASS, photometric="RGB")


@pytest.mark.parametrize("level", [None, "record_only", "no-such-level"])
def test_photograph_without_teaching_consent_is_quarantined(policy, level):
    verdict = assess(_photo(), policy, consent_level=level)
    assert verdict.action == "quarantine"
    assert verdict.reasons == ["photograph without teaching consent"]
    assert "photograph" in verdict.flags


@pytest.mark.parametrize("level", ["teaching", "printed_publication", "internet_publication"])
def test_photograph_with_teaching_consent_or_more_is_released(policy, level):
    verdict = assess(_photo(), _no_ocr(policy), consent_level=level)
    assert verdict.action == "release", verdict.reasons
    assert f"photograph-consent:{level}" in verdict.flags


def test_photograph_by_modality_alone_needs_consent(policy):
    ds = _photo()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # XC captured as secondary capture
    assert assess(ds, policy).reasons == ["photograph without teaching consent"]


def test_consent_scope(policy):
    assert consent_allows(policy, "teaching", "teaching_suite")
    assert consent_allows(policy, "teaching", "limited_access")
    assert not consent_allows(policy, "teaching", "printed_publication")
    assert not consent_allows(policy, "printed_publication", "publication")
    assert consent_allows(policy, "internet_publication", "publication")
    assert not consent_allows(policy, None, "clinical_record")
    assert "printed_publication" in allowed_uses(policy, "printed_publication")
    assert "internet_publication" not in allowed_uses(policy, "printed_publication")
    assert check_consent_level(policy, "teaching") == "teaching"
    with pytest.raises(ArchiveError, match="unknown consent level"):
        check_consent_level(policy, "everything")
    with pytest.raises(ArchiveError, match="unknown photograph use"):
        consent_allows(policy, "teaching", "billboard")


# --- facial features -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "modality, body_part, thickness, description, flagged",
    [
        ("CT", "HEAD", 0.625, "", True),
        ("MR", "BRAIN", 1.0, "", True),
        ("CT", "HEAD", 2.0, "", True),
        ("CT", "HEAD", 5.0, "", False),
        ("CT", "CHEST", 0.625, "", False),
        ("CT", "", 1.0, "Sinus 1mm bone", True),
        ("CT", "", 1.0, "Cardiac CTA", False),
        ("CT", "HEAD", None, "", True),  # unknown thickness: fail closed
        ("US", "HEAD", 0.5, "", False),
    ],
)
def test_facial_features_flag(policy, modality, body_part, thickness, description, flagged):
    ds = ct_slice(body_part=body_part, slice_thickness=thickness, modality=modality)
    if modality == "US":
        ds.Modality = "US"
    ds.SeriesDescription = description
    assert facial_features_possible(ds, policy) is flagged


def test_facial_flag_reads_enhanced_functional_groups_and_reaches_verdict(policy):
    ds = ct_slice(body_part="HEAD", slice_thickness=None, modality="MR")
    measures = Dataset()
    measures.SliceThickness = 0.9
    group = Dataset()
    group.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [group]
    strict = dataclasses.replace(
        policy, facial=dataclasses.replace(policy.facial, flag_when_thickness_unknown=False)
    )
    assert facial_features_possible(ds, strict)
    verdict = assess(ds, _no_ocr(policy))
    assert verdict.action == "release" and FACIAL_FLAG in verdict.flags


def test_repository_policy_files_carry_provenance():
    for path in (POLICIES_DIR / "consent.toml", POLICIES_DIR / "masking" / "policy.toml"):
        text = Path(path).read_text()
        assert "sha256" in text and "version = 1" in text


@pytest.mark.parametrize("command", ["false", "true"])
def test_tesseract_failing_or_silent_quarantines(policy, command):
    # "false" exits 1; "true" exits 0 but prints no TSV table: both must hold the image
    broken = dataclasses.replace(policy, ocr=dataclasses.replace(policy.ocr, command=command))
    verdict = assess(_us1(), broken)
    assert verdict.action == "quarantine" and verdict.dataset is None
    assert verdict.reasons[0] == "OCR unavailable"
