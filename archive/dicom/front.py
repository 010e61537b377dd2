"""The archive's DICOM front: the only DICOM entry of the archive, in its own process.

WHY: Orthanc 1.10.1's own C-MOVE SCP sends to any entry of DicomModalities whatever the
plugin decides, DCMTK segfaults on deeply nested sequences before any plugin callback
runs, and refused or allowed C-FIND/C-MOVE/C-ECHO leave no hook to audit. So Orthanc's
DICOM server is off (ops/orthanc.template.json) and this pynetdicom SCP, started by
`archive serve` as a child (`python -m archive.dicom.front`), answers DICOM itself:

- association: only a registered AE title calling from its registered host (and the
  archive's own called AE title); refusals audited. Limits from policies/access/dicom.toml.
- C-ECHO: audited.
- C-STORE: registered sources only; the encoded bytes are scanned (archive/dicom/guard.py)
  before anything parses them; what passes is POSTed to Orthanc over loopback
  (archive/dicom/forward.py) and Orthanc's answer becomes the DIMSE status. Malformed
  data gets a failure status with an ErrorComment, never a timeout. Every outcome audited.
- C-FIND (patient, study, series, image levels; patient and study root): registered
  workstations only, released (available) cases only, from the catalogue and the
  instance ledger, each case shown by its case ID and title (archive/dicom/casefields.py,
  ops/OSIRIX.md); one audit record per request.
- C-MOVE / C-GET: pulls. Destination by archive/dicom/policy.py (the requesting
  workstation, or another registered workstation if the policy says so; never a source
  or a recipient), released cases only, each case authorised by archive/core
  (`pull.create`) for the person signed in at the workstation (archive/dicom/sessions.py)
  or for the workstation on its own if the policy allows; read from the vault with the
  case ID and title set in the sent headers; one audit record per retrieve with its
  outcome and who it was for, and recorded in the pull inventory closure reads.

Nothing from a dataset is logged or audited (no UIDs of what was received, no values):
records name the AE, its address, the act, the outcome and case ids.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from archive.access.decide import Decision
from archive.access.dicom import dicom_decision
from archive.access.events import _safe, dicom_event
from archive.audit import AuditEvent
from archive.dicom import forward
from archive.dicom.casefields import accession_number, case_fields, lo, patch_dataset
from archive.dicom.guard import MalformedDataset, scan
from archive.dicom.policy import (
    FrontPolicy,
    association_decision,
    load_front_policy,
    retrieve_decision,
)
from archive.dicom.send import disable_direct, enable_direct

PENDING = 0xFF00
CANCELLED = 0xFE00
NOT_AUTHORISED = 0xC001  # "unable to process" family, with an ErrorComment saying why
NO_MATCH = 0xC002
BAD_IDENTIFIER = 0xA900  # identifier does not match SOP class
SUBOPS_FAILED = 0xA702
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
REFUSED_PERSON = "refused:principal"  # a Decision.rule: the person (or workstation) may not

log = logging.getLogger("archive.dicom.front")


@dataclass(frozen=True)
class Attribution:
    """Who a retrieve is for: "session" (a person signed in at the workstation),
    "unattended" (the workstation on its own, as the policy allows) or "refused"."""

    mode: str
    principal: Any  # archive.access.Principal, None when refused
    session: int | None = None  # the session id (or the lapsed one)

    def audit(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"attributed": self.mode}
        if self.principal is not None:
            detail["pull_user"] = self.principal.user
        if self.session is not None:
            detail["session" if self.mode == "session" else "lapsed_session"] = self.session
        return detail


@dataclass
class Peer:
    aet: str
    host: str
    node: Any  # archive.access.nodes.DicomNode


def _comment(text: str) -> str:
    """An ErrorComment (LO: at most 64 characters, no backslash)."""
    return text.replace("\\", "/")[:64]


def _status(code: int, comment: str = "") -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = _comment(comment)
    return ds


class Front:
    """The SCP's decisions and acts, over one opened runtime (testable without sockets)."""

    def __init__(self, runtime, policy: FrontPolicy, forwarder, now=None) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.policy = policy
        self.forwarder = forwarder
        self.now = now or (lambda: datetime.now(UTC))
        self._store = None
        self._access = None
        self._nodes: tuple[int | None, list] = (None, [])
        self._lock = threading.Lock()

    # -- services ------------------------------------------------------------------
    def nodes(self) -> list:
        """The registered DICOM nodes, re-read when the access tables change (one store
        built once: building one hashes a dummy password, ~0.3 s)."""
        with self._lock:
            if self._access is None:
                from archive.access import open_access_store
                from archive.access.watch import ChangeWatch

                self._access = open_access_store(self.config, self.config.policies_dir)
                self._access.watch_changes(ChangeWatch(self.config))
            access = self._access
            generation = access.watch.generation if access.watch is not None else None
            if generation is not None and self._nodes[0] == generation:
                return self._nodes[1]
        nodes = access.bind(self.runtime.db()).list_dicom_nodes()
        with self._lock:
            self._nodes = (generation, nodes)
        return nodes

    def workstations(self) -> set[str]:
        from archive.access.nodes import workstations

        return set(workstations(self.runtime.db()).all())

    def catalogue(self):
        from archive.catalogue import Catalogue, load_vocabulary

        with self._lock:
            if not hasattr(self, "_vocabulary"):
                self._vocabulary = load_vocabulary(self.config.policies_dir)
        return Catalogue(self.runtime.db(), self.config.school_prefix, vocabulary=self._vocabulary)

    def vault(self):
        from archive.vault.dbstore import storage_for

        with self._lock:
            if self._store is None:
                self._store = storage_for(
                    self.config, self.runtime.keyring, connection=self.runtime.db
                )
        return self._store

    def record(self, event: AuditEvent) -> None:
        self.runtime.record(event)

    def act(
        self, kind: str, peer: Peer, outcome: str, reason: str, who: Attribution | None = None,
        **detail: Any,
    ) -> None:  # fmt: skip
        """One access.dicom record (same shape as dicom_event, plus what the act did).
        A retrieve made for a person signed in at the workstation names them as actor."""
        # a 10-digit figure (a byte count, an offset) reads like an NHS number to the
        # audit guard, which would refuse the whole record: such runs are shortened
        body: dict[str, Any] = {"kind": kind, "reason": _LONG_NUMBER.sub("(n)", reason)}
        actor, roles = peer.aet.strip() or "unknown-ae", ()
        if who is not None:
            body.update(who.audit())
            if who.principal is not None and who.mode == "session":
                actor, roles = who.principal.user, tuple(who.principal.roles)
        body.update({k: v for k, v in detail.items() if v is not None})
        source = f"{peer.aet.strip()}@{peer.host}"
        event = AuditEvent("access.dicom", outcome, actor, roles, source, detail=body)
        self.record(_safe(event))

    # -- association -----------------------------------------------------------------
    def admit(self, aet: str, host: str, called: str) -> Peer | None:
        nodes = self.nodes()
        decision = association_decision(nodes, aet, host)
        if decision.allowed and called.strip() != self.config.dicom.aet:
            decision = Decision(False, "called AE title is not the archive's (association)")
        if not decision.allowed:
            self.record(dicom_event("associate", aet, host, decision, self.policy.version))
            return None
        node = next(n for n in nodes if f"node:{n.name}" == decision.rule)
        return Peer(aet.strip(), host, node)

    # -- C-STORE -------------------------------------------------------------------
    def store(self, peer: Peer, data: bytes, syntax: str, sop_class: str, sop_uid: str) -> Any:
        decision = dicom_decision(self.nodes(), "store", peer.aet, peer.host)
        if not decision.allowed:
            self.record(dicom_event("store", peer.aet, peer.host, decision, self.policy.version))
            return _status(forward.REFUSED_NOT_AUTHORIZED, "not a registered source")
        try:
            scan(data, syntax, self.policy.scan)
        except MalformedDataset as exc:
            self.act(
                "store",
                peer,
                "failure",
                f"malformed dataset: {exc}",
                rule=decision.rule,
                status=forward.CANNOT_UNDERSTAND,
            )
            return _status(forward.CANNOT_UNDERSTAND, f"refused: {exc}")
        if not sop_class or not sop_uid:
            self.act(
                "store",
                peer,
                "failure",
                "no affected SOP class or instance UID",
                status=forward.CANNOT_UNDERSTAND,
            )
            return _status(forward.CANNOT_UNDERSTAND, "refused: no SOP class or instance UID")
        result = self.forwarder.store(
            forward.part10(data, sop_class, sop_uid, syntax, peer.aet), peer.aet
        )
        outcome = "success" if result.status == forward.SUCCESS else "failure"
        reason = decision.reason if outcome == "success" else result.comment
        self.act(
            "store",
            peer,
            outcome,
            reason,
            rule=decision.rule,
            status=result.status,
            stored=result.comment,
        )
        return _status(result.status, "" if outcome == "success" else result.comment)

    # -- identifiers -------------------------------------------------------------------
    def identifier(self, request, syntax: str):
        """The request's identifier, scanned before pydicom decodes it."""
        from pynetdicom.dsutils import decode

        raw = request.Identifier.getvalue() if request.Identifier is not None else b""
        scan(raw, syntax, self.policy.scan)
        from pydicom.uid import UID

        uid = UID(syntax)
        return decode(BytesIO(raw), uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated)

    def released_cases(self, identifier) -> tuple[list, list[str]]:
        """(available cases matching the identifier's study keys, refused study UIDs).

        By StudyInstanceUID when given; else by case ID (PatientID or AccessionNumber,
        without wildcards) when given; else every released case (the caller matches the
        other keys)."""
        from archive.catalogue.model import SearchFilters

        catalogue = self.catalogue()
        uids = _values(identifier, "StudyInstanceUID")
        if uids:
            cases, refused = [], []
            for uid in uids:
                case = catalogue.case_for_study(uid)
                if case is None or case.status != "available":
                    refused.append(uid)
                else:
                    cases.append(case)
            return cases, refused
        ids = _values(identifier, "PatientID")
        if ids and not any(_wild(v) for v in ids):
            return self._cases_by_id(catalogue, ids)
        cases, page = [], 1
        while True:
            found = catalogue.search("", SearchFilters.of(status="available"), page, 200, "added")
            cases.extend(found.items)
            if page * 200 >= found.total or not found.items:
                break
            page += 1
        return cases, []

    @staticmethod
    def _cases_by_id(catalogue, ids: list[str]) -> tuple[list, list[str]]:
        from archive.errors import ArchiveError

        cases, refused = [], []
        for case_id in ids:
            try:
                case = catalogue.get(case_id.upper())
            except ArchiveError:
                case = None
            if case is None or case.status != "available":
                refused.append(case_id)
            else:
                cases.append(case)
        return cases, refused

    def entries(self, case, identifier, level: str) -> list:
        from archive.vault.ledger import InstanceLedger

        entries = InstanceLedger(self.runtime.db()).study_files(case.orthanc_study_id)
        if level in ("SERIES", "IMAGE"):
            series = set(_values(identifier, "SeriesInstanceUID"))
            entries = [e for e in entries if not series or e.series_uid in series]
        if level == "IMAGE":
            sops = set(_values(identifier, "SOPInstanceUID"))
            entries = [e for e in entries if not sops or e.sop_uid in sops]
        return entries

    def read(self, entry, case=None):
        """The stored dataset; for a retrieve (`case` given) with the case ID and title
        in the keys a viewer lists (archive/dicom/casefields.py)."""
        from pydicom import dcmread

        from archive.vault.ledger import read_dicom

        ds = dcmread(BytesIO(read_dicom(self.vault(), entry)))
        return ds if case is None else patch_dataset(ds, case)

    def instance(self, entry, case, assoc):
        """What a retrieve sends for `entry`: its stored bytes with the case ID and title
        set in the header (archive/dicom/send.py prepared_dataset), sent as they are when
        the receiver accepted the stored syntax, else decoded (and decompressed if
        needed) by pynetdicom; big endian and deflated files always take that way."""
        from pydicom import dcmread

        from archive.dicom.send import prepared_dataset, prepared_instance
        from archive.vault.ledger import read_dicom

        data = read_dicom(self.vault(), entry)

        def full(sender):
            return fit_syntax(patch_dataset(dcmread(BytesIO(data)), case), entry, sender)

        prepared = prepared_dataset(data, case_fields(case))
        if prepared is None:
            return full(assoc)
        syntax, body = prepared
        return prepared_instance(entry.sop_class_uid, entry.sop_uid, syntax, body, full)

    def prefetched(self, pairs: list, results: dict, ahead: int = 2) -> Iterator[tuple]:
        """((case, entry), future of what to send) in order, the next `ahead` instances
        read and decrypted by a helper thread while pynetdicom sends the current one
        (file reads and AES-GCM release the GIL; bench_retrieve)."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieve-read")
        queued: deque = deque()
        remaining = iter(pairs)

        def submit() -> None:
            pair = next(remaining, None)
            if pair is not None:
                case, entry = pair
                queued.append((pair, pool.submit(self.instance, entry, case, results["assoc"])))

        try:
            for _ in range(ahead):
                submit()
            while queued:
                item = queued.popleft()
                submit()
                yield item
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- who a retrieve is for --------------------------------------------------------
    def attribution(self, peer: Peer) -> Attribution:
        """The person signed in at this workstation, or the workstation on its own if the
        policy lets it retrieve unattended, or a refusal."""
        from archive.access.principal import Principal
        from archive.dicom.sessions import SessionTable, session_principal

        now = self.now()
        name = peer.node.name
        session = SessionTable(self.runtime.db()).active(name, now)
        lapsed = None
        if session is not None:
            principal = session_principal(self.access(), session, now)
            if principal is not None:
                return Attribution("session", principal, session.id)
            lapsed = session.id  # the account changed or training lapsed since sign-in
        if not self.policy.unattended_retrieve:
            return Attribution("refused", None, lapsed)
        robot = Principal(
            f"workstation:{name}", (self.policy.unattended_role,), True, method="dicom"
        )
        return Attribution("unattended", robot, lapsed)

    def access(self):
        self.nodes()  # builds the access store once
        return self._access.bind(self.runtime.db())

    # -- C-FIND --------------------------------------------------------------------------
    def find(self, peer: Peer, request, syntax: str, is_cancelled) -> Iterator[tuple]:
        decision = dicom_decision(self.nodes(), "find", peer.aet, peer.host)
        if not decision.allowed:
            self.record(dicom_event("find", peer.aet, peer.host, decision, self.policy.version))
            yield _status(NOT_AUTHORISED, "not a registered workstation"), None
            return
        try:
            identifier = self.identifier(request, syntax)
            level = str(identifier.get("QueryRetrieveLevel", "")).upper()
            if level not in LEVELS:
                raise MalformedDataset(f"unknown query level {level[:16]!r}")
            matches = self._matches(identifier, level)
        except MalformedDataset as exc:
            self.act("find", peer, "failure", f"bad identifier: {exc}", rule=decision.rule)
            yield _status(BAD_IDENTIFIER, f"bad identifier: {exc}"), None
            return
        except Exception as exc:  # noqa: BLE001 - answer a status, never a traceback
            self.act("find", peer, "failure", f"internal error: {type(exc).__name__}")
            yield _status(0xC000, "the archive could not answer; try again"), None
            return
        self.act(
            "find",
            peer,
            "success",
            decision.reason,
            rule=decision.rule,
            level=level,
            matches=len(matches),
        )
        for answer in matches:
            if is_cancelled():
                yield CANCELLED, None
                return
            yield PENDING, answer

    def _matches(self, identifier, level: str) -> list:
        """The answers at this level: each released case is one patient and one study,
        shown by its case ID and title (archive/dicom/casefields.py), never by the
        stored pseudonym."""
        from pydicom.dataset import Dataset

        cases, _ = self.released_cases(identifier)
        out = []
        for case in cases:
            shown = case_fields(case)
            patient = {
                "PatientID": shown["PatientID"],
                "PatientName": shown["PatientName"],
                "NumberOfPatientRelatedStudies": "1",
                "NumberOfPatientRelatedSeries": str(case.series_count),
                "NumberOfPatientRelatedInstances": str(case.instance_count),
            }
            if level == "PATIENT":
                if _match(identifier, patient):
                    out.append(_answer(identifier, level, patient))
                continue
            study = {
                **patient,
                "StudyInstanceUID": case.study_uid,
                "AccessionNumber": shown["AccessionNumber"],
                "StudyDescription": shown["StudyDescription"],
                "StudyID": accession_number(case.case_id),
                "ModalitiesInStudy": "\\".join(case.modalities),
                "BodyPartExamined": case.body_part,
                "NumberOfStudyRelatedSeries": str(case.series_count),
                "NumberOfStudyRelatedInstances": str(case.instance_count),
            }
            if not _match(identifier, study, skip=("ModalitiesInStudy",)):
                continue
            wanted = _values(identifier, "ModalitiesInStudy")
            if wanted and not _any_match(wanted, case.modalities):
                continue
            if level == "STUDY":
                out.append(_answer(identifier, level, study))
                continue
            for number, series in enumerate(case.series, start=1):
                facts = {
                    **study,
                    "SeriesInstanceUID": series.series_uid,
                    "Modality": series.modality,
                    "SeriesDescription": lo(series.description),
                    "SeriesNumber": str(number),
                    "NumberOfSeriesRelatedInstances": str(series.instance_count),
                }
                if not _match(identifier, facts, skip=_STUDY_ONLY):
                    continue
                if level == "SERIES":
                    out.append(_answer(identifier, level, facts))
                    continue
                for entry in self.entries(case, _only(Dataset(), series.series_uid), "SERIES"):
                    image = {
                        **facts,
                        "SOPInstanceUID": entry.sop_uid,
                        "SOPClassUID": entry.sop_class_uid,
                        "InstanceNumber": str(entry.instance_number or ""),
                    }
                    if _match(identifier, image, skip=_STUDY_ONLY):
                        out.append(_answer(identifier, level, image))
        return out

    # -- C-MOVE / C-GET ------------------------------------------------------------------
    def plan_retrieve(self, kind: str, peer: Peer, request, syntax: str, destination: str):
        """(decision, destination node or None, [(case, entries)], attribution) of a pull.

        A pull like `archive pull`: the destination by the front's policy, released
        cases only, and every case authorised by archive/core (`pull.create`) for the
        person signed in at the workstation, or for the workstation on its own."""
        from archive.core import Resource, authorise, load_action_policy

        nodes = self.nodes()
        decision = dicom_decision(nodes, kind, peer.aet, peer.host)
        if not decision.allowed:
            return decision, None, [], None
        decision, dest = retrieve_decision(
            self.policy,
            nodes,
            peer.node,
            destination if kind == "move" else peer.aet,
            self.workstations(),
        )
        if not decision.allowed:
            return decision, None, [], None
        identifier = self.identifier(request, syntax)
        level = str(identifier.get("QueryRetrieveLevel", "")).upper()
        by_study = level in ("STUDY", "SERIES", "IMAGE") and _values(identifier, "StudyInstanceUID")
        by_case = level == "PATIENT" and _values(identifier, "PatientID")
        if not (by_study or by_case) or (by_case and any(map(_wild, by_case))):
            why = "retrieve by StudyInstanceUID (study, series or image) or by case ID (patient)"
            return Decision(False, why), None, [], None
        who = self.attribution(peer)
        if who.principal is None:
            why = "nobody is signed in at this workstation; sign in for it first"
            return Decision(False, why, REFUSED_PERSON), dest, [], who
        cases, refused = self.released_cases(identifier)
        if refused:
            return Decision(False, "study is not a released (available) case"), dest, [], who
        actions = load_action_policy(self.config.policies_dir)
        for case in cases:
            verdict = authorise(
                actions, who.principal, "pull.create", Resource("case", case.case_id, case.status)
            )
            if not verdict:
                return Decision(False, verdict.reason, REFUSED_PERSON), dest, [], who
        planned = [(case, self.entries(case, identifier, level)) for case in cases]
        planned = [(case, entries) for case, entries in planned if entries]
        if not planned:
            return Decision(False, "no stored instance matches"), dest, [], who
        return decision, dest, planned, who

    def record_pulls(self, dest, planned, delivered: set[str], who: Attribution) -> list[int]:
        """The pull inventory, through the pulls room's one function (the seam to
        re-point when the pulls room becomes use cases): one pull per case of which at
        least one instance was delivered, under the person or `workstation:<name>`."""
        from archive.governance import PullInventory

        inventory = PullInventory(self.runtime.db())
        user = who.principal.user if who.principal is not None else f"workstation:{dest.name}"
        ids = []
        for case, entries in planned:
            if any(e.sop_uid in delivered for e in entries):
                ids.append(inventory.record_pull(case.case_id, dest.name, user, self.now()))
        return ids

    def retrieve(self, kind: str, peer: Peer, event, syntax: str) -> Iterator:
        """The C-MOVE / C-GET handler's generator (pynetdicom's protocol): for a move,
        the destination first; then the number of sub-operations; then datasets."""
        destination = _text(event.move_destination) if kind == "move" else ""
        try:
            decision, dest, planned, who = self.plan_retrieve(
                kind, peer, event.request, syntax, destination
            )
        except Exception as exc:  # noqa: BLE001 - audited, answered with a failure status
            why = (
                f"bad identifier: {exc}"
                if isinstance(exc, MalformedDataset)
                else f"internal error: {type(exc).__name__}"
            )
            self.act(kind, peer, "failure", why, destination=destination or None)
            if kind == "move":
                yield None, None  # a failure status (0xA801) before anything is sent
            else:
                yield 1
                yield _status(BAD_IDENTIFIER, why), None
            return
        cases = ",".join(c.case_id for c, _ in planned)[:200] or None
        if not decision.allowed:
            self.act(kind, peer, "denied", decision.reason, who, destination=destination or None)
            if kind == "move" and dest is None:
                yield None, None  # pynetdicom answers 0xA801: destination unknown
                return
            if kind == "get" and dest is None:  # not authorised: a failure status
                yield 1
                yield _status(NOT_AUTHORISED, decision.reason), None
                return
            if decision.rule == REFUSED_PERSON:  # who it is for may not: a failure status
                if kind == "move":  # pynetdicom opens the sub-association before statuses
                    yield dest.host, dest.port, {"contexts": _verification()}
                yield 1
                yield _status(NOT_AUTHORISED, decision.reason), None
                return
            if kind == "move":
                yield dest.host, dest.port
            yield 0  # no released case matches: zero sub-operations, nothing goes out
            return
        pairs = [(case, e) for case, items in planned for e in items]
        entries = [e for _, e in pairs]
        results = {"sent": 0, "failed": 0, "delivered": set(), "current": None, "assoc": None}
        finished = False
        try:
            # the requesting association's responses (one pending per image) are
            # written by this thread (archive/dicom/send.py direct mode)
            _quick(event.assoc)
            if kind == "move":
                yield (
                    dest.host,
                    dest.port,
                    {"contexts": _contexts(entries), "evt_handlers": _counter(results)},
                )
            else:
                event.assoc._archive_results = results  # noqa: SLF001 - see on_dimse_recv
                results["assoc"] = event.assoc
            yield len(entries)
            for (_case, entry), ready in self.prefetched(pairs, results):
                if event.is_cancelled:
                    yield CANCELLED, None
                    return
                results["current"] = entry.sop_uid
                try:
                    ds = ready.result()
                except Exception as exc:  # noqa: BLE001 - one failed sub-operation
                    log.error("cannot read a stored instance: %s", type(exc).__name__)
                    results["failed"] += 1
                    yield SUBOPS_FAILED, None
                    return
                yield PENDING, ds
            finished = True
        finally:
            _slow(event.assoc)
            sent, failed = (
                results["sent"],
                results["failed"] + (len(entries) - results["sent"] - results["failed"]),
            )
            pulls = self.record_pulls(dest, planned, results["delivered"], who)
            outcome = "success" if finished and not failed else "failure"
            self.act(
                kind,
                peer,
                outcome,
                decision.reason if outcome == "success" else "not every instance was delivered",
                who,
                rule=decision.rule,
                destination=dest.aet,
                cases=cases,
                sent=sent,
                failed=failed,
                pulls=",".join(map(str, pulls)) or None,
            )


def _counter(results: dict) -> list:
    """evt_handlers for the C-MOVE sub-association: count C-STORE responses, and keep
    the association (to see which transfer syntaxes the destination accepted)."""
    from pynetdicom import evt

    return [
        (evt.EVT_DIMSE_RECV, lambda event: _count(event, results)),
        (evt.EVT_ACCEPTED, lambda event: _hold(event.assoc, results)),
    ]


def _hold(assoc, results: dict) -> None:
    """The C-MOVE sub-association: kept for its accepted syntaxes, and its reactor kept
    paused between C-STOREs (archive/dicom/send.py install_prepared_store)."""
    assoc._archive_hold_pause = True  # noqa: SLF001
    _quick(assoc)
    results["assoc"] = assoc


RETRIEVE_POLL = 0.005  # seconds; pynetdicom's DUL polls its socket every 1 ms when idle
IDLE_POLL = 0.001


def _nodelay(assoc) -> None:
    """TCP_NODELAY on a retrieving association's socket: without it, Nagle's algorithm
    and the receiver's delayed ACK stall each C-STORE's last segment by up to 40 ms
    (29 instances/s on a quiet machine, against Orthanc's 600)."""
    import socket

    try:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):  # not a TCP socket: nothing to tune
        pass


