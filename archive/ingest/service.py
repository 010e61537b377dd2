"""Decide the fate of one received instance: release de-identified, hold, or refuse.

The Orthanc adapter calls `process` from the received-instance callback, so this runs
for C-STORE, REST uploads and the watch folder alike, before Orthanc stores a byte.
Fail closed: any error that is not the sender's bad input holds the instance in the
encrypted quarantine; nothing is ever released as it came.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from archive.audit import AuditEvent
from archive.deid import DeidInputError, DeidPolicy, DeidResult, DeidSecrets, deidentify
from archive.errors import ArchiveError


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


class IngestService:
    """Glue of de-identification, opt-out, quarantine and audit; no Orthanc here."""

    def __init__(
        self,
        policy: DeidPolicy,
        secrets: DeidSecrets,
        hold: Callable[..., str],
        record: Callable[[AuditEvent], int],
        opted_out: Callable[[str], bool] = lambda pseudonym: False,
        deidentify_fn: Callable[..., DeidResult] = deidentify,
    ) -> None:
        self.policy = policy
        self.secrets = secrets
        self.hold = hold
        self.record = record
        self.opted_out = opted_out
        self.deidentify = deidentify_fn

    def process(self, data: bytes, intake: str, source: str) -> IngestOutcome:
        try:
            result = self.deidentify(data, self.policy, self.secrets, intake=intake)
        except DeidInputError as exc:
            self._audit("ingest.refused", "failure", source, None, reason=str(exc))
            raise IngestRefused(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - fail closed, whatever went wrong
            reason = f"de-identification error: {type(exc).__name__}"
            item = self.hold(data, reason, raw=True, intake=intake)
            self._audit("ingest.quarantined", "success", source, None, reason=reason, item=item)
            return IngestOutcome(Action.HOLD, None, reason, quarantine_id=item)

        if result.patient_pseudonym and self.opted_out(result.patient_pseudonym):
            reason = "patient on the opt-out register"
            self._audit("ingest.opted_out", "success", source, result.study_uid, reason=reason)
            return IngestOutcome(Action.DROP, None, reason, study_uid=result.study_uid)

        if result.released is not None and result.quarantine_reason is None:
            self._audit(
                "ingest.released",
                "success",
                source,
                result.study_uid,
                sop=result.sop_instance_uid,
                modality=result.modality,
                policy=result.policy_version,
            )
            return IngestOutcome(Action.STORE, result.released, "", study_uid=result.study_uid)

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
        )
        self._audit(
            "ingest.quarantined", "success", source, result.study_uid, reason=reason, item=item
        )
        return IngestOutcome(
            Action.HOLD, None, reason, study_uid=result.study_uid, quarantine_id=item
        )

    def _audit(
        self, action: str, outcome: str, source: str, target: str | None, **detail: str
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
