"""What becomes of an instance Orthanc received, before anything is stored.

plugins/ingest.py hands Orthanc's received-instance callback here and maps the verdict
to orthanc.ReceivedInstanceAction. Runs for C-STORE and REST uploads alike. A
quarantined or opted-out instance is discarded from Orthanc (it is held, encrypted, in
the quarantine). Nothing raises out of `Receiver.__call__` (orthanc-python 4.0 would
then store the instance as received): bad input is answered with bytes Orthanc cannot
parse (HTTP 400 / a DICOM failure), any other refusal with an empty buffer (HTTP 500),
so the sender learns of it and can resend. A PLUGIN instance is stored unchanged only
with a one-time release ticket minted by the quarantine release; anything else is
de-identified.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from archive.audit import AuditEvent
from archive.core import transaction
from archive.ingest import flags as ingest_flags
from archive.ingest import origins, tickets
from archive.ingest.handover import load_handover
from archive.ingest.service import Action, IngestRefused, IngestService
from archive.pixels import load_masking_policy

# Free space kept on the data volume beyond twice the instance: Orthanc's index, the
# audit log and the archive database must still be writable when ingest is refused,
# so that the refusal itself is recorded and the archive keeps serving.
DATA_RESERVE_BYTES = 4 * 1024 * 1024

# orthanc-python 4.0 stores the instance AS RECEIVED (KeepAsIs) when the callback raises,
# so a refusal must never propagate: the callback answers MODIFY with this empty buffer
# instead, which Orthanc cannot parse, so nothing is stored and the sender gets a failure
# (DICOM failure status, HTTP 4xx/5xx) and can resend. Bad input gets bytes Orthanc
# fails to parse (HTTP 400: do not resend as is); anything else gets an empty buffer
# (HTTP 500: resend later, e.g. once the data volume has room).
REFUSED = b""
REFUSED_BAD_INPUT = b"refused by the teaching archive: not de-identifiable"

# Verdicts: Orthanc stores these bytes instead (MODIFY; empty or unparseable bytes: a
# refusal the sender sees), or drops the instance (DISCARD).
MODIFY, DISCARD = "modify", "discard"


class DataVolumeFull(RuntimeError):
    """Ingest refused before storing: the data volume has no room (the sender resends)."""


def check_free_space(data_dir, size: int) -> None:
    """Refuse an instance the data volume cannot hold with room to spare."""
    stats = os.statvfs(data_dir)
    free = stats.f_bavail * stats.f_frsize
    if free < 2 * size + DATA_RESERVE_BYTES:
        raise DataVolumeFull(
            f"the archive's data volume is full ({free // 1024} KiB free, "
            f"{(2 * size + DATA_RESERVE_BYTES) // 1024} KiB needed): instance not stored; "
            f"free space on {data_dir}, then resend"
        )


def ticket_key(keyring) -> bytes:
    return tickets.derive_ticket_key(keyring.pseudonym_key)


def build_service(parts) -> IngestService:
    """The ingest service with the pixel step; any policy problem stops the start.

    `parts` is what the plugin shares (plugins/services.Services): config, deid_policy,
    deid_secrets, runtime.keyring, db(), quarantine() and record."""
    masking = load_masking_policy(parts.config.policies_dir)
    handover = load_handover(parts.config.policies_dir, parts.deid_policy)
    key = ticket_key(parts.runtime.keyring)
    ingest_flags.ensure_schema(parts.db())
    origins.ensure_schema(parts.db())  # written inside the records' transaction
    quarantine = _per_connection(parts, parts.quarantine)

    def hold(data: bytes, reason: str, **meta) -> str:
        return quarantine().hold(data, reason, **meta)

    return IngestService(
        policy=parts.deid_policy,
        secrets=parts.deid_secrets,
        hold=hold,
        record=parts.record,
        opted_out=_opt_out_check(parts),
        masking=masking,
        handover=handover,
        consent_for=lambda study: quarantine().consent_for(study),
        record_flags=lambda study, series, flags: ingest_flags.record_flags(
            parts.db(), study, series, flags
        ),
        redeem_ticket=lambda sop, data: tickets.redeem(parts.db(), key, sop_uid=sop, data=data),
        redeem_import=lambda sop, data: tickets.redeem(  # issue 25: a verified transfer
            parts.db(), key, sop_uid=sop, data=data, imports_only=True
        ),
        record_face=lambda study, series, sop, face: ingest_flags.record_face_slice(
            parts.db(), study, series, sop, face, masking.facial
        ),
        record_report=lambda *args: ingest_flags.record_pixel_report(parts.db(), *args),
        record_origin=lambda study, intake: origins.record(parts.db(), study, intake),
        # Committed without its own fsync (issue 26): Orthanc then calls the storage
        # area's `create` for this instance, whose ledger row is a synchronous commit of
        # the same archive.db (StorageArea.create) - its fsync of the WAL carries these
        # records too - and only then commits its index and answers the sender.
        batch=lambda: transaction(parts.db(), durable=False),
    )


def _per_connection(parts, build: Callable[[], Any]) -> Callable[[], Any]:
    """`build()` once per thread's connection: the consent lookup runs for every
    instance, and building a quarantine store costs a directory and a schema check."""
    made: dict[int, Any] = {}

    def get():
        conn = parts.db()
        thing = made.get(id(conn))
        if thing is None:
            thing = made[id(conn)] = build()
        return thing

    return get


def _opt_out_check(parts):
    """Issue 10: is this pseudonym on the opt-out register (hashed)? One register per
    thread's connection; an error propagates, so the instance is refused, not stored."""
    from archive.governance import OptOutRegister

    register = _per_connection(parts, lambda: OptOutRegister(parts.db()))

    def opted_out(pseudonym: str) -> bool:
        return register().contains(pseudonym)

    opted_out(".")  # create the tables now: a broken schema stops the plugin
    return opted_out