def _quick(assoc) -> None:
    """A retrieving association: TCP_NODELAY, and direct mode (archive/dicom/send.py:
    the retrieving thread writes each C-STORE and response and reads each answer
    itself). Its DUL thread then only watches for what else the peer sends (a C-CANCEL,
    a release, an abort) and looks every 5 ms instead of every 1 ms: each look takes
    Python's lock from the thread that sends (at 0.2 ms they cost ~1 ms of CPU per
    image, py-spy, bench_retrieve). `_slow` puts it back when the retrieve ends."""
    _nodelay(assoc)
    enable_direct(assoc)
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = RETRIEVE_POLL  # noqa: SLF001


def _slow(assoc) -> None:
    """The requesting association after its retrieve: pynetdicom's own path again."""
    disable_direct(assoc)
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = IDLE_POLL  # noqa: SLF001


def fit_syntax(ds, entry, assoc):
    """Send the stored transfer syntax when the receiver accepted it; a compressed dataset
    whose syntax the receiver refused is decompressed (to Explicit VR Little Endian) when
    it accepted an uncompressed one. pynetdicom converts between the uncompressed
    syntaxes itself."""
    if assoc is None:
        return ds
    stored = str(entry.transfer_syntax)
    accepted = {
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if str(cx.abstract_syntax) == str(entry.sop_class_uid)
    }
    if not accepted or stored in accepted or stored in NATIVE:
        return ds
    if accepted & set(NATIVE):
        ds.decompress()  # pylibjpeg / openjpeg / pillow; raises if it cannot
    return ds


