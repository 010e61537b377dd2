"""The archive's DICOMweb for its browser viewer: QIDO-RS, WADO-RS metadata and frames,
answered from the vault (FORMAT.md), never by Orthanc and never by orthanc.RestApi*.

Every request names a study; before anything is read the study is checked:
- the client address is one of the suite's networks (policies/access/viewer.toml);
- the study is a catalogue case, and archive.core authorises `viewer.open` on it for
  this person (roles, training, and the case's state: released, "available", only; a
  study held in the quarantine, withdrawn or unknown to the catalogue is refused);
- the first request for a study in a web session is audited (viewer.open, success), and
  the study's further requests are not audited again for the policy's window; every
  refusal is audited.
While the case is an unknown this person has not revealed, every answer is redacted
(archive/dicomweb/dicomjson.py). Whole DICOM instances are never answered.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archive.core import Ports, Refusal, Resource, authorise, perform
from archive.dicomweb import dicomjson
from archive.dicomweb.frames import FrameError, frames_of, multipart
from archive.dicomweb.policy import ViewerPolicy
from archive.teach.masking import hidden_cases
from archive.teach.store import TeachStore

DICOM_JSON = "application/dicom+json"
UID = r"([0-9][0-9.]{0,63})"
ROUTES = [
    ("qido_studies", re.compile(r"/studies/?\Z")),
    ("qido_series", re.compile(rf"/studies/{UID}/series/?\Z")),
    ("qido_instances", re.compile(rf"/studies/{UID}/series/{UID}/instances/?\Z")),
    ("qido_study_instances", re.compile(rf"/studies/{UID}/instances/?\Z")),
    ("study_metadata", re.compile(rf"/studies/{UID}/metadata\Z")),
    ("series_metadata", re.compile(rf"/studies/{UID}/series/{UID}/metadata\Z")),
    ("instance_metadata", re.compile(rf"/studies/{UID}/series/{UID}/instances/{UID}/metadata\Z")),
    ("frames",
     re.compile(rf"/studies/{UID}/series/{UID}/instances/{UID}/frames/([0-9,]{{1,200}})\Z")),
]  # fmt: skip
NO_FILES = (
    "The archive serves images to the viewer frame by frame and no DICOM files to "
    "browsers; pull the case to a suite workstation to work on the files."
)


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = DICOM_JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Opened:
    case_id: str
    hidden: bool

    def audit(self) -> dict[str, Any]:
        return {"quiz_hidden": self.hidden}


@dataclass
class Request:
    """One DICOMweb request, as the web adapter decoded it."""

    path: str  # below /dicomweb, e.g. "/studies/1.2.3/series"
    query: dict[str, str]
    principal: Any
    session: str  # the web session's id (only its hash is kept)
    ip: str
    ports: Ports
    find_case: Callable[[str], Any]  # study UID -> catalogue Case or None
    ledger: Any  # archive.vault.ledger.InstanceLedger
    read: Callable[[Any], bytes]  # ledger entry -> decrypted DICOM bytes


def refusal_answer(status: int, error: str, next_step: str) -> Answer:
    body = json.dumps({"error": error, "next": next_step}).encode()
    return Answer(status, body, "application/json")


class DicomWeb:
    """One per running archive: holds the audit de-duplication and a metadata cache."""

    def __init__(self, policy: ViewerPolicy, clock: Callable[[], float] = time.monotonic,
                 cache_size: int = 8192) -> None:  # fmt: skip
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()
        self._audited: dict[tuple[str, str, str], float] = {}
        self._meta: OrderedDict[tuple[str, bool], dict] = OrderedDict()
        self._cache_size = cache_size
        self._answers: OrderedDict[tuple, bytes] = OrderedDict()  # whole metadata answers

    # -- access -------------------------------------------------------------------------
    def _recently_audited(self, key: tuple[str, str, str]) -> bool:
        now = self.clock()
        with self._lock:
            last = self._audited.get(key)
            if last is not None and now - last < self.policy.audit_window_seconds:
                return True
            if len(self._audited) > 10000:  # forget the oldest half
                for old in sorted(self._audited, key=self._audited.get)[:5000]:
                    del self._audited[old]
            return False

    def _note_audited(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._audited[key] = self.clock()

    def open_study(self, req: Request, study_uid: str) -> tuple[Any, bool] | Answer:
        """(case, hidden) if this person may read the study now, else the refusal."""
        ports, principal = req.ports, req.principal
        if not self.policy.from_suite(req.ip):
            ports.audit.append(_denied(principal, study_uid, "outside the suite's networks",
                                       ports.source, req.ip))  # fmt: skip
            return refusal_answer(403, "the viewer answers only inside the training suite.",
                                  "Use a computer in the suite.")  # fmt: skip
        case = req.find_case(study_uid)
        if case is None:
            ports.audit.append(_denied(principal, study_uid, "no such study in the catalogue",
                                       ports.source, req.ip))  # fmt: skip
            # 403 as for an unreleased study: no answer tells what the archive holds.
            return refusal_answer(403, "this study is not released for viewing.",
                                  "Open released cases from the catalogue.")  # fmt: skip
        resource = Resource(kind="case", id=case.case_id, state=case.status)
        key = (principal.user, hashlib.sha256(req.session.encode()).hexdigest(), study_uid)
        if self._recently_audited(key):
            verdict = authorise(ports.actions, principal, "viewer.open", resource)
            if verdict:
                return case, bool(hidden_cases(ports.db, ports.actions, principal, [case.case_id]))
        TeachStore(ports.db)  # migrated before perform's transaction
        outcome = perform(
            ports, principal, "viewer.open", resource,
            lambda tx, permit: Opened(
                case.case_id, bool(hidden_cases(tx, ports.actions, principal, [case.case_id]))),
            target=case.case_id, detail={"ip": req.ip},
        )  # fmt: skip
        if isinstance(outcome, Refusal):
            with self._lock:
                self._audited.pop(key, None)
            return refusal_answer(403, f"{outcome.reason}.", outcome.next)
        self._note_audited(key)
        return case, outcome.hidden

    # -- dispatch -----------------------------------------------------------------------
    def handle(self, req: Request) -> Answer:
        for name, pattern in ROUTES:
            match = pattern.match(req.path)
            if match:
                return getattr(self, name)(req, *match.groups())
        return refusal_answer(404, "no such DICOMweb route here.", NO_FILES)

    def _study(self, req: Request, study_uid: str):
        opened = self.open_study(req, study_uid)
        if isinstance(opened, Answer):
            return opened
        case, hidden = opened
        entries = [e for e in req.ledger.study_files(case.orthanc_study_id)
                   if e.study_uid == study_uid]  # fmt: skip
        if not entries:
            return refusal_answer(404, "this study's images are no longer stored.",
                                  "Ask personnel.")  # fmt: skip
        return case, hidden, entries

    def _header(self, req: Request, entry, hidden: bool, series_numbers: dict[str, int]) -> dict:
        key = (entry.uuid, hidden)
        with self._lock:
            cached = self._meta.get(key)
            if cached is not None:
                self._meta.move_to_end(key)
                return cached
        ds = dicomjson.read_header(req.read(entry))
        if hidden:
            dicomjson.redact(ds, self.policy, series_numbers.get(entry.series_uid))
        doc = dicomjson.to_json(ds)
        with self._lock:
            self._meta[key] = doc
            while len(self._meta) > self._cache_size:
                self._meta.popitem(last=False)
        return doc

    @staticmethod
    def _series_numbers(entries) -> dict[str, int]:
        numbers: dict[str, int] = {}
        for e in entries:
            numbers.setdefault(e.series_uid, len(numbers) + 1)
        return numbers

    @staticmethod
    def _json(items: list[dict]) -> Answer:
        return Answer(200, json.dumps(items, separators=(",", ":")).encode())

    def _pick(self, doc: dict, tags: tuple[int, ...]) -> dict:
        wanted = {f"{t:08X}" for t in tags}
        return {k: v for k, v in doc.items() if k in wanted}

    # -- QIDO-RS ------------------------------------------------------------------------
    def qido_studies(self, req: Request) -> Answer:
        uid = (req.query.get("StudyInstanceUID") or req.query.get("0020000D") or "").strip()
        if uid:
            found = self._study(req, uid)
            return found if isinstance(found, Answer) else self._json([self._study_doc(req, found)])
        # No study list (cases are found in the catalogue): a search without a study UID
        # (the viewer's study browser, by PatientID) lists only the studies this session
        # has opened, each checked again.
        patient = (req.query.get("PatientID") or req.query.get("00100020") or "").strip()
        docs = []
        for study_uid in self._opened_in(req):
            found = self._study(req, study_uid)
            if isinstance(found, Answer):
                continue
            doc = self._study_doc(req, found)
            pid = (doc.get("00100020", {}).get("Value") or [""])[0]
            if not patient or pid == patient:
                docs.append(doc)
        return self._json(docs)

    def _opened_in(self, req: Request) -> list[str]:
        session = hashlib.sha256(req.session.encode()).hexdigest()
        now = self.clock()
        with self._lock:
            return [
                study for (user, sess, study), at in self._audited.items()
                if user == req.principal.user and sess == session
                and now - at < self.policy.audit_window_seconds
            ]  # fmt: skip

    def _study_doc(self, req: Request, found) -> dict:
        _case, hidden, entries = found
        numbers = self._series_numbers(entries)
        first = self._header(req, entries[0], hidden, numbers)
        doc = self._pick(first, dicomjson.STUDY_TAGS)
        modalities = sorted({e.modality for e in entries if e.modality})
        doc.update(dicomjson.value(0x00080061, "CS", *modalities))
        doc.update(dicomjson.value(0x00201206, "IS", len(numbers)))
        doc.update(dicomjson.value(0x00201208, "IS", len(entries)))
        return doc

    def qido_series(self, req: Request, study_uid: str) -> Answer:
        found = self._study(req, study_uid)
        if isinstance(found, Answer):
            return found
        _case, hidden, entries = found
        numbers = self._series_numbers(entries)
        out, seen = [], set()
        for e in entries:
            if e.series_uid in seen:
                continue
            seen.add(e.series_uid)
            doc = self._pick(self._header(req, e, hidden, numbers), dicomjson.SERIES_TAGS)
            count = sum(1 for x in entries if x.series_uid == e.series_uid)
            doc.update(dicomjson.value(0x00201209, "IS", count))
            out.append(doc)
        return self._json(out)

    def qido_instances(self, req: Request, study_uid: str, series_uid: str | None = None):
        found = self._study(req, study_uid)
        if isinstance(found, Answer):
            return found
        _case, hidden, entries = found
        numbers = self._series_numbers(entries)
        chosen = [e for e in entries if series_uid is None or e.series_uid == series_uid]
        return self._json([
            self._pick(self._header(req, e, hidden, numbers), dicomjson.INSTANCE_TAGS)
            for e in chosen
        ])  # fmt: skip

    def qido_study_instances(self, req: Request, study_uid: str) -> Answer:
        return self.qido_instances(req, study_uid, None)

    # -- WADO-RS metadata -------------------------------------------------------------------
    def _metadata(self, req: Request, study_uid: str, series_uid=None, sop_uid=None) -> Answer:
        found = self._study(req, study_uid)
        if isinstance(found, Answer):
            return found
        _case, hidden, entries = found
        numbers = self._series_numbers(entries)
        chosen = [
            e for e in entries
            if (series_uid is None or e.series_uid == series_uid)
            and (sop_uid is None or e.sop_uid == sop_uid)
        ]  # fmt: skip
        if not chosen:
            return refusal_answer(404, "no such series or instance in this study.",
                                  "Reload the viewer.")  # fmt: skip
        # The answer itself is kept too (a 200-slice series is ~1 MB of JSON), keyed by
        # exactly the stored files it was made of and whether it was redacted.
        key = (hidden, tuple(e.uuid for e in chosen))
        with self._lock:
            body = self._answers.get(key)
            if body is not None:
                self._answers.move_to_end(key)
        if body is None:
            body = self._json([self._header(req, e, hidden, numbers) for e in chosen]).body
            with self._lock:
                self._answers[key] = body
                while len(self._answers) > 32:
                    self._answers.popitem(last=False)
        return Answer(200, body)

    def study_metadata(self, req: Request, study_uid: str) -> Answer:
        return self._metadata(req, study_uid)

    def series_metadata(self, req: Request, study_uid: str, series_uid: str) -> Answer:
        return self._metadata(req, study_uid, series_uid)

    def instance_metadata(self, req: Request, study_uid: str, series_uid: str, sop: str):
        return self._metadata(req, study_uid, series_uid, sop)

    # -- WADO-RS frames -----------------------------------------------------------------
    def frames(self, req: Request, study_uid: str, series_uid: str, sop_uid: str, numbers: str):
        found = self._study(req, study_uid)
        if isinstance(found, Answer):
            return found
        _case, _hidden, entries = found
        entry = next((e for e in entries
                      if e.series_uid == series_uid and e.sop_uid == sop_uid), None)  # fmt: skip
        if entry is None:
            return refusal_answer(404, "no such instance in this study.", "Reload the viewer.")
        try:
            wanted = [int(n) for n in numbers.split(",") if n]
            parts, media_type, syntax = frames_of(req.read(entry), wanted)
        except (FrameError, ValueError) as exc:
            return refusal_answer(404, str(exc), "Ask for frames the instance has.")
        body, content_type = multipart(parts, media_type, syntax)
        return Answer(200, body, content_type)


def _denied(principal, study_uid: str, reason: str, source: str, ip: str):
    from archive.audit import AuditEvent

    return AuditEvent(
        action="viewer.open",
        outcome="denied",
        actor=principal.user if principal else "anonymous",
        roles=tuple(principal.roles) if principal else (),
        source=source,
        target=None,
        detail={
            "reason": reason,
            "study": "sha256:" + hashlib.sha256(study_uid.encode()).hexdigest()[:16],
            "ip": ip,
        },
    )
