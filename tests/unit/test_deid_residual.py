"""Residual-identifier check, on free text and inside de-identification."""

from __future__ import annotations

import io
from io import BytesIO

import pydicom
import pytest
from pydicom import dcmread

from archive.deid import DeidSecrets, deidentify, load_policy, scan_text
from archive.deid.residual import date_variants, is_hc_number, nhs_check_digit_ok
from archive.paths import POLICIES_DIR
from tests import corpus


@pytest.fixture(scope="module")
def policy():
    return load_policy(POLICIES_DIR)


SECRETS = DeidSecrets(b"\x05" * 32)


@pytest.mark.parametrize(
    ("digits", "ok"),
    [("9434765919", True), ("9434765918", False), ("4010232137", True), ("1234567890", False)],
)
def test_nhs_check_digit(digits, ok):
    assert nhs_check_digit_ok(digits) is ok


def test_patterns_without_known_values():
    assert "NHS number with valid check digit" in scan_text("seen, NHS 943 476 5919 today")
    assert scan_text("ratio 943-476-5918") == []  # wrong check digit, no label
    # ...but labelled as a record number it is one, whatever its check digit.
    assert scan_text("nhs 943-476-5918") == ["hospital or record number"]
    assert scan_text("H&C 320 123 4567") == ["Health & Care number pattern"]
    assert is_hc_number("3999999999") and not is_hc_number("4000000000")
    assert scan_text("slice 12345678901 thickness 1.5") == []  # 11 digits: not a number ID
    assert scan_text("Axial chest, lung window") == []


def test_known_values_word_boundaries_and_no_values_in_hits():
    hits = scan_text("Follow-up for jane DOE-SMITH", known=["Doe-Smith", "Jane"])
    assert hits == ["known identifier (name or ID)"] * 2
    assert scan_text("Janet Doerr", known=["Jane", "Doe"]) == []
    for hit in scan_text("MRN AB12345 here", known=["AB12345"]):
        assert "AB12345" not in hit


def test_birth_date_in_usual_formats():
    assert "17/03/1958" in date_variants("19580317")
    for text in ("born 17/03/1958", "DOB 1958-03-17", "dob 17 Mar 1958", "3/17/1958"):
        assert scan_text(text, known=["19580317"]) == ["known date (e.g. of birth)"], text
    # Another date is not the birth date, but still a date (issue 24: dates in free text).
    assert scan_text("born 18/03/1958", known=["19580317"]) == ["date"]


def _ct(**kw):
    return corpus.make_ct_series(1, patient="HOLMES^SHERLOCK", patient_id="BAKER221")[0]


def test_name_in_description_is_cleaned_and_text_kept(policy):
    ds = _ct()
    ds.StudyDescription = "CT abdomen Holmes follow-up"
    ds.SeriesDescription = "Portal venous SHERLOCK"
    result = deidentify(corpus.to_bytes(ds), policy, SECRETS)
    assert result.released is not None, result.quarantine_reason
    out = dcmread(BytesIO(result.released))
    assert out.StudyDescription == "CT abdomen follow-up"
    assert out.SeriesDescription == "Portal venous"


def test_name_in_kept_text_quarantines_and_reason_has_no_value(policy):
    ds = _ct()
    ds.BodyPartExamined = "ABDOMEN"
    ds.ContrastBolusRoute = "IV Holmes"  # not in Table E.1-1: kept, so it must be checked
    result = deidentify(corpus.to_bytes(ds), policy, SECRETS)
    assert result.released is None
    assert "residual known identifier (name or ID)" in result.quarantine_reason
    assert "(0018,1040) ContrastBolusRoute" in result.quarantine_reason
    assert "Holmes" not in result.quarantine_reason
    assert result.quarantined_bytes is not None
    assert b"HOLMES" not in result.quarantined_bytes  # the patient name itself is replaced


def test_name_in_kept_safe_private_text_quarantines(policy):
    ds = _ct()
    block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
    block.add_new(0x01, "LO", "for sherlock")  # KB marks (0009,"GEMS_PETD_01",01) safe
    result = deidentify(corpus.to_bytes(ds), policy, SECRETS)
    assert result.released is None
    assert "residual known identifier" in result.quarantine_reason
    assert "(0009,01) private" in result.quarantine_reason


def test_nhs_number_in_description_is_removed(policy):
    # A cleaned descriptor loses the number (issue 24: free-text identifiers are cleaned
    # like the instance's own identifiers); the rest of the description is kept.
    ds = _ct()
    ds.StudyDescription = "CT head 943 476 5919"
    result = deidentify(corpus.to_bytes(ds), policy, SECRETS)
    assert result.released is not None, result.quarantine_reason
    out = pydicom.dcmread(io.BytesIO(result.released))
    assert out.StudyDescription == "CT head"
    assert b"943 476 5919" not in result.released


def test_staff_and_institution_names_are_known(policy):
    ds = _ct()
    ds.ProtocolName = "Dr Referrer protocol St Elsewhere General"
    result = deidentify(corpus.to_bytes(ds), policy, SECRETS)
    out = dcmread(BytesIO(result.released))
    assert "Referrer" not in out.ProtocolName and "Elsewhere" not in out.ProtocolName
    assert out.ProtocolName.startswith("Dr")


def test_birth_date_in_comment_is_cleaned(policy):
    ds = _ct()
    ds.PatientBirthDate = "19580317"
    ds.ImageComments = "DOB 17.03.1958 contrast given"
    out = dcmread(BytesIO(deidentify(corpus.to_bytes(ds), policy, SECRETS).released))
    assert "1958" not in out.ImageComments and "contrast given" in out.ImageComments