def _count(event, results: dict) -> None:
    message = event.message
    if type(message).__name__ != "C_STORE_RSP":
        return
    status = int(getattr(message.command_set, "Status", 0xC000))
    if status in (0x0000, 0xB000, 0xB007, 0xB006):
        results["sent"] += 1
        if results.get("current"):
            results["delivered"].add(results["current"])
    else:
        results["failed"] += 1


def _verification() -> list:
    """The one context of a sub-association that will carry nothing (a refused move)."""
    from pynetdicom import build_context

    return [build_context("1.2.840.10008.1.1")]


NATIVE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")


def _contexts(entries) -> list:
    """One context per stored (SOP class, syntax): the stored syntax first, then the
    uncompressed ones (a receiver without the codec gets decompressed pixels)."""
    from pynetdicom import build_context

    native = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    wanted: dict[tuple[str, str], None] = {}
    for entry in entries:
        wanted.setdefault((entry.sop_class_uid, entry.transfer_syntax), None)
    contexts = []
    for sop_class, syntax in list(wanted)[:128]:
        syntaxes = [syntax] + [s for s in native if s != syntax]
        contexts.append(build_context(sop_class, syntaxes))
    return contexts


def _values(identifier, keyword: str) -> list[str]:
    value = identifier.get(keyword)
    if value is None:
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        items = [str(v) for v in value]
    else:  # a str, bytes or a PersonName (which iterates over its components)
        items = str(value).split("\\")
    return [v.strip() for v in items if v and v.strip() and v.strip() != "*"]


