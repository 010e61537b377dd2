"""Decide the fate of one received instance: release de-identified, hold, or refuse.

The Orthanc adapter calls `process` from the received-instance callback, so this runs
for C-STORE, REST uploads and the watch folder alike, before Orthanc stores a byte.
Order: (reviewed release ticket) -> de-identification -> opt-out -> pixel step ->
store or hold. Fail closed: any error that is not the sender's bad input holds the
instance in the encrypted quarantine; nothing is ever released as it came.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import Enum
from io import BytesIO

from pydicom import dcmread

from archive.audit import AuditEvent
from archive.deid import DeidInputError, DeidPolicy, DeidResult, DeidSecrets, deidentify
from archive.deid.raw import peek
from archive.errors import ArchiveError
from archive.ingest.handover import Handover
from archive.ingest.pixelstep import PixelOutcome, check_pixels
from archive.pixels import MaskingPolicy
from archive.pixels.face import SliceFace


class Action(Enum):
    STORE = "store"  # store the de-identified bytes
    HOLD = "hold"  # held in quarantine; Orthanc stores nothing
    DROP = "drop"  # deliberately not kept (opt-out register)


class IngestRefused(ArchiveError):
    """The sender's bytes are not a usable DICOM instance; the sender must fix or resend."""


@dataclass(frozen=True)
class IngestOutcome:
    action: Action
    data: bytes | None
    reason: str
    study_uid: str | None = None
    quarantine_id: str | None = None
    flags: list[str] = field(default_factory=list)
    masked: bool = False
    reviewed_release: bool = False


