"""The review to the point of publication (the RCR's third level; issue 24).

A named reviewer, never the case's uploader, looks at what the archive found (the
*review packet*: the OCR report of every series, the face result of every series that
was read for one, and the free-text screen of the case's teaching text) and attests to
rarity: that the case is not so rare that it identifies the patient. The case then
moves from "limited-access" to "publication" through `archive.core.perform` (action
``case.review_publication`` in policies/access/actions.toml): one transaction, one
audit record. Publication removals and shares to schools without a data-sharing
agreement then pass their level checks.

Refused, and the level left as it was, when:
- a check's result is missing: a series of a text-bearing modality with no OCR report,
  a thin CT/MR series with no face result (ingested before these checks existed);
- a series covers the face and the pixel policy says "refuse", or says "deface" and no
  reviewer has recorded the defaced copy (the facial-surface flag is still open);
- the free-text screen finds an identifier in the case's teaching text;
- the reviewer has not confirmed each check or gave no rarity attestation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archive.catalogue.catalogue import Catalogue
from archive.catalogue.model import Case
from archive.core import Ports, Refusal, Refused, Resource, perform
from archive.deid import freetext
from archive.errors import ArchiveError
from archive.ingest import flags as ingest_flags
from archive.pixels.policy import MaskingPolicy
from archive.quarantine.review import same_person

ACTION = "case.review_publication"
PUBLICATION = "publication"
LIMITED = "limited-access"

TEXT_FIELDS = (
    "title",
    "clinical_history",
    "findings",
    "diagnosis",
    "differential",
    "discussion",
    "teaching_points",
    "anatomy",
    "references",
    "study_description",
)


@dataclass(frozen=True)
class Attestation:
    """What the reviewer says they did; each must be true, and rarity must be written."""

    ocr_report_checked: bool
    face_result_checked: bool
    free_text_checked: bool
    rarity: str  # e.g. "common presentation; not identifying by rarity"


@dataclass
class ReviewPacket:
    """The checks' results for one case (no patient values; counts and kinds only)."""

    case_id: str
    level: str
    uploaders: list[str]
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    free_text: dict[str, list[str]] = field(default_factory=dict)  # field -> kinds found
    blockers: list[str] = field(default_factory=list)
    open_flags: list[str] = field(default_factory=list)  # ingest flags no one decided yet

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "level": self.level,
            "uploaders": self.uploaders,
            "series": self.series,
            "free_text": self.free_text,
            "blockers": self.blockers,
            "open_flags": self.open_flags,
        }


@dataclass(frozen=True)
class Reviewed:
    case_id: str
    level: str
    reviewer: str
    series: int

    def audit(self) -> dict[str, Any]:
        return {"case": self.case_id, "level": self.level, "series": self.series}


def _text_modalities(masking: MaskingPolicy) -> set[str]:
    return {*masking.candidates.modalities, *masking.ocr.extra_modalities}


def review_packet(conn: Any, case: Case, masking: MaskingPolicy) -> ReviewPacket:
    """Everything the reviewer must see, and what blocks publication."""
    packet = ReviewPacket(case.case_id, case.level, ingest_flags.uploaders(conn, case.study_uid))
    pixels = ingest_flags.pixel_report(conn, case.study_uid)
    faces = ingest_flags.face_report(conn, case.study_uid, masking.facial)
    open_flags = set(ingest_flags.flags_for_study(conn, case.study_uid))
    packet.open_flags = sorted(open_flags)
    text_modalities = _text_modalities(masking)
    for s in case.series or []:
        uid = s.series_uid
        entry: dict[str, Any] = {"modality": s.modality, "instances": s.instance_count}
        report = pixels.get(uid)
        entry["ocr"] = report
        entry["face"] = faces.get(uid)
        packet.series[uid] = entry
        mod = (s.modality or "").upper()
        if report is None:
            packet.blockers.append(
                f"series {uid}: no pixel report (ingested before the pixel checks); "
                "re-ingest it so OCR and the face check run"
            )
            continue
        if mod in text_modalities and not report.get("ocr_read"):
            packet.blockers.append(f"series {uid}: {mod} not read by OCR")
        if mod in masking.facial.modalities and uid not in faces:
            thin = report.get("instances", 0)
            if thin:
                entry["face"] = {"covered": False, "reason": "slices too thick to read"}
    if ingest_flags.FACE_SURFACE_FLAG in open_flags:
        if masking.facial.publication == "refuse":
            packet.blockers.append(
                "a series covers the patient's face and the policy refuses publication of "
                "such cases"
            )
        else:
            packet.blockers.append(
                "a series covers the patient's face: deface it (`archive deid --deface`), "
                "ingest the defaced copy, and record the decision on the facial-surface flag"
            )
    for name in TEXT_FIELDS:
        text = getattr(case, name, "") or ""
        kinds = freetext.kinds(text) if text else []
        if kinds:
            packet.free_text[name] = sorted(set(kinds))
            packet.blockers.append(f"teaching text '{name}' holds {', '.join(sorted(set(kinds)))}")
    return packet


def review_publication(
    ports: Ports,
    principal: Any,
    catalogue: Catalogue,
    case_id: str,
    attestation: Attestation,
    masking: MaskingPolicy,
) -> Reviewed | Refusal:
    """Move ``case_id`` to publication if the checks' results allow and the reviewer
    attests; otherwise a Refusal (the level does not change)."""
    state: dict[str, Any] = {}

    def resource(tx: Any) -> Resource:
        try:
            case = catalogue.get(case_id)
        except ArchiveError as exc:
            raise Refused(
                Refusal(
                    ACTION, str(exc), "Check the case id with `archive cases search`.", "not_found"
                )
            ) from None
        packet = review_packet(tx, case, masking)
        state["case"], state["packet"] = case, packet
        # "rest:alice" and "alice" both name alice: any uploader of the case is refused
        uploader = next(
            (
                principal.user
                for who in packet.uploaders
                if principal is not None and same_person(principal.user, who)
            ),
            packet.uploaders[0] if packet.uploaders else None,
        )
        return Resource("case", case.case_id, state=case.level, requester=uploader)

    def act(tx: Any, permit: Any) -> Reviewed:
        packet: ReviewPacket = state["packet"]
        missing = [
            what
            for what, done in (
                ("the OCR report of every series", attestation.ocr_report_checked),
                ("the face result", attestation.face_result_checked),
                ("the free text", attestation.free_text_checked),
            )
            if not done
        ]
        if missing:
            raise Refused(
                Refusal(
                    ACTION,
                    f"the review is incomplete: confirm you checked {', '.join(missing)}",
                    "Read the review packet (`archive cases review-packet CASE`) and confirm "
                    "each check.",
                    "invalid",
                )
            )
        if len(attestation.rarity.strip()) < 10:
            raise Refused(
                Refusal(
                    ACTION,
                    "no rarity attestation: say why this case is not so rare that it "
                    "identifies the patient",
                    "Give --rarity with a sentence of your own.",
                    "invalid",
                )
            )
        if packet.blockers:
            raise Refused(
                Refusal(
                    ACTION,
                    "not ready for publication: " + "; ".join(packet.blockers),
                    "Resolve each point, then review again; the case stays at limited access.",
                    "conflict",
                )
            )
        case: Case = state["case"]
        catalogue.set_level(case.case_id, PUBLICATION, actor=principal.user)
        return Reviewed(case.case_id, PUBLICATION, principal.user, len(packet.series))

    return perform(
        ports,
        principal,
        ACTION,
        resource,
        act,
        target=f"case:{case_id}",
        detail={"rarity": attestation.rarity.strip()[:200]},
    )