def _only(ds, series_uid: str):
    ds.SeriesInstanceUID = series_uid
    return ds


# Keys matched once at study level (not again on each series and image).
_STUDY_ONLY = ("ModalitiesInStudy",)
# Text a person types into a viewer's query fields: matched without regard to case.
_FOLDED = frozenset(
    {"PatientID", "PatientName", "AccessionNumber", "StudyDescription", "SeriesDescription",
     "BodyPartExamined", "Modality", "StudyID"}
)  # fmt: skip
_UIDS = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"})


def _wild(value: str) -> bool:
    return "*" in value or "?" in value


def _one(value: str, wanted: str, fold: bool) -> bool:
    import fnmatch

    if fold:
        value, wanted = value.casefold(), wanted.casefold()
    return fnmatch.fnmatchcase(value, wanted) if _wild(wanted) else value == wanted


def _any_match(wanted: list[str], values: list[str]) -> bool:
    return any(_one(v, w, True) for w in wanted for v in values)


def _match(identifier, known: dict[str, str], skip: tuple[str, ...] = ()) -> bool:
    """Single value, list of UIDs, or * ? wildcards; an empty key matches everything.
    Text keys (names, descriptions, case IDs) match without regard to case; a PN value's
    trailing empty components (OsiriX sends "NSR*^" style names) are ignored."""
    for keyword, value in known.items():
        if keyword in skip or keyword not in identifier:
            continue
        wanted = _values(identifier, keyword)
        if keyword == "PatientName":
            wanted = [w.rstrip("^") or "*" for w in wanted]
        if not wanted:
            continue
        fold = keyword in _FOLDED and keyword not in _UIDS
        if not any(_one(value, w, fold) for w in wanted):
            return False
    return True


