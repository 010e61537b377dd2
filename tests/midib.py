"""A MIDI-B-style scorer (issue 24) on a planted corpus built the way a stranger would.

MIDI-B (TCIA, 2024) scores de-identification per category against an answer key. This
is the same idea on our own corpus: every value planted is distinct (so a byte search
finds it unambiguously), at every depth (top level, nested sequences, free text, burnt
into pixels), and the answer key says what must go, what must shift, what must stay.

    corpus = build_corpus(patients=3)
    outputs = run_pipeline(corpus, home_policies)      # the archive's own ingest pipeline
    score = score_outputs(corpus, outputs)             # per-category percentages

Categories:
- ``text_removed``: planted identifying words (names, IDs, phones, MRNs, other
  hospitals, relatives, free-text dates as written) absent from every released value;
- ``dates_shifted``: every planted header date of a patient moved by one offset
  (non-zero), the same for all of that patient's dates;
- ``uids_consistent``: each source UID maps to one new UID everywhere, never kept, and
  references (ReferencedSOPInstanceUID, FrameOfReferenceUID) point at the new UIDs;
- ``pixel_text_hidden``: planted burnt-in strings not legible in what was released (the
  instance held, or the string's box blacked out);
- ``non_phi_retained``: planted harmless values (modality, geometry, KVP, sex,
  descriptions without identifiers) kept unchanged in released instances;
- ``dciodvfy_not_worse``: released instances have no more dciodvfy errors than their
  source (dicom3tools; when dciodvfy is missing, pydicom's own read-back is used and the
  report says so).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from archive.pixels.synthetic import (
    CT_SOP_CLASS,
    US_SOP_CLASS,
    make_dataset,
    ultrasound_with_text,
)
from tests.corpus import to_bytes

SRC_ROOT = "1.2.826.0.1.3680043.10.998."  # invented source root


@dataclass
class Planted:
    """One source instance and its answer key."""

    name: str
    data: bytes
    patient: str  # corpus-level patient key
    phi_words: list[str] = field(default_factory=list)
    dates: dict[str, str] = field(default_factory=dict)  # keyword path -> YYYYMMDD
    uids: dict[str, str] = field(default_factory=dict)  # role -> source UID
    references: dict[str, str] = field(default_factory=dict)  # ref role -> source SOP UID
    keep: dict[str, str] = field(default_factory=dict)  # keyword -> value that must stay
    pixel_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class Corpus:
    instances: list[Planted]


# --- building the corpus -------------------------------------------------------------------

_GIVEN = ["ALDERMIRA", "BRISELDA", "CORVANNE", "DELPHOR", "EVANTHE", "FALKIRA"]
_FAMILY = ["QUINTOVAR", "RASHLEIGHT", "STROMBOLD", "TREVANNICK", "ULVERSTANE", "VORTIGAN"]
_HOSPITALS = ["ST ELDERBURY INFIRMARY", "MARROWFIELD COTTAGE HOSPITAL", "GRANTHOLME CLINIC"]
_RELATIVES = ["Ysolde", "Peregrin", "Wenlock", "Tamsin", "Oswin", "Hesper"]


def _uid(n: int) -> str:
    return f"{SRC_ROOT}{n}"


def _date(base: dt.date, days: int) -> str:
    return (base + dt.timedelta(days=days)).strftime("%Y%m%d")


def _ct_pixels(i: int) -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64]
    return (1000 + 40 * np.sin((x + i) / 7.0) + 30 * np.cos(y / 9.0)).astype(np.uint16)


def build_corpus(patients: int = 3, ct_per_series: int = 3, us_with_text: int = 1) -> Corpus:
    """Distinct planted values for ``patients`` patients: a CT series each (with nested
    sequences, references and free text) and ``us_with_text`` ultrasound images with the
    patient's name and ID burnt in, plus one text-free ultrasound image."""
    out: list[Planted] = []
    counter = iter(range(1, 10_000))
    for p in range(patients):
        given, family = _GIVEN[p % 6], _FAMILY[p % 6]
        pid = f"MRNX{40_000 + 7 * p:06d}"
        other_id = f"OTHR{91_000 + 13 * p}"
        hospital = _HOSPITALS[p % 3]
        relative = _RELATIVES[p % 6]
        phone = f"01632 96{p:01d} {400 + p:03d}"
        base = dt.date(2021, 3, 4) + dt.timedelta(days=97 * p)
        event = (base - dt.timedelta(days=40)).strftime("%d/%m/%Y")
        study = _uid(next(counter))
        series = _uid(next(counter))
        frame = _uid(next(counter))
        sops = [_uid(next(counter)) for _ in range(ct_per_series)]
        words = [given, family, pid, other_id, relative, phone, event, f"PLANT-{7100 + p}"]
        words += [w for w in hospital.split() if len(w) > 4 and w not in {"CLINIC"}]
        for k, sop in enumerate(sops):
            ds = make_dataset(
                _ct_pixels(k),
                modality="CT",
                sop_class=CT_SOP_CLASS,
                photometric="MONOCHROME2",
                bits_stored=12,
            )
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
                study,
                series,
                frame,
            )
            ds.PatientName = f"{family}^{given}"
            ds.PatientID = pid
            ds.IssuerOfPatientID = hospital
            ds.PatientBirthDate = _date(base, -365 * 50 - p)
            ds.PatientSex = "F" if p % 2 else "M"
            ds.StudyDate = _date(base, 0)
            ds.SeriesDate = _date(base, 0)
            ds.ContentDate = _date(base, 1)
            ds.AcquisitionDate = _date(base, 1)
            ds.StudyTime = "101500"
            ds.AccessionNumber = f"ACC{77_000 + 11 * p}"
            ds.InstitutionName = hospital
            ds.ReferringPhysicianName = f"PHYSLINE^{family[:3]}DOC"
            ds.OperatorsName = f"OPRATOR{p}^TECH"
            ds.StudyDescription = "CT ABDOMEN WITH CONTRAST"
            ds.SeriesDescription = "PORTAL VENOUS"
            ds.BodyPartExamined = "ABDOMEN"
            ds.KVP = "120"
            ds.SliceThickness = "5"
            ds.PixelSpacing = ["0.7", "0.7"]
            ds.ImagePositionPatient = [0, 0, 5 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.InstanceNumber = k + 1
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.StudyComments = (
                f"Mrs {given} {family} seen on {event} at {hospital}; "
                f"daughter {relative} on {phone}. MRN PLANT-{7100 + p}."
            )
            ds.AdditionalPatientHistory = f"Previously imaged under {other_id} on {event}."
            other = Dataset()
            other.PatientID = other_id
            other.IssuerOfPatientID = hospital
            ds.OtherPatientIDsSequence = Sequence([other])
            request = Dataset()
            request.RequestedProcedureDescription = "CT ABDOMEN"
            request.ScheduledProcedureStepID = f"SPS{p}{k}"
            request.RequestingPhysician = f"REQDOC{p}^{given[:4]}"
            request.RequestedProcedureComments = f"for {given} {family}, ring {phone}"
            issuer = Dataset()  # depth 2: an identifier only a nested item holds
            issuer.LocalNamespaceEntityID = f"NSPACE{p}QX{k}"
            referenced = Dataset()
            referenced.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
            referenced.ReferencedSOPInstanceUID = _uid(next(counter))
            nested = Dataset()  # depth 3: free text inside a nested item
            nested.CodeValue, nested.CodingSchemeDesignator = "P5-0000", "SRT"
            nested.CodeMeaning = "CT ABDOMEN"
            request.IssuerOfAccessionNumberSequence = Sequence([issuer])
            request.ReferencedStudySequence = Sequence([referenced])
            request.RequestedProcedureCodeSequence = Sequence([nested])
            ds.RequestAttributesSequence = Sequence([request])
            refs = {}
            if k:
                item = Dataset()
                item.ReferencedSOPClassUID = CT_SOP_CLASS
                item.ReferencedSOPInstanceUID = sops[0]
                ds.ReferencedImageSequence = Sequence([item])
                refs["ReferencedImageSequence"] = sops[0]
            phi = words + [
                ds.AccessionNumber,
                f"REQDOC{p}",
                f"OPRATOR{p}",
                "PHYSLINE",
                f"SPS{p}{k}",
                f"NSPACE{p}QX{k}",
            ]
            out.append(
                Planted(
                    name=f"p{p}_ct{k}.dcm",
                    data=to_bytes(ds),
                    patient=f"P{p}",
                    phi_words=phi,
                    dates={
                        "StudyDate": ds.StudyDate,
                        "SeriesDate": ds.SeriesDate,
                        "ContentDate": ds.ContentDate,
                        "AcquisitionDate": ds.AcquisitionDate,
                    },
                    uids={
                        "study": study,
                        "series": series,
                        "sop": sop,
                        "frame": frame,
                    },
                    references=refs,
                    keep={
                        "Modality": "CT",
                        "BodyPartExamined": "ABDOMEN",
                        "KVP": "120",
                        "SliceThickness": "5",
                        "PatientSex": ds.PatientSex,
                        "StudyDescription": "CT ABDOMEN WITH CONTRAST",
                        "Rows": "64",
                        "Columns": "64",
                    },
                )
            )
        for u in range(us_with_text + 1):
            texts: tuple = ()
            if u < us_with_text:
                texts = ((f"{family} {given}", (8, 6)), (f"ID {pid}", (160, 215)))
            us, boxes = ultrasound_with_text(texts=texts, size=14, colour=False)
            us.PatientName, us.PatientID = f"{family}^{given}", pid
            us.IssuerOfPatientID = hospital  # the same patient to the archive's keying
            us.StudyInstanceUID = study
            us.SeriesInstanceUID = _uid(next(counter))
            sop = _uid(next(counter))
            us.SOPInstanceUID = us.file_meta.MediaStorageSOPInstanceUID = sop
            us.SOPClassUID = US_SOP_CLASS
            us.StudyDate = _date(base, 0)
            us.PatientSex = "F" if p % 2 else "M"
            out.append(
                Planted(
                    name=f"p{p}_us{u}.dcm",
                    data=to_bytes(us),
                    patient=f"P{p}",
                    phi_words=[given, family, pid],
                    dates={"StudyDate": us.StudyDate},
                    uids={"study": study, "sop": sop},
                    keep={"Modality": "US", "Rows": "240", "Columns": "320"},
                    pixel_boxes=[(b.x, b.y, b.width, b.height) for b in boxes],
                )
            )
    return Corpus(out)


# --- running the archive's pipeline ------------------------------------------------------


def run_pipeline(corpus: Corpus, policies_dir: Path, key: bytes = bytes(range(32))):
    """Each planted instance through the archive's ingest pipeline: {name: bytes | None}."""
    from archive.deid import DeidSecrets, load_policy
    from archive.ingest import Action, IngestRefused, IngestService, load_handover
    from archive.pixels import load_masking_policy

    deid = load_policy(policies_dir)
    service = IngestService(
        deid,
        DeidSecrets(pseudonym_key=key),
        lambda data, reason, **meta: "held",
        lambda event: 0,
        masking=load_masking_policy(policies_dir),
        handover=load_handover(policies_dir, deid),
    )
    outputs: dict[str, bytes | None] = {}
    for item in corpus.instances:
        try:
            outcome = service.process(item.data, "cli", "midib")
        except IngestRefused:
            outputs[item.name] = None
            continue
        outputs[item.name] = outcome.data if outcome.action is Action.STORE else None
    return outputs


# --- scoring -----------------------------------------------------------------------------


def _values(ds: Dataset) -> Iterator[tuple[str, str]]:
    """(keyword, text) of every element at every depth (bytes decoded leniently)."""
    for elem in ds.iterall():
        if elem.VR == "SQ" or elem.tag == 0x7FE00010:
            continue
        value = elem.value
        if isinstance(value, bytes):
            text = value.decode("latin-1", errors="replace")
        elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
        yield elem.keyword or str(elem.tag), text


def _find(ds: Dataset, keyword: str) -> list[str]:
    return [text for kw, text in _values(ds) if kw == keyword]


@dataclass
class Score:
    counts: dict[str, list[int]]  # category -> [passed, total]
    released: int
    held: int
    validator: str

    def percent(self, category: str) -> float:
        passed, total = self.counts[category]
        return 100.0 * passed / total if total else 100.0

    def lines(self) -> list[str]:
        out = [
            f"{name:22s} {self.percent(name):7.2f}%  ({passed}/{total})"
            for name, (passed, total) in self.counts.items()
        ]
        out.append(f"released {self.released}, held {self.held}; validator: {self.validator}")
        return out


def _dciodvfy_errors(data: bytes) -> int | None:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".dcm") as fh:
        fh.write(data)
        fh.flush()
        done = subprocess.run([exe, fh.name], capture_output=True, timeout=60)
    text = (done.stdout + done.stderr).decode("latin-1", errors="replace")
    return sum(1 for line in text.splitlines() if line.startswith("Error"))


