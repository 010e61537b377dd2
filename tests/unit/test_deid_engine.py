"""De-identification engine: nothing planted survives, UIDs/dates stay consistent,
burnt-in risks quarantine, bad input is refused, engine failures never release."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive.deid import DeidInputError, DeidSecrets, deidentify, load_policy, pseudonym_for
from archive.deid import engine as engine_mod
from archive.paths import POLICIES_DIR
from tests import corpus

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def policy():
    return load_policy(POLICIES_DIR)


@pytest.fixture
def secrets():
    return DeidSecrets(KEY)


def _read(b: bytes) -> Dataset:
    from io import BytesIO

    return dcmread(BytesIO(b))


def _encodings(value: str) -> list[bytes]:
    forms = {value, value.upper(), value.lower()}
    out = []
    for f in forms:
        out.append(f.encode("latin-1"))
        out.append(f.encode("utf-16-le"))
    return out


def _survivors(planted: set[str], output: bytes) -> list[str]:
    low = output.lower()
    hits = []
    for value in planted:
        if any(form in output for form in _encodings(value)) or value.lower().encode() in low:
            hits.append(value)
    return sorted(hits)


def test_no_planted_value_survives_anywhere(policy, secrets):
    ds, planted = corpus.make_planted_instance()
    data = corpus.to_bytes(ds)
    present = {p for p in planted if p.encode() in data}
    assert len(present) > 600  # the corpus really planted them (all rows + nested)
    result = deidentify(data, policy, secrets)
    assert result.quarantine_reason is None, result.quarantine_reason
    assert _survivors(present, result.released) == []
    out = _read(result.released)
    # the useful parts stay: sex kept, age banded, description kept without the name
    assert out.PatientSex == "F"
    assert out.PatientAge == "045Y"
    assert out.StudyDescription.startswith("desc")
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100" and {"113107", "113108", "113111"} <= set(codes)
    assert any(policy.version in m for m in out.DeidentificationMethod)
    assert out.PatientID == result.patient_pseudonym
    # kept safe private sequence survived (creator matched), unsafe private did not
    assert out[0x00290010].value == "MMCPrivate" and (0x0029, 0x1050) in out
    assert (0x0033, 0x0010) not in out
    assert not [t for t in out.keys() if t.group in (0x5000, 0x6000)]
    assert "GraphicAnnotationSequence" not in out
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.PixelData == ds.PixelData


def test_pseudonym_is_keyed_hash_of_issuer_and_id(policy, secrets):
    ds = corpus.make_ct_series(1, patient_id="PX1", issuer="TRUST-A")[0]
    result = deidentify(corpus.to_bytes(ds), policy, secrets)
    assert result.patient_pseudonym == pseudonym_for("TRUST-A", "PX1", secrets)
    assert result.patient_pseudonym != pseudonym_for("TRUST-B", "PX1", secrets)
    assert result.patient_pseudonym != pseudonym_for("TRUST-A", "PX1", DeidSecrets(b"\x01" * 32))
    assert "PX1" not in result.patient_pseudonym


def test_uids_consistent_across_sends_and_keys(policy, secrets):
    series = corpus.make_ct_series(2)
    first = [deidentify(corpus.to_bytes(d), policy, secrets) for d in series]
    again = [deidentify(corpus.to_bytes(d), policy, DeidSecrets(KEY)) for d in series]
    other = deidentify(corpus.to_bytes(series[0]), policy, DeidSecrets(b"\x07" * 32))
    assert [r.sop_instance_uid for r in first] == [r.sop_instance_uid for r in again]
    assert first[0].study_uid == first[1].study_uid == again[0].study_uid
    assert first[0].series_uid == first[1].series_uid
    assert first[0].sop_instance_uid != first[1].sop_instance_uid
    assert other.study_uid != first[0].study_uid
    for r in first:
        assert r.study_uid.startswith("2.25.") and len(r.study_uid) <= 64
    a, b = _read(first[0].released), _read(again[0].released)
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SOPClassUID == series[0].SOPClassUID  # well-known UIDs untouched
    assert a.file_meta.TransferSyntaxUID == series[0].file_meta.TransferSyntaxUID


def test_references_point_to_the_mapped_instances(policy, secrets):
    series = corpus.make_ct_series(3)
    derived = copy.deepcopy(series[2])
    derived.SOPInstanceUID = derived.file_meta.MediaStorageSOPInstanceUID = (
        corpus.SRC_ROOT + "4242.1"
    )
    ref = Dataset()
    ref.ReferencedSOPClassUID = series[1].SOPClassUID
    ref.ReferencedSOPInstanceUID = series[1].SOPInstanceUID
    derived.ReferencedImageSequence = Sequence([ref])
    src = Dataset()
    src.ReferencedSOPClassUID = series[0].SOPClassUID
    src.ReferencedSOPInstanceUID = series[0].SOPInstanceUID
    derived.SourceImageSequence = Sequence([src])
    target1 = deidentify(corpus.to_bytes(series[1]), policy, secrets)
    target0 = deidentify(corpus.to_bytes(series[0]), policy, secrets)
    out = _read(deidentify(corpus.to_bytes(derived), policy, secrets).released)
    item = out.ReferencedImageSequence[0]
    assert item.ReferencedSOPInstanceUID == target1.sop_instance_uid
    assert item.ReferencedSOPClassUID == series[1].SOPClassUID
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == target0.sop_instance_uid


def test_seg_references_survive_mapping(policy, secrets):
    data = open(get_testdata_file("liver.dcm"), "rb").read()
    src = _read(data)
    out = _read(deidentify(data, policy, secrets).released)
    src_refs = [e.value for e in src.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    out_refs = [e.value for e in out.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    from archive.deid import map_uid

    assert len(out_refs) == len(src_refs) > 0
    assert out_refs == [map_uid(u, secrets) for u in src_refs]
    assert out.PixelData == src.PixelData


def test_dates_shift_per_patient_and_keep_intervals(policy, secrets):
    s1 = corpus.make_ct_series(1, patient_id="PDATE", study_date="20240105")[0]
    s2 = corpus.make_ct_series(1, patient_id="PDATE", study_date="20240320")[0]
    s3 = corpus.make_ct_series(1, patient_id="PDATE", study_date="20240105")[0]
    outs = [_read(deidentify(corpus.to_bytes(d), policy, secrets).released) for d in (s1, s2, s3)]

    def day(s: str) -> dt.date:
        return dt.datetime.strptime(s, "%Y%m%d").date()

    assert outs[0].StudyDate != "20240105"
    assert day(outs[1].StudyDate) - day(outs[0].StudyDate) == dt.timedelta(days=75)
    assert outs[2].StudyDate == outs[0].StudyDate  # resend gives the same dates
    shift = (day(outs[0].StudyDate) - day("20240105")).days
    lo, hi = policy.offset_days
    assert lo <= shift <= hi and shift != 0
    assert outs[0].PatientBirthDate == ""  # the birth date goes
    assert outs[0].StudyTime == "101500"  # whole-day shifts keep times of day


def test_datetime_and_age_rules():
    assert engine_mod.shift_datetime("20240105101112.5+0100", -10) == "20231226101112.5+0100"
    assert engine_mod.shift_datetime("2024", -400) == "2023"
    assert engine_mod.shift_date("2024.01.05", 1) == "20240106"
    assert engine_mod.shift_date("garbage", 1) is None


@pytest.mark.parametrize(
    ("age", "expected"),
    [("047Y", "045Y"), ("018Y", "018Y"), ("019Y", "018Y"), ("017Y", "017Y"), ("006M", "006M"),
     ("093Y", "090Y"), ("050Y", "050Y"), ("bad", "")],
)  # fmt: skip
def test_age_bands(policy, secrets, age, expected):
    w = engine_mod._Walk(policy, secrets, ["iso8859"])
    assert w.age(age) == expected


def test_sr_structured_content_cleaned(policy, secrets):
    ds = corpus.make_sr_instance()
    result = deidentify(corpus.to_bytes(ds), policy, secrets)
    assert result.released is not None, result.quarantine_reason
    out = _read(result.released)
    body = result.released
    for planted in ("PLANTFAMILY", "OBSERVERPLANT", "SUBJECTIDPLANT", "17/03/1958", "PIDPLANT"):
        assert planted.encode() not in body
    values = [i.ValueType for i in out.ContentSequence]
    assert values == ["TEXT", "DATE"]  # subject and observer items removed
    assert out.ContentSequence[0].TextValue.startswith("Nodule seen.")
    assert out.ContentSequence[1].Date != "20240105"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: setattr(d, "Modality", "US"), "burnt-in text possible (modality US)"),
        (lambda d: setattr(d, "BurnedInAnnotation", "YES"), "BurnedInAnnotation=YES"),
        (lambda d: setattr(d, "ConversionType", "WSD"), "ConversionType present"),
        (
            lambda d: setattr(d, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.7"),
            "SOP class secondary capture",
        ),
    ],
)
def test_burnt_in_text_risks_quarantine(policy, secrets, mutate, reason):
    ds = corpus.make_ct_series(1, patient="QUARANTINEPATIENT^ANNA")[0]
    mutate(ds)
    result = deidentify(corpus.to_bytes(ds), policy, secrets)
    assert result.released is None
    assert reason in result.quarantine_reason
    assert "QUARANTINEPATIENT" not in result.quarantine_reason
    assert result.quarantined_bytes is not None
    assert b"QUARANTINEPATIENT" not in result.quarantined_bytes  # de-identified as far as possible


def test_pydicom_us_file_quarantined(policy, secrets):
    path = get_testdata_file("US1_J2KR.dcm") or get_testdata_file("US1_UNCR.dcm")
    result = deidentify(open(path, "rb").read(), policy, secrets)
    assert result.released is None
    assert "burnt-in text possible (modality US)" in result.quarantine_reason


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "rtplan.dcm",
        "rtdose.dcm",
        "test-SR.dcm",
        "liver.dcm",
        "waveform_ecg.dcm",
    ],
)
def test_pydicom_files_released_clean(policy, secrets, name):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not bundled with this pydicom")
    data = open(path, "rb").read()
    src = _read(data)
    result = deidentify(data, policy, secrets)
    assert result.released is not None, result.quarantine_reason
    out = _read(result.released)
    assert out.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
    assert out.SOPClassUID == src.SOPClassUID
    if "PixelData" in src:
        assert out.PixelData == src.PixelData  # byte-identical, never decoded
    if "WaveformSequence" in src:
        assert out.WaveformSequence[0].WaveformData == src.WaveformSequence[0].WaveformData
    body = result.released
    for uid in (src.SOPInstanceUID, src.StudyInstanceUID, src.SeriesInstanceUID):
        assert uid.encode() not in body
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        value = str(src.get(kw, "") or "")
        if len(value) >= 4 and value not in ("Anonymous",):
            assert value.encode() not in body, kw
    assert out.PatientIdentityRemoved == "YES"


def test_bad_input_refused(policy, secrets):
    data = corpus.to_bytes(corpus.make_ct_series(1)[0])
    for bad in (b"", b"not dicom at all" * 20, data[:200], data[:-7], b"\x00" * 128 + b"DICM"):
        with pytest.raises(DeidInputError):
            deidentify(bad, policy, secrets)


def test_engine_failure_quarantines_without_values(policy, secrets, monkeypatch):
    ds = corpus.make_ct_series(1, patient="CRASHPATIENT^C")[0]

    def boom(self, *args):
        raise RuntimeError("CRASHPATIENT leaked?")

    # the per-element code that both the raw-element path and the full path run
    monkeypatch.setattr(engine_mod._Walk, "apply", boom)
    result = deidentify(corpus.to_bytes(ds), policy, secrets)
    assert result.released is None and result.quarantined_bytes is None
    assert result.quarantine_reason == "de-identification error: RuntimeError"


def test_secrets_validate_and_hide_key():
    with pytest.raises(ValueError):
        DeidSecrets(b"short")
    assert KEY.hex() not in repr(DeidSecrets(KEY))