def _answer(identifier, level: str, known: dict[str, str]):
    """The requested keys, filled with what the archive knows (empty otherwise)."""
    from pydicom.dataset import Dataset

    out = Dataset()
    out.QueryRetrieveLevel = level
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        if keyword in known:
            setattr(out, keyword, known[keyword])
        elif element.VR != "SQ":
            out[element.tag] = type(element)(element.tag, element.VR, None)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword in known and keyword not in out:
            setattr(out, keyword, known[keyword])
    return out


# -- the pynetdicom server ------------------------------------------------------------------
_LONG_NUMBER = re.compile(r"\d{9,}")
ASSOCIATE_SLACK = 65536  # an A-ASSOCIATE-RQ may exceed the P-DATA maximum a little


def limit_received_sizes(front: Front) -> None:
    """Cut off a peer before pynetdicom buffers what it announces (this process only).

    pynetdicom reads every PDU whole, at the length its header announces, before any
    handler runs - an unregistered peer could announce 4 GiB in an A-ASSOCIATE-RQ - and
    assembles a DIMSE message from any number of PDUs. A PDU announced beyond the
    policy's maximum, or a message beyond max_message_bytes (counted in on_data_recv),
    makes the socket read fail, so pynetdicom closes the connection: the sender sees
    the association end, nothing is kept, and the refusal is audited."""
    from pynetdicom.transport import AssociationSocket

    original = getattr(AssociationSocket.recv, "__wrapped__", AssociationSocket.recv)
    limit = front.policy.max_pdu_bytes + ASSOCIATE_SLACK

    def recv(self, nr_bytes: int) -> bytearray:
        assoc = getattr(self, "_assoc", None)
        if nr_bytes > limit:
            _refuse_size(front, assoc, f"a PDU of {_mib(nr_bytes)} (over {_mib(limit)})")
        elif getattr(assoc, "_archive_too_big", False):
            _refuse_size(front, assoc, f"a message over {_mib(front.policy.max_message_bytes)}")
        return original(self, nr_bytes)

    recv.__wrapped__ = original  # type: ignore[attr-defined]
    AssociationSocket.recv = recv  # type: ignore[method-assign]


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