def score_outputs(corpus: Corpus, outputs: dict[str, bytes | None]) -> Score:
    counts = {
        name: [0, 0]
        for name in (
            "text_removed",
            "dates_shifted",
            "uids_consistent",
            "pixel_text_hidden",
            "non_phi_retained",
            "dciodvfy_not_worse",
        )
    }
    validator = "dciodvfy (dicom3tools)" if shutil.which("dciodvfy") else "pydicom read-back"
    released = {n: dcmread(BytesIO(d)) for n, d in outputs.items() if d is not None}
    uid_map: dict[str, set[str]] = {}
    shifts: dict[str, list[int]] = {}

    def tally(cat: str, ok: bool) -> None:
        counts[cat][0] += int(ok)
        counts[cat][1] += 1

    for item in corpus.instances:
        ds = released.get(item.name)
        if ds is None:
            continue
        text = "\n".join(t for _, t in _values(ds)).upper()
        for word in item.phi_words:
            tally("text_removed", re.search(re.escape(word.upper()), text) is None)
        for keyword, value in item.keep.items():
            tally("non_phi_retained", value in _find(ds, keyword))
        for keyword, original in item.dates.items():
            got = (_find(ds, keyword) or [""])[0]
            try:
                delta = (
                    dt.datetime.strptime(got, "%Y%m%d") - dt.datetime.strptime(original, "%Y%m%d")
                ).days
            except ValueError:
                delta = None
            shifts.setdefault(item.patient, []).append(delta if delta is not None else 0)
        roles = {
            "study": "StudyInstanceUID",
            "series": "SeriesInstanceUID",
            "sop": "SOPInstanceUID",
            "frame": "FrameOfReferenceUID",
        }
        for role, source in item.uids.items():
            new = (_find(ds, roles[role]) or [""])[0]
            uid_map.setdefault(source, set()).add(new)
            tally("uids_consistent", bool(new) and new != source and not new.startswith(SRC_ROOT))
        for _ref, source_sop in item.references.items():
            refs = _find(ds, "ReferencedSOPInstanceUID")
            target = next((c for c in corpus.instances if c.uids.get("sop") == source_sop), None)
            target_ds = released.get(target.name) if target else None
            expected = str(target_ds.SOPInstanceUID) if target_ds is not None else None
            tally("uids_consistent", expected is not None and expected in refs)
        before = _dciodvfy_errors(item.data)
        if before is None:
            try:
                dcmread(BytesIO(outputs[item.name] or b""))
                ok = True
            except Exception:  # noqa: BLE001
                ok = False
        else:
            ok = (_dciodvfy_errors(outputs[item.name] or b"") or 0) <= before
        tally("dciodvfy_not_worse", ok)
    for _source, news in uid_map.items():  # one source UID -> one new UID everywhere
        tally("uids_consistent", len(news) == 1)
    for _patient, deltas in shifts.items():
        modal = max(set(deltas), key=deltas.count)
        for delta in deltas:
            tally("dates_shifted", delta == modal and delta != 0)
    for item in corpus.instances:  # pixels: held, or each planted box blacked out
        for x, y, w, h in item.pixel_boxes:
            ds = released.get(item.name)
            if ds is None:
                tally("pixel_text_hidden", True)
                continue
            arr = ds.pixel_array
            box = arr[y : y + h, x : x + w]
            tally("pixel_text_hidden", box.size > 0 and int(box.max()) == int(box.min()))
    return Score(
        counts,
        len(released),
        sum(1 for d in outputs.values() if d is None),
        validator,
    )


def new_uid() -> str:  # for callers that extend the corpus
    return generate_uid()