class Receiver:
    """One received instance -> (verdict, bytes); never raises."""

    def __init__(self, parts, service: IngestService, error: Callable[[str], None],
                 warning: Callable[[str], None]) -> None:  # fmt: skip
        self.parts = parts
        self.service = service
        self.error = error
        self.warning = warning

    def __call__(self, data: bytes, intake: str, actor: str | None) -> tuple[str, bytes | None]:
        try:
            return self._process(data, intake, actor)
        except IngestRefused as exc:
            self.error(f"teaching-archive: refused an instance: {exc}")
            return MODIFY, REFUSED_BAD_INPUT
        except DataVolumeFull as exc:
            self.error(f"teaching-archive: refused an instance: {exc}")
            self.audit_refusal(intake, "data volume full")
        except Exception as exc:  # noqa: BLE001 - fail closed: never KeepAsIs
            # The type only: an exception's message could quote a value of an instance
            # that has not been de-identified.
            self.error(
                f"teaching-archive: refused an instance ({type(exc).__name__}); "
                "the sender must resend once the cause is fixed"
            )
            self.audit_refusal(intake, f"internal error: {type(exc).__name__}")
        return MODIFY, REFUSED

    def _process(self, data: bytes, intake: str, actor: str | None) -> tuple[str, bytes | None]:
        check_free_space(self.parts.home.data_dir, len(data))
        outcome = self.service.process(bytes(data), intake=intake, source=intake, actor=actor)
        if outcome.action is Action.STORE:
            if intake == "dicom" and outcome.study_uid:  # recorded with its other records
                origins.remember(outcome.study_uid)
            return MODIFY, outcome.data
        self.warning(f"teaching-archive: instance not stored: {outcome.reason}")
        return DISCARD, None

    def audit_refusal(self, intake: str, reason: str) -> None:
        """Refusals the ingest service did not see are audited here (the data reserve
        keeps room for the record); a refused record only costs a log line."""
        event = AuditEvent(
            "ingest.refused", "failure", "system", source=intake, detail={"reason": reason}
        )
        try:
            self.parts.record(event)
        except Exception as exc:  # noqa: BLE001 - never raise into Orthanc
            self.error(f"teaching-archive: refusal not audited ({type(exc).__name__})")