def _refuse_size(front: Front, assoc, what: str):
    if assoc is not None and not getattr(assoc, "_archive_size_audited", False):
        assoc._archive_size_audited = True  # noqa: SLF001
        peer = getattr(assoc, "_archive_peer", None)
        try:
            if peer is not None:
                front.act("store", peer, "failure", f"refused: {what}")
            else:  # before the association was admitted: who it claims to be is unknown
                host = getattr(getattr(assoc, "requestor", None), "address", "") or "unknown"
                front.act("associate", Peer("unknown-ae", host, None), "denied",
                          f"refused: {what}")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the refusal stands
            log.error("size refusal not audited: %s", type(exc).__name__)
    raise OSError(f"refused by the archive: {what}")


def _copy_contexts(value, memo=None):
    """pynetdicom deep-copies the server's supported contexts for every association: with
    every storage class times every transfer syntax that cost ~20 ms of CPU per
    association (py-spy, bench_retrieve: 14% of a retrieve's samples, re-validating each
    UID). Each association gets its own context objects and syntax lists (all it
    changes); the UIDs, immutable, are shared."""
    import copy

    from pynetdicom.presentation import PresentationContext

    if isinstance(value, list) and all(isinstance(cx, PresentationContext) for cx in value):
        copies = []
        for cx in value:
            new = copy.copy(cx)
            new._transfer_syntax = list(cx._transfer_syntax)  # noqa: SLF001
            copies.append(new)
        return copies
    return copy.deepcopy(value, memo)


