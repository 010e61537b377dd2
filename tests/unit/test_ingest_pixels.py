"""Ingest with the pixel step: engine hand-over, masking, holds, tickets, flags."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.data import get_testdata_file

from archive import db
from archive.deid import DeidSecrets, load_policy
from archive.ingest import (
    Action,
    IngestService,
    flags_for_study,
    load_handover,
    record_flags,
    tickets,
)
from archive.paths import POLICIES_DIR
from archive.pixels import load_masking_policy, tesseract_available
from tests import corpus

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def deid():
    return load_policy(POLICIES_DIR)


@pytest.fixture(scope="module")
def masking():
    return load_masking_policy(POLICIES_DIR)


@pytest.fixture
def service(deid, masking, tmp_path):
    held: list[dict] = []
    conn = db.connect(tmp_path / "a.db")

    def hold(data, reason, **meta):
        held.append({"data": data, "reason": reason, **meta})
        return f"q-{len(held)}"

    svc = IngestService(
        deid,
        DeidSecrets(pseudonym_key=KEY),
        hold,
        lambda event: 0,
        masking=masking,
        handover=load_handover(POLICIES_DIR, deid),
        record_flags=lambda s, se, f: record_flags(conn, s, se, f),
        redeem_ticket=lambda sop, data: tickets.redeem(conn, KEY, sop_uid=sop, data=data),
    )
    svc.held, svc.conn = held, conn
    return svc


def _us_bytes(path="US1_UNCR.dcm") -> bytes:
    return open(get_testdata_file(path), "rb").read()


def test_handover_only_for_pure_burnt_in_reasons(deid):
    h = load_handover(POLICIES_DIR, deid)
    assert h.accepts("burnt-in text possible (modality US)")
    assert h.accepts(
        "burnt-in text possible (modality US); burnt-in text possible (BurnedInAnnotation=YES)"
    )
    assert not h.accepts("burnt-in text possible (modality IVUS)")
    assert not h.accepts("burnt-in text possible (modality US); residual identifier in (0008,1030)")
    assert not h.accepts("burnt-in text possible (RecognizableVisualFeatures=YES)")
    assert not h.accepts(None) and not h.accepts("")


@pytest.mark.skipif(
    not tesseract_available(load_masking_policy(POLICIES_DIR)),
    reason="apt-get install tesseract-ocr",
)
def test_us_with_template_is_masked_and_stored(service):
    out = service.process(_us_bytes(), intake="dicom", source="dicom")
    assert out.action is Action.STORE and out.masked
    ds = pydicom.dcmread(BytesIO(out.data))
    assert ds.BurnedInAnnotation == "NO"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.SOPInstanceUID.startswith("2.25.")
    assert any(i.CodeValue == "113101" for i in ds.DeidentificationMethodCodeSequence)
    arr = ds.pixel_array
    assert not arr[0:108].any() and not arr[345:480].any()
    assert arr[108:345].any()


@pytest.mark.skipif(
    not tesseract_available(load_masking_policy(POLICIES_DIR)),
    reason="apt-get install tesseract-ocr",
)
def test_unknown_device_us_is_held_as_pixels_item(service):
    ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
    ds.Manufacturer = "Unknown Devices Ltd"
    out = service.process(corpus.to_bytes(ds), intake="dicom", source="dicom")
    assert out.action is Action.HOLD
    held = service.held[-1]
    assert held["kind"] == "pixels" and "no masking template" in held["reason"]
    assert b"Unknown Devices" in held["data"] and held["raw"] is False


def test_header_problem_still_held_outright(service):
    ds = corpus.make_ct_series(1)[0]
    ds.Modality = "IVUS"
    out = service.process(corpus.to_bytes(ds), intake="dicom", source="dicom")
    assert out.action is Action.HOLD and service.held[-1]["kind"] == "deid"


def test_ct_released_byte_identical_to_engine_output(service, deid):
    from archive.deid import deidentify

    data = corpus.to_bytes(corpus.make_ct_series(1)[0])
    out = service.process(data, intake="rest", source="rest")
    assert out.action is Action.STORE and not out.masked
    assert out.data == deidentify(data, deid, DeidSecrets(pseudonym_key=KEY)).released


def test_thin_head_ct_flagged_for_the_study(service):
    ds = corpus.make_ct_series(1)[0]
    ds.BodyPartExamined, ds.SliceThickness = "HEAD", "0.625"
    out = service.process(corpus.to_bytes(ds), intake="dicom", source="dicom")
    assert out.action is Action.STORE
    assert flags_for_study(service.conn, out.study_uid) == ["facial-features-possible"]


def test_photograph_without_consent_held(service):
    ds = corpus.make_ct_series(1)[0]
    ds.Modality, ds.SOPClassUID = "XC", "1.2.840.10008.5.1.4.1.1.77.1.4"
    out = service.process(corpus.to_bytes(ds), intake="dicom", source="dicom")
    assert out.action is Action.HOLD and "consent" in out.reason
    assert "photograph" in service.held[-1]["flags"]


def test_ticket_stores_plugin_bytes_unchanged_once(service):
    data = corpus.to_bytes(corpus.make_ct_series(1)[0])
    first = service.process(data, intake="rest", source="rest")
    released = first.data
    sop = pydicom.dcmread(BytesIO(released)).SOPInstanceUID
    tickets.mint(service.conn, KEY, item_id="q-x", sop_uid=sop, data=released, reviewer="bob")
    reports = []
    service.record_report = lambda *args: reports.append(args)
    again = service.process(released, intake="plugin", source="plugin")
    assert again.reviewed_release and again.data == released
    # a reviewer's release still leaves the pixel report the publication review reads
    assert [(r[2], r[4]["action"]) for r in reports] == [(sop, "reviewed")]
    reports.clear()
    replay = service.process(released, intake="plugin", source="plugin")
    assert not replay.reviewed_release  # single use: de-identified again instead
    assert pydicom.dcmread(BytesIO(replay.data)).SOPInstanceUID != sop


def test_ticket_for_other_bytes_or_wrong_key_does_not_redeem(tmp_path):
    conn = db.connect(tmp_path / "t.db")
    tickets.mint(conn, KEY, item_id="q", sop_uid="2.25.1", data=b"abc", reviewer="bob")
    assert tickets.redeem(conn, KEY, sop_uid="2.25.1", data=b"abd") is None
    assert tickets.redeem(conn, b"\x01" * 32, sop_uid="2.25.1", data=b"abc") is None
    assert tickets.redeem(conn, KEY, sop_uid="2.25.1", data=b"abc") == "q"
    assert tickets.redeem(conn, KEY, sop_uid="2.25.1", data=b"abc") is None


def test_flags_decided_by_reviewer_disappear(tmp_path):
    from archive.ingest import decide_flag

    conn = db.connect(tmp_path / "f.db")
    record_flags(conn, "2.25.9", "2.25.10", ["facial-features-possible", "photograph"])
    record_flags(conn, "2.25.9", "2.25.11", ["photograph"])
    assert flags_for_study(conn, "2.25.9") == ["facial-features-possible", "photograph"]
    assert decide_flag(conn, "2.25.9", "photograph", "carol", "consent form seen") == 2
    assert flags_for_study(conn, "2.25.9") == ["facial-features-possible"]


def test_plain_ct_upload_is_parsed_once_by_the_raw_path(service, monkeypatch):
    """Issue 26: a REST upload of a CT slice (no burnt-in indicator) is indexed once by
    the raw-element path; nothing reads it again with pydicom (ticket check, engine, pixel
    step), and a ticketed release still redeems."""
    from archive.deid import engine
    from archive.ingest import pixelstep
    from archive.ingest import service as service_mod

    service.redeem_import = lambda sop, data: tickets.redeem(
        service.conn, KEY, sop_uid=sop, data=data, imports_only=True
    )
    data = corpus.to_bytes(corpus.make_ct_series(1, vendor_header=True)[0])
    calls = []

    def counting(module):
        real = module.dcmread

        def read(*args, **kwargs):
            calls.append(module.__name__)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, "dcmread", read)

    for module in (engine, pixelstep, service_mod):
        counting(module)
    outcome = service.process(data, intake="rest", source="rest")
    assert outcome.action is Action.STORE and outcome.data is not None
    assert calls == []


def test_a_released_instance_records_commit_once(deid, masking, tmp_path):
    """Issue 26: the records of a released instance (flags, pixel report, face slice) are
    one transaction: archive.db commits with synchronous=FULL, so one fsync instead of
    one per record; a failing record rolls all of them back (and the instance is refused,
    as before)."""
    from archive.core import transaction
    from archive.ingest import flags as ingest_flags

    conn = db.connect(tmp_path / "b.db")
    ingest_flags.ensure_schema(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)

    def build(record_face):
        return IngestService(
            deid,
            DeidSecrets(pseudonym_key=KEY),
            lambda data, reason, **meta: "q-1",
            lambda event: 0,
            masking=masking,
            handover=load_handover(POLICIES_DIR, deid),
            record_flags=lambda s, se, f: record_flags(conn, s, se, f),
            record_report=lambda *args: ingest_flags.record_pixel_report(conn, *args),
            record_face=record_face,
            batch=lambda: transaction(conn),
        )

    thin = corpus.make_ct_series(2, rows=64, columns=64, vendor_header=True)
    for ds in thin:
        ds.SliceThickness, ds.BodyPartExamined = "1", "HEAD"
    service = build(
        lambda study, series, sop, face: ingest_flags.record_face_slice(
            conn, study, series, sop, face, masking.facial
        )
    )
    outcome = service.process(corpus.to_bytes(thin[0]), intake="rest", source="rest")
    assert outcome.action is Action.STORE
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "BEGIN", "COMMIT")]
    assert writes[0].startswith("BEGIN") and writes[-1] == "COMMIT", writes
    assert sum(s == "COMMIT" for s in writes) == 1
    tables = " ".join(writes)
    assert "ingest_pixel_reports" in tables and "ingest_face_slices" in tables

    def broken(*args):
        raise RuntimeError("disk full")

    reports = conn.execute("SELECT COUNT(*) FROM ingest_pixel_reports").fetchone()[0]
    with pytest.raises(RuntimeError):
        build(broken).process(corpus.to_bytes(thin[1]), intake="rest", source="rest")
    assert conn.execute("SELECT COUNT(*) FROM ingest_pixel_reports").fetchone()[0] == reports


def test_a_cstored_study_origin_is_in_the_instance_transaction(deid, masking, tmp_path):
    """Issue 26: the origin of a C-STOREd study is recorded in the same transaction as the
    instance's other records (no commit of its own); a rolled-back transaction leaves no
    origin behind and the instance sent again records it."""
    from archive.core import transaction
    from archive.ingest import flags as ingest_flags
    from archive.ingest import origins

    conn = db.connect(tmp_path / "o.db")
    ingest_flags.ensure_schema(conn)
    origins.ensure_schema(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    fail = []

    def record_report(*args):
        ingest_flags.record_pixel_report(conn, *args)

    def record_origin(study, intake):
        origins.record(conn, study, intake)
        if fail:
            raise RuntimeError("disk full")

    service = IngestService(
        deid,
        DeidSecrets(pseudonym_key=bytes(range(32))),
        lambda data, reason, **meta: "q-1",
        lambda event: 0,
        masking=masking,
        handover=load_handover(POLICIES_DIR, deid),
        record_flags=lambda s, se, f: ingest_flags.record_flags(conn, s, se, f),
        record_report=record_report,
        record_origin=record_origin,
        batch=lambda: transaction(conn),
    )
    first, second = corpus.make_ct_series(2, rows=64, columns=64, vendor_header=True)
    fail.append(True)
    with pytest.raises(RuntimeError):
        service.process(corpus.to_bytes(first), intake="dicom", source="dicom")
    assert conn.execute("SELECT COUNT(*) FROM ingest_origins").fetchone()[0] == 0
    fail.clear()
    statements.clear()
    outcome = service.process(corpus.to_bytes(first), intake="dicom", source="dicom")
    assert outcome.action is Action.STORE
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "BEGIN", "COMMIT")]
    assert writes[0].startswith("BEGIN") and writes[-1] == "COMMIT", writes
    assert sum(s == "COMMIT" for s in writes) == 1
    assert any("ingest_origins" in s for s in writes[:-1]), writes
    origins.remember(outcome.study_uid)  # as the receiver does once process returned
    assert origins.intake_of(conn, outcome.study_uid) == "dicom"
    statements.clear()
    service.process(corpus.to_bytes(second), intake="dicom", source="dicom")
    assert not any("ingest_origins" in s for s in statements if s.startswith("INSERT"))
    service.process(corpus.to_bytes(second), intake="rest", source="rest")
    assert [tuple(r) for r in conn.execute("SELECT intake FROM ingest_origins")] == [("dicom",)]
