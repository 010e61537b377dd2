"""The viewer's DICOMweb (archive/dicomweb) and the teaching modes (archive/teach),
without Orthanc: the viewer policy, quiz redaction, frames, and per-study access with
its audit (once per study per session, every refusal) through archive.core."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import date

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.sequence import Sequence

from archive.access.principal import Principal
from archive.core import Ports, Refusal
from archive.db import connect
from archive.dicomweb import DicomWeb, Request, load_viewer_policy
from archive.dicomweb.dicomjson import read_header, redact, to_json
from archive.dicomweb.frames import frames_of, multipart
from archive.dicomweb.policy import ViewerPolicyError, parse_viewer_policy
from archive.paths import POLICIES_DIR
from archive.teach import choose_case_of_day, mark_unknown, quiz_view, record_answer, reveal
from archive.vault.ledger import entry_from_dicom
from tests.corpus import make_ct_series, to_bytes

POLICY = load_viewer_policy(POLICIES_DIR)


def who(user: str, *roles: str, trained: bool = True) -> Principal:
    return Principal(user=user, roles=tuple(roles), trained=trained)


class _Audit:
    def __init__(self) -> None:
        self.events = []

    def append(self, event) -> int:
        self.events.append(event)
        return len(self.events)

    def of(self, action: str) -> list:
        return [e for e in self.events if e.action == action]


def _ports(tmp_path) -> Ports:
    conn = connect(tmp_path / "archive.db")  # PostgreSQL in test_pg_dicomweb.py
    return Ports(db=conn, audit=_Audit(), policies_dir=POLICIES_DIR, source="test")


@dataclass
class _Series:
    description: str = ""


@dataclass
class _Case:
    case_id: str = "NSR-2026-00001"
    study_uid: str = ""
    orthanc_study_id: str = "study"
    status: str = "available"
    title: str = "Pneumothorax"
    clinical_history: str = "Sudden breathlessness."
    findings: str = "Left pneumothorax."
    diagnosis: str = "Tension pneumothorax"
    differential: str = ""
    discussion: str = "Decompress."
    teaching_points: str = ""
    references: str = ""
    modalities: list = field(default_factory=lambda: ["CT"])
    body_part: str = "CHEST"
    age_band: str = "50-59"
    sex: str = "F"
    difficulty: str = ""
    series: list = field(default_factory=lambda: [_Series("Axial PNEUMOTHORAX")])


# -- policy ---------------------------------------------------------------------------
def test_viewer_policy_suite_networks_and_bad_files():
    assert POLICY.from_suite("127.0.0.1") and POLICY.from_suite("10.2.3.4")
    assert POLICY.from_suite("::ffff:192.168.1.9") and POLICY.from_suite("::1")
    assert not POLICY.from_suite("8.8.8.8") and not POLICY.from_suite("unknown")
    with pytest.raises(ViewerPolicyError, match="not a DICOM keyword"):
        parse_viewer_policy({"version": 1, "access": {"suite_networks": ["127.0.0.1/32"]},
                             "quiz": {"replace": ["NoSuchKeyword"]}})  # fmt: skip
    with pytest.raises(ViewerPolicyError, match="access"):
        parse_viewer_policy({"version": 1, "access": {"suite_networks": ["nonsense"]}})


# -- metadata ---------------------------------------------------------------------------
def _revealing() -> Dataset:
    ds = make_ct_series(1)[0]
    ds.StudyDescription = "CT chest PNEUMOTHORAX"
    ds.SeriesDescription = "Axial PNEUMOTHORAX"
    ds.ProtocolName = "PNEUMOTHORAX protocol"
    ds.ImageComments = "large PNEUMOTHORAX"
    code = Dataset()
    code.CodeMeaning = "PNEUMOTHORAX"
    ds.ProcedureCodeSequence = Sequence([code])
    item = Dataset()
    item.ImageComments = "nested PNEUMOTHORAX"
    item.AnatomicRegionSequence = Sequence([code])
    ds.ReferencedStudySequence = Sequence([item])
    ds.add_new(0x00091010, "LO", "private PNEUMOTHORAX")
    return ds


def test_quiz_redaction_leaves_nothing_that_names_the_finding():
    ds = read_header(to_bytes(_revealing()))
    redact(ds, POLICY, series_number=2)
    doc = json.dumps(to_json(ds))
    assert "PNEUMOTHORAX" not in doc
    assert ds.StudyDescription == "Unknown case" and ds.SeriesDescription == "Series 2"
    assert "SOPInstanceUID" in ds and "Rows" in ds  # what the viewer needs stays


def test_metadata_leaves_out_pixels_and_keeps_the_rest():
    data = to_bytes(_revealing())
    doc = to_json(read_header(data))
    assert "7FE00010" not in doc and "PNEUMOTHORAX" in json.dumps(doc)  # not a quiz


# -- frames -----------------------------------------------------------------------------
def test_uncompressed_frames_cut_and_wrapped_in_multipart():
    ds = make_ct_series(1, rows=8, columns=8)[0]
    ds.NumberOfFrames = 2
    ds.PixelData = bytes(range(128)) + bytes(range(128, 256))
    parts, media, syntax = frames_of(to_bytes(ds), [2])
    assert parts == [bytes(range(128, 256))] and media == "application/octet-stream"
    body, content_type = multipart(parts, media, syntax)
    boundary = content_type.split("boundary=")[1]
    assert content_type.startswith('multipart/related; type="application/octet-stream"')
    assert body.startswith(f"--{boundary}\r\nContent-Type: application/octet-stream; "
                           f"transfer-syntax={syntax}\r\n\r\n".encode())  # fmt: skip
    assert body.endswith(f"--{boundary}--\r\n".encode()) and bytes(range(128, 256)) in body
    with pytest.raises(ValueError, match="frames 1 to 2"):
        frames_of(to_bytes(ds), [3])


def test_compressed_frames_served_as_stored_with_their_media_type():
    data = open(pydicom.data.get_testdata_file("MR_small_RLE.dcm"), "rb").read()
    parts, media, syntax = frames_of(data, [1])
    ds = pydicom.dcmread(io.BytesIO(data))
    assert media == "image/dicom-rle" and syntax == "1.2.840.10008.1.2.5"
    assert parts[0] == next(generate_frames(ds.PixelData, number_of_frames=1))


# -- access and audit -------------------------------------------------------------------
def _study(n: int = 3) -> tuple[list, dict]:
    files = [to_bytes(_revealing_slice(i)) for i in range(n)]
    entries = [entry_from_dicom(f"uuid{i}", data) for i, data in enumerate(files)]
    return entries, {e.uuid: d for e, d in zip(entries, files, strict=True)}


_SERIES_UID = "1.2.826.0.1.3680043.10.999.77"
_STUDY_UID = "1.2.826.0.1.3680043.10.999.78"


def _revealing_slice(i: int) -> Dataset:
    ds = _revealing()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _STUDY_UID, _SERIES_UID
    ds.SOPInstanceUID = f"{_SERIES_UID}.{i + 1}"
    ds.InstanceNumber = i + 1
    return ds


class _Ledger:
    def __init__(self, entries) -> None:
        self.entries = entries

    def study_files(self, orthanc_study_id):
        return [e.__class__(**{**e.__dict__, "orthanc_study_id": "study"}) for e in self.entries]


def _request(ports, service_case, entries, files, path, user=("reg1", "registrar"),
             ip="127.0.0.1", session="s1", query=None) -> Request:  # fmt: skip
    return Request(path=path, query=query or {}, principal=who(*user), session=session, ip=ip,
                   ports=ports, find_case=lambda uid: service_case if uid == _STUDY_UID else None,
                   ledger=_Ledger(entries), read=lambda e: files[e.uuid])  # fmt: skip


def test_open_study_audited_once_per_session_refusals_every_time(tmp_path):
    ports, (entries, files) = _ports(tmp_path), _study()
    case = _Case(study_uid=_STUDY_UID)
    web = DicomWeb(POLICY)
    base = f"/studies/{_STUDY_UID}/series/{_SERIES_UID}"
    for path in (f"/studies/{_STUDY_UID}/series", f"{base}/metadata",
                 f"{base}/instances/{_SERIES_UID}.1/frames/1",
                 f"{base}/instances/{_SERIES_UID}.2/frames/1"):  # fmt: skip
        answer = web.handle(_request(ports, case, entries, files, path))
        assert answer.status == 200, answer.body
    assert [e.outcome for e in ports.audit.of("viewer.open")] == ["success"]
    web.handle(_request(ports, case, entries, files, f"{base}/metadata", session="s2"))
    assert len(ports.audit.of("viewer.open")) == 2  # another session, another record
    # Not released (back under review), from outside the suite, an unknown study, the
    # Board, an untrained registrar: 403, each audited as denied.
    held = _Case(study_uid=_STUDY_UID, status="quarantined")
    refusals = [
        _request(ports, held, entries, files, f"{base}/metadata"),
        _request(ports, case, entries, files, f"{base}/metadata", ip="192.0.2.1"),
        _request(ports, case, entries, files, "/studies/1.2.3/metadata"),
        _request(ports, case, entries, files, f"{base}/metadata", user=("b", "board_member")),
    ]
    for req in refusals:
        answer = web.handle(req)
        assert answer.status == 403 and json.loads(answer.body)["next"]
    denied = [e for e in ports.audit.of("viewer.open") if e.outcome == "denied"]
    assert len(denied) == len(refusals)
    assert all("1.2.826" not in json.dumps(e.detail) for e in denied)  # no raw UIDs
    # No whole DICOM instance, ever.
    whole = web.handle(_request(ports, case, entries, files, f"{base}/instances/x.1"))
    assert whole.status == 404


def test_quiz_redacts_until_this_person_reveals(tmp_path):
    ports, (entries, files) = _ports(tmp_path), _study(2)
    case = _Case(study_uid=_STUDY_UID)
    assert not isinstance(mark_unknown(ports, who("t1", "trainer"), case), Refusal)
    web = DicomWeb(POLICY)
    path = f"/studies/{_STUDY_UID}/metadata"

    def metadata(user: str) -> str:
        answer = web.handle(_request(ports, case, entries, files, path, user=(user, "registrar"),
                                     session=user))  # fmt: skip
        assert answer.status == 200
        return answer.body.decode()

    assert "PNEUMOTHORAX" not in metadata("reg1") and "Unknown case" in metadata("reg1")
    assert not quiz_view(ports, who("t1", "trainer"), case).hidden  # its presenters see all
    view = quiz_view(ports, who("reg1", "registrar"), case)
    assert view.hidden and not view.revealed and "Pneumothorax" not in view.title
    assert all("PNEUMOTHORAX" not in s for s in view.series)
    hits = record_answer(ports, who("reg1", "registrar"), case, "NHS 943 476 5919",
                         scan=lambda text: ["nhs"])  # fmt: skip
    assert isinstance(hits, Refusal) and hits.code == "invalid"
    saved = record_answer(ports, who("reg1", "registrar"), case, "pneumothorax?", scan=lambda t: [])
    assert not isinstance(saved, Refusal)
    assert not isinstance(reveal(ports, who("reg1", "registrar"), case), Refusal)
    view = quiz_view(ports, who("reg1", "registrar"), case)
    assert not view.hidden and view.revealed["diagnosis"] == "Tension pneumothorax"
    assert view.my_answer == "pneumothorax?"
    assert "PNEUMOTHORAX" in metadata("reg1")  # revealed for reg1 (cache keyed by it)...
    assert "PNEUMOTHORAX" not in metadata("reg2")  # ...and only for reg1
    late = record_answer(ports, who("reg1", "registrar"), case, "changed", scan=lambda t: [])
    assert isinstance(late, Refusal) and late.code == "conflict"
    answers = ports.audit.of("quiz.answer")
    assert answers and all("pneumothorax?" not in json.dumps(e.detail) for e in answers)


def test_only_trainers_mark_unknowns_and_choose_the_case_of_the_day(tmp_path):
    ports, case = _ports(tmp_path), _Case()
    assert isinstance(mark_unknown(ports, who("reg1", "registrar"), case), Refusal)
    assert isinstance(choose_case_of_day(ports, who("p", "personnel"), case, date.today()),
                      Refusal)  # fmt: skip
    assert not isinstance(choose_case_of_day(ports, who("t", "trainer"), case, date.today()),
                          Refusal)  # fmt: skip
    held = _Case(status="quarantined")
    refused = mark_unknown(ports, who("t", "trainer"), held)
    assert isinstance(refused, Refusal) and refused.code == "state"
    untrained = choose_case_of_day(ports, who("t2", "trainer", trained=False), case, date.today())
    assert isinstance(untrained, Refusal) and untrained.code == "training"