def _tune_for_throughput() -> None:
    """This process only (the front): no per-association deep copy of the contexts, and
    no value validation by pydicom when it reads a stored file or writes one out (the
    stored files were written by the archive; validation only warned, at ~40% of the
    encoding time of a retrieve)."""
    from pydicom import config as pydicom_config
    from pynetdicom import transport

    from archive.dicom.send import install_direct_io, install_prepared_store

    transport.deepcopy = _copy_contexts  # type: ignore[attr-defined]
    install_prepared_store()
    install_direct_io()
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE


def build_ae(front: Front):
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, _config, evt
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelGet,
        PatientRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
        Verification,
    )

    _tune_for_throughput()
    # pynetdicom would decode (and log) identifiers before our handlers scan them.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.LOG_HANDLER_LEVEL = "none"
    policy = front.policy
    ae = AE(ae_title=front.config.dicom.aet)
    ae.maximum_associations = policy.max_associations
    ae.maximum_pdu_size = policy.max_pdu_bytes
    ae.acse_timeout = policy.acse_timeout
    ae.dimse_timeout = policy.dimse_timeout
    ae.network_timeout = policy.network_timeout
    ae.connection_timeout = policy.acse_timeout
    ae.add_supported_context(Verification)
    # The acceptor takes, of the syntaxes a peer proposes in one context, the first in
    # this list: Explicit VR Little Endian first (what stored uncompressed files are in,
    # so a C-GET sends them as stored), then Implicit, then every compressed syntax
    # (JPEG 2000, JPEG-LS, RLE, JPEG: a peer proposing one alone gets it accepted).
    preferred = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    syntaxes = preferred + [str(s) for s in ALL_TRANSFER_SYNTAXES if str(s) not in preferred]
    for context in StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, syntaxes, scu_role=True, scp_role=True)
    for model in (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelGet,
    ):
        ae.add_supported_context(model)

    def peer_of(event) -> Peer | None:
        return getattr(event.assoc, "_archive_peer", None)

    def syntax_of(event) -> str:
        return str(event.context.transfer_syntax)

    def on_requested(event) -> None:
        assoc = event.assoc
        aet = _text(assoc.requestor.primitive.calling_ae_title)
        called = _text(assoc.requestor.primitive.called_ae_title)
        try:
            peer = front.admit(aet, assoc.requestor.address, called)
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.error("association check failed: %s", type(exc).__name__)
            peer = None
        if peer is None:
            assoc.acse.send_reject(0x01, 0x01, 0x03 if called == front.config.dicom.aet else 0x07)
            # pynetdicom closes the socket as soon as this returns: let its DUL thread
            # send the A-ASSOCIATE-RJ first, so the peer reads a rejection, not an abort.
            for _ in range(100):
                if assoc.dul.to_provider_queue.empty():
                    break
                time.sleep(0.01)
            time.sleep(0.05)
            return
        assoc._archive_peer = peer  # noqa: SLF001

    def on_rejected(event) -> None:
        """pynetdicom's own rejections (too many associations, no acceptable context)."""
        assoc = event.assoc
        if getattr(assoc, "_archive_peer", None) is None or not assoc.is_acceptor:
            return
        peer = assoc._archive_peer  # noqa: SLF001
        reason = "association rejected: too many associations or nothing acceptable"
        try:
            front.act("associate", peer, "denied", reason)
        except Exception as exc:  # noqa: BLE001 - the rejection stands
            log.error("rejection not audited: %s", type(exc).__name__)

    def on_echo(event) -> int:
        peer = peer_of(event)
        if peer is None:
            return 0xC000
        front.act("echo", peer, "success", "registered node", rule=f"node:{peer.node.name}")
        return 0x0000

    def on_store(event):
        peer = peer_of(event)
        if peer is None:
            return _status(forward.REFUSED_NOT_AUTHORIZED, "association not admitted")
        request = event.request
        try:
            return front.store(
                peer,
                request.DataSet.getvalue() if request.DataSet is not None else b"",
                syntax_of(event),
                str(request.AffectedSOPClassUID or ""),
                str(request.AffectedSOPInstanceUID or ""),
            )
        except Exception as exc:  # noqa: BLE001 - a status, never a timeout
            log.error("C-STORE failed: %s", type(exc).__name__)
            try:
                front.act("store", peer, "failure", f"internal error: {type(exc).__name__}")
            except Exception:  # noqa: BLE001, S110
                pass
            return _status(forward.OUT_OF_RESOURCES, "the archive could not store it; resend")

    def on_find(event):
        peer = peer_of(event)
        if peer is None:
            yield _status(NOT_AUTHORISED, "association not admitted"), None
            return
        yield from front.find(peer, event.request, syntax_of(event), lambda: event.is_cancelled)

    def on_move(event):
        peer = peer_of(event)
        if peer is None:
            yield None, None
            return
        yield from front.retrieve("move", peer, event, syntax_of(event))

    def on_get(event):
        peer = peer_of(event)
        if peer is None:
            yield _status(NOT_AUTHORISED, "association not admitted"), None
            return
        yield from front.retrieve("get", peer, event, syntax_of(event))

    def on_data_recv(event) -> None:
        assoc = event.assoc
        size = getattr(assoc, "_archive_bytes", 0) + len(event.data)
        assoc._archive_bytes = size  # noqa: SLF001 - bytes of the message being received
        if size > policy.max_message_bytes:
            assoc._archive_too_big = True  # noqa: SLF001 - the next read fails

    def on_dimse_recv(event) -> None:
        event.assoc._archive_bytes = 0  # noqa: SLF001 - a whole message arrived
        results = getattr(event.assoc, "_archive_results", None)
        if results is not None:
            _count(event, results)

    handlers = [
        (evt.EVT_REQUESTED, on_requested),
        (evt.EVT_REJECTED, on_rejected),
        (evt.EVT_C_ECHO, on_echo),
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_C_FIND, on_find),
        (evt.EVT_C_MOVE, on_move),
        (evt.EVT_C_GET, on_get),
        (evt.EVT_DIMSE_RECV, on_dimse_recv),
        (evt.EVT_DATA_RECV, on_data_recv),
    ]
    return ae, handlers


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value or "").strip()