class IngestService:
    """Glue of de-identification, opt-out, pixel checks, quarantine and audit; no Orthanc."""

    def __init__(
        self,
        policy: DeidPolicy,
        secrets: DeidSecrets,
        hold: Callable[..., str],
        record: Callable[[AuditEvent], int],
        opted_out: Callable[[str], bool] = lambda pseudonym: False,
        deidentify_fn: Callable[..., DeidResult] = deidentify,
        *,
        masking: MaskingPolicy | None = None,
        handover: Handover | None = None,
        consent_for: Callable[[str], str | None] = lambda study_uid: None,
        record_flags: Callable[[str, str, list[str]], None] = lambda study, series, flags: None,
        redeem_ticket: Callable[[str, bytes], str | None] | None = None,
        redeem_import: Callable[[str, bytes], str | None] | None = None,
        record_face: Callable[[str, str, str, SliceFace], None] | None = None,
        record_report: Callable[..., None] | None = None,
        record_origin: Callable[[str, str], None] | None = None,
        batch: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        self.policy = policy
        self.secrets = secrets
        self.hold = hold
        self.record = record
        self.opted_out = opted_out
        self.deidentify = deidentify_fn
        self.masking = masking
        self.handover = handover or Handover(frozenset(), "")
        self.consent_for = consent_for
        self.record_flags = record_flags
        self.redeem_ticket = redeem_ticket
        self.redeem_import = redeem_import
        self.record_face = record_face
        self.record_report = record_report
        # how a released study came in (DICOM only: archive/ingest/origins.py)
        self.record_origin = record_origin
        # one transaction around the records of a released instance (flags, pixel
        # report, face slice, origin): archive.db commits with synchronous=FULL, an
        # fsync each
        self.batch = batch

    def process(
        self, data: bytes, intake: str, source: str, actor: str | None = None
    ) -> IngestOutcome:
        redeem = {"plugin": self.redeem_ticket, "rest": self.redeem_import}.get(intake)
        if redeem is not None:  # a reviewed release, or a verified transfer import
            reviewed = self._reviewed_release(data, source, redeem)
            if reviewed is not None:
                return reviewed
        ingested_by = actor or intake
        try:
            result = self.deidentify(data, self.policy, self.secrets, intake=intake)
        except DeidInputError as exc:
            self._audit("ingest.refused", "failure", source, None, reason=str(exc))
            raise IngestRefused(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - fail closed, whatever went wrong
            reason = f"de-identification error: {type(exc).__name__}"
            item = self.hold(data, reason, raw=True, intake=intake, ingested_by=ingested_by)
            self._audit("ingest.quarantined", "success", source, None, reason=reason, item=item)
            return IngestOutcome(Action.HOLD, None, reason, quarantine_id=item)

        if result.patient_pseudonym and self.opted_out(result.patient_pseudonym):
            reason = "patient on the opt-out register"
            self._audit("ingest.opted_out", "success", source, result.study_uid, reason=reason)
            return IngestOutcome(Action.DROP, None, reason, study_uid=result.study_uid)

        header_clean = result.released is not None and result.quarantine_reason is None
        handed_over = (
            not header_clean
            and result.quarantined_bytes is not None
            and self.handover.accepts(result.quarantine_reason)
        )
        if not header_clean and not handed_over:
            return self._hold_deid(result, data, intake, source, ingested_by)

        candidate = result.released if header_clean else result.quarantined_bytes
        assert candidate is not None
        if self.masking is None:
            if handed_over:  # no pixel policy: nothing the engine flagged can go out
                return self._hold_deid(result, data, intake, source, ingested_by)
            pixels = PixelOutcome("release", candidate, ["pixel step not configured"])
        else:
            consent = self.consent_for(result.study_uid) if result.study_uid else None
            pixels = check_pixels(
                candidate,
                self.masking,
                consent_level=consent,
                handed_over=handed_over,
                identifiers=result.identifiers,
                header=result.header,  # the engine's facts: no second header parse
            )

        if pixels.action == "quarantine" or pixels.data is None:
            reason = "; ".join(pixels.reasons) or "pixel check held the instance"
            item = self.hold(
                candidate,
                reason,
                raw=False,
                intake=intake,
                modality=result.modality,
                study_uid=result.study_uid,
                patient_pseudonym=result.patient_pseudonym,
                ingested_by=ingested_by,
                kind="pixels",
                series_uid=result.series_uid,
                sop_uid=result.sop_instance_uid,
                flags=pixels.flags,
            )
            self._audit(
                "ingest.quarantined",
                "success",
                source,
                result.study_uid,
                reason=reason,
                item=item,
                flags=",".join(pixels.flags) or None,
            )
            return IngestOutcome(
                Action.HOLD,
                None,
                reason,
                study_uid=result.study_uid,
                quarantine_id=item,
                flags=pixels.flags,
            )

        with self.batch():  # the instance's records in one commit: one fsync, not four
            self.record_flags(result.study_uid, result.series_uid, pixels.flags)
            if self.record_report is not None:
                self.record_report(
                    result.study_uid,
                    result.series_uid,
                    result.sop_instance_uid,
                    result.modality,
                    {
                        "action": pixels.action,
                        "assessed": pixels.assessed,
                        "ocr": pixels.ocr,
                        "template": pixels.template,
                        "reasons": pixels.reasons,
                    },
                    ingested_by,
                )
            if pixels.face is not None and self.record_face is not None:
                self.record_face(
                    result.study_uid, result.series_uid, result.sop_instance_uid, pixels.face
                )
            if intake == "dicom" and result.study_uid and self.record_origin is not None:
                self.record_origin(result.study_uid, intake)
        self._audit(
            "ingest.released",
            "success",
            source,
            result.study_uid,
            sop=result.sop_instance_uid,
            modality=result.modality,
            policy=result.policy_version,
            pixels=pixels.action,
            template=pixels.template,
            flags=",".join(pixels.flags) or None,
            ingested_by=ingested_by,
        )
        return IngestOutcome(
            Action.STORE,
            pixels.data,
            "",
            study_uid=result.study_uid,
            flags=pixels.flags,
            masked=pixels.action == "masked",
        )

    def _hold_deid(
        self, result: DeidResult, data: bytes, intake: str, source: str, ingested_by: str
    ) -> IngestOutcome:
        reason = result.quarantine_reason or "no releasable output"
        held = result.quarantined_bytes
        item = self.hold(
            held if held is not None else data,
            reason,
            raw=held is None,
            intake=intake,
            modality=result.modality,
            study_uid=result.study_uid,
            patient_pseudonym=result.patient_pseudonym,
            ingested_by=ingested_by,
            kind="deid",
            series_uid=result.series_uid,
            sop_uid=result.sop_instance_uid,
        )
        self._audit(
            "ingest.quarantined", "success", source, result.study_uid, reason=reason, item=item
        )
        return IngestOutcome(
            Action.HOLD, None, reason, study_uid=result.study_uid, quarantine_id=item
        )

    def _reviewed_release(
        self, data: bytes, source: str, redeem: Callable[[str, bytes], str | None]
    ) -> IngestOutcome | None:
        """A reviewer's release posted by the plugin, or an instance of a verified transfer
        package uploaded by its importer: stored unchanged iff a ticket redeems."""
        header = None
        try:  # two UIDs from the raw elements: no parse of every upload
            facts = peek(data, (0x00080018, 0x0020000D))
            sop_uid, study_uid = (
                facts.get(t, b"").decode("ascii").strip("\x00 ") for t in (0x00080018, 0x0020000D)
            )
        except Exception:  # noqa: BLE001 - not for the raw reader: pydicom reads the header
            try:
                header = dcmread(BytesIO(data), stop_before_pixels=True)
                sop_uid = str(header.SOPInstanceUID)
                study_uid = str(header.StudyInstanceUID)
            except Exception:  # noqa: BLE001 - not a ticketed instance; de-identify as usual
                return None
        if not sop_uid:
            return None
        item = redeem(sop_uid, data)
        if item is None:
            return None
        if header is None:
            header = dcmread(BytesIO(data), stop_before_pixels=True)
        if item.startswith("import:"):
            self._audit("ingest.transfer_import", "success", source, study_uid, sop=sop_uid)
            return IngestOutcome(Action.STORE, data, "", study_uid=study_uid, reviewed_release=True)
        self._audit("ingest.reviewed_release", "success", source, study_uid, sop=sop_uid, item=item)
        if self.record_report is not None:  # the publication review needs every series' report
            self.record_report(
                study_uid,
                str(header.get("SeriesInstanceUID", "")),
                sop_uid,
                str(header.get("Modality", "")).upper(),
                {"action": "reviewed", "assessed": True, "ocr": {}, "template": None},
                "",  # the uploader is on the held item; this release is a reviewer's
            )
        return IngestOutcome(Action.STORE, data, "", study_uid=study_uid, reviewed_release=True)

    def _audit(
        self, action: str, outcome: str, source: str, target: str | None, **detail: str | None
    ) -> None:
        self.record(
            AuditEvent(
                action=action,
                outcome=outcome,
                actor="system",
                source=source,
                target=target,
                detail={key: value for key, value in detail.items() if value is not None},
            )
        )
