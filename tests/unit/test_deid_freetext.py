"""Free-text identifiers with no header counterpart (issue 24), in the screen and in the
engine: institution words, names after titles, phones, e-mail, postcodes, record
numbers, dates (shifted with the patient's offset), identifiers inside removed
sequences, and the clinical text that must survive."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive.deid import deidentify, load_policy
from archive.deid.freetext import clean, distinctive_words, find, kinds
from archive.deid.keyed import DeidSecrets
from archive.deid.residual import scan_text
from archive.paths import POLICIES_DIR
from tests import corpus

SECRETS = DeidSecrets(b"\x05" * 32)


@pytest.mark.parametrize(
    "text,kind",
    [
        ("seen by Mrs Marigold Pennywhistle", "title and name"),
        ("Dr. O'Neill reported", "title and name"),
        ("ring 0161 496 0123", "phone number"),
        ("ring (0113) 243 3144", "phone number"),
        ("ring +44 20 7946 0958", "phone number"),
        ("ring +1 (212) 555-0199", "phone number"),
        ("bleep 4512", "phone number"),
        ("write to j.bloggs@example.nhs.uk", "e-mail address"),
        ("lives LS1 4AP", "postcode"),
        ("lives in SW1A 1AA", "postcode"),
        ("MRN PLANT-99117", "hospital or record number"),
        ("Hosp No: RX1234567", "hospital or record number"),
        ("ref PLANT-99117", "identifier code"),
        ("NHS 943 476 5919", "NHS number with valid check digit"),
        ("chi 1503581234", "hospital or record number"),
        ("on 3rd March 2019", "date"),
        ("on 03/04/2019", "date"),
        ("on 2019-04-03", "date"),
        ("on March 4, 2019", "date"),
        ("on 4-Mar-19", "date"),
        ("since March 2017", "date"),
        ("daughter Rosalind attends", "relative's name"),
        ("NOK: Peter Brown", "relative's name"),
    ],
)
def test_each_form_is_found(text, kind):
    assert kind in kinds(text), (text, kinds(text))
    cleaned, found = clean(text, -100)
    assert kind in found


@pytest.mark.parametrize(
    "text",
    [
        "CT HEAD W/O CONTRAST 5mm",
        "MR BRAIN T2 FLAIR AX 3.0T",
        "MS plaques in the periventricular white matter",
        "512 x 512, slice 1.25 mm, kVp 120, mAs 250, CTDIvol 12.5 mGy",
        "L4-L5 disc protrusion; C1-C2 fusion; T2 hyperintensity; S1 root",
        "Smith fracture of the distal radius; Colles; Salter-Harris II",
        "3 of 5 nodes, 2.5 x 3.1 cm, BI-RADS 4, PI-RADS 3, TI-RADS 2",
        "Series 2 of 5, phase 70%, delay 120 s, 10/10 pain",
        "Discovery CT750 HD; SOMATOM Force; Ingenia 3.0T",
    ],
)
def test_clinical_text_survives(text):
    assert find(text) == [], (text, kinds(text))
    assert clean(text, -100) == (text, [])


def test_dates_are_shifted_by_the_offset_not_removed():
    cleaned, found = clean("prior 2018-11-02, follow up 04/03/2019", -10)
    assert found == ["date"]
    assert cleaned == "prior 2018-10-23, follow up 2019-02-22"


def test_distinctive_words_of_names():
    assert distinctive_words("ST WULFSTAN INFIRMARY") == ["WULFSTAN"]
    assert distinctive_words("Royal General Hospital") == []
    assert distinctive_words("Pennywhistle") == []  # one word: matched whole already


def test_teaching_text_screen_refuses_every_form():
    for text in (
        "Presented to Dr Quill at the MDT",
        "Referred on 12 June 2021",
        "contact 07700 900123",
        "MRN PLANT-99117",
    ):
        assert scan_text(text), text
    assert scan_text("Classic bat-wing oedema; Kerley B lines") == []


def _ct(**kw) -> Dataset:
    ds = corpus.make_ct_series(1, patient="HOLMES^SHERLOCK", patient_id="BAKER221")[0]
    for key, value in kw.items():
        setattr(ds, key, value)
    return ds


@pytest.fixture(scope="module")
def policy():
    return load_policy(POLICIES_DIR)


def _released(ds, policy) -> pydicom.Dataset:
    result = deidentify(corpus.to_bytes(ds), policy, SECRETS)
    assert result.released is not None, result.quarantine_reason
    return pydicom.dcmread(io.BytesIO(result.released))


def test_engine_cleans_free_text_fields(policy):
    ds = _ct(
        InstitutionName="ST WULFSTAN INFIRMARY",
        StudyDescription="F/U WULFSTAN CT chest",
        AdditionalPatientHistory=(
            "Seen by Mrs Marigold Pennywhistle on 3rd March 2019, tel 0161 496 0123, "
            "MRN PLANT-99117; daughter Rosalind; query sarcoid"
        ),
        ReasonForTheRequestedProcedure="Weight loss. Prior at Royal Quillshire 2018-11-02",
    )
    out = _released(ds, policy)
    everything = str(out)
    planted_values = (
        "WULFSTAN",
        "Marigold",
        "Pennywhistle",
        "0161",
        "PLANT-99117",
        "2018-11-02",
        "Rosalind",
    )
    for planted in planted_values:
        assert planted not in everything, planted
    assert "CT chest" in out.StudyDescription
    assert "query sarcoid" in out.AdditionalPatientHistory
    assert "Weight loss" in out.ReasonForTheRequestedProcedure


def test_identifiers_only_inside_a_removed_sequence_are_learned(policy):
    other = Dataset()
    other.PatientID = "ZX-55821"
    other.IssuerOfPatientID = "QUILLSHIRE"
    ds = _ct(
        OtherPatientIDsSequence=Sequence([other]),
        AdditionalPatientHistory="old number ZX-55821 at QUILLSHIRE; cough",
    )
    out = _released(ds, policy)
    assert "ZX-55821" not in str(out) and "QUILLSHIRE" not in str(out)
    assert "cough" in out.AdditionalPatientHistory


def test_patient_characteristics_free_text_is_removed_whole(policy):
    # Retain Patient Characteristics keeps these under a C action; their text is not a
    # controlled term and cannot be cleaned with confidence (options.toml remove_free_text).
    ds = _ct(SpecialNeeds="hard of hearing, wife Bettina signs", PreMedication="Ask Bettina")
    out = _released(ds, policy)
    assert "Bettina" not in str(out)
    assert not out.get("SpecialNeeds") and not out.get("PreMedication")