def main(argv: list[str] | None = None) -> int:
    """`python -m archive.dicom.front --home H --orthanc-url URL` (started by serve)."""
    from archive.config import load_config
    from archive.errors import ArchiveError
    from archive.runtime import Runtime

    parser = argparse.ArgumentParser(prog="archive-dicom-front")
    parser.add_argument("--home", required=True)
    parser.add_argument("--orthanc-url", required=True)
    parser.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="dicom-front: %(levelname)s %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # it may log identifiers
    secret = os.environ.pop(forward.FRONT_SECRET_ENV, "")
    try:
        if not secret:
            raise ArchiveError(
                f"{forward.FRONT_SECRET_ENV} is not set; start with `archive serve`."
            )
        config = load_config(args.home)
        policy = load_front_policy(config.policies_dir)
        runtime = Runtime.open(config, prompt=False)
    except ArchiveError as exc:
        print(f"dicom-front: refusing to start: {exc}", file=sys.stderr)
        return 2
    runtime.audit.enable_group_commit(0.05)
    forwarder = forward.OrthancForwarder(args.orthanc_url, secret)
    front = Front(runtime, policy, forwarder)
    ae, handlers = build_ae(front)
    limit_received_sizes(front)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = ae.start_server((args.bind, config.dicom.port), block=False, evt_handlers=handlers)
    except OSError as exc:
        print(f"dicom-front: cannot listen on port {config.dicom.port}: {exc}", file=sys.stderr)
        return 2
    # pynetdicom's server runs a full gc.collect() every 60 polls (~30 s), which walked
    # every object of this process (~0.1 s each, py-spy under bench_retrieve): what was
    # built to start is frozen out of the collector, and the sweep runs every 5 minutes.
    import gc

    gc.freeze()
    server._gc = [0, 600]  # noqa: SLF001
    runtime.record(
        AuditEvent(
            "system.dicom_front",
            "success",
            "system",
            detail={"port": config.dicom.port, "aet": config.dicom.aet},
        )
    )
    print(f"dicom-front: listening on {args.bind}:{config.dicom.port}", file=sys.stderr, flush=True)
    stop.wait()
    server.shutdown()
    forwarder.close()
    runtime.audit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
