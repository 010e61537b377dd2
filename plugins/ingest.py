"""Received-instance callback: de-identify and check pixels before Orthanc stores anything.

Runs for C-STORE and REST uploads alike. A quarantined or opted-out instance is
discarded from Orthanc (it is held, encrypted, in the quarantine). The callback never
raises (orthanc-python 4.0 would then store the instance as received): bad input is
answered with unparseable bytes (HTTP 400 / a DICOM failure), any other refusal with an
empty buffer (HTTP 500), so the sender learns of it and can resend. A PLUGIN
instance is stored unchanged only with a one-time release ticket minted by the
quarantine release route (plugins/quarantine_routes.py); anything else is de-identified.
"""

from __future__ import annotations

import os

import orthanc

from archive.audit import AuditEvent
from archive.ingest import IngestRefused, IngestService, load_handover, origins, tickets
from archive.ingest import flags as ingest_flags
from archive.ingest.service import Action
from archive.pixels import load_masking_policy
from plugins.uploaders import note_uploader, take_dicom_front, take_uploader  # noqa: F401

_ORIGINS = {
    orthanc.InstanceOrigin.DICOM_PROTOCOL: "dicom",
    orthanc.InstanceOrigin.REST_API: "rest",
    orthanc.InstanceOrigin.PLUGIN: "plugin",
}

# Free space kept on the data volume beyond twice the instance: Orthanc's index, the
# audit log and the archive database must still be writable when ingest is refused,
# so that the refusal itself is recorded and the archive keeps serving.
DATA_RESERVE_BYTES = 4 * 1024 * 1024


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


def ticket_key(services) -> bytes:
    return tickets.derive_ticket_key(services.runtime.keyring.pseudonym_key)


def build_service(services) -> IngestService:
    """The ingest service with the pixel step; any policy problem stops the plugin."""
    masking = load_masking_policy(services.config.policies_dir)
    handover = load_handover(services.config.policies_dir, services.deid_policy)
    key = ticket_key(services)
    ingest_flags.ensure_schema(services.db())
    quarantine = _quarantine_per_connection(services)

    def hold(data: bytes, reason: str, **meta) -> str:
        return quarantine().hold(data, reason, **meta)

    return IngestService(
        policy=services.deid_policy,
        secrets=services.deid_secrets,
        hold=hold,
        record=services.record,
        opted_out=_opt_out_check(services),
        masking=masking,
        handover=handover,
        consent_for=lambda study: quarantine().consent_for(study),
        record_flags=lambda study, series, flags: ingest_flags.record_flags(
            services.db(), study, series, flags
        ),
        redeem_ticket=lambda sop, data: tickets.redeem(services.db(), key, sop_uid=sop, data=data),
        record_face=lambda study, series, sop, face: ingest_flags.record_face_slice(
            services.db(), study, series, sop, face, masking.facial
        ),
        record_report=lambda *args: ingest_flags.record_pixel_report(services.db(), *args),
    )


def _quarantine_per_connection(services):
    """The quarantine store on this thread's connection, built once per connection: the
    consent lookup runs for every instance, and building a store costs a directory check
    and a schema check each time."""
    stores = {}

    def quarantine():
        conn = services.db()
        store = stores.get(id(conn))
        if store is None:
            store = stores[id(conn)] = services.quarantine()
        return store

    return quarantine


def _opt_out_check(services):
    """Issue 10: is this pseudonym on the opt-out register (hashed)? One register per
    thread's connection; an error propagates, so the instance is refused, not stored."""
    from archive.governance import OptOutRegister

    registers = {}

    def opted_out(pseudonym: str) -> bool:
        conn = services.db()
        register = registers.get(id(conn))
        if register is None:
            register = registers[id(conn)] = OptOutRegister(conn)
        return register.contains(pseudonym)

    opted_out(".")  # create the tables now: a broken schema stops the plugin
    return opted_out


# orthanc-python 4.0 stores the instance AS RECEIVED (KeepAsIs) when the callback raises,
# so a refusal must never propagate: the callback answers MODIFY with this empty buffer
# instead, which Orthanc cannot parse, so nothing is stored and the sender gets a failure
# (DICOM failure status, HTTP 4xx/5xx) and can resend. Bad input gets bytes Orthanc
# fails to parse (HTTP 400: do not resend as is); anything else gets an empty buffer
# (HTTP 500: resend later, e.g. once the data volume has room).
REFUSED = b""
REFUSED_BAD_INPUT = b"refused by the teaching archive: not de-identifiable"


def register(services) -> None:
    service = build_service(services)

    def process(data: bytes, origin) -> tuple:
        intake = _ORIGINS.get(origin, "other")
        if take_dicom_front() is not None:  # C-STOREd to the DICOM front (archive/dicom)
            intake = "dicom"
        uploader = take_uploader()
        actor = f"rest:{uploader}" if uploader and intake == "rest" else None
        check_free_space(services.home.data_dir, len(data))
        outcome = service.process(bytes(data), intake=intake, source=intake, actor=actor)
        if outcome.action is Action.STORE:
            if intake == "dicom" and outcome.study_uid:
                origins.record(services.db(), outcome.study_uid, intake)
            return orthanc.ReceivedInstanceAction.MODIFY, outcome.data
        orthanc.LogWarning(f"teaching-archive: instance not stored: {outcome.reason}")
        return orthanc.ReceivedInstanceAction.DISCARD, None

    def on_received(data: bytes, origin) -> tuple:
        try:
            return process(data, origin)
        except IngestRefused as exc:
            orthanc.LogError(f"teaching-archive: refused an instance: {exc}")
            return orthanc.ReceivedInstanceAction.MODIFY, REFUSED_BAD_INPUT
        except DataVolumeFull as exc:
            orthanc.LogError(f"teaching-archive: refused an instance: {exc}")
            _audit_refusal(origin, "data volume full")
        except Exception as exc:  # noqa: BLE001 - fail closed: never KeepAsIs
            # The type only: an exception's message could quote a value of an instance
            # that has not been de-identified.
            orthanc.LogError(
                f"teaching-archive: refused an instance ({type(exc).__name__}); "
                "the sender must resend once the cause is fixed"
            )
            _audit_refusal(origin, f"internal error: {type(exc).__name__}")
        return orthanc.ReceivedInstanceAction.MODIFY, REFUSED

    def _audit_refusal(origin, reason: str) -> None:
        """Refusals the ingest service did not see are audited here (the data reserve
        keeps room for the record); a refused record only costs a log line."""
        intake = _ORIGINS.get(origin, "other")
        detail = {"reason": reason}
        event = AuditEvent("ingest.refused", "failure", "system", source=intake, detail=detail)
        try:
            services.record(event)
        except Exception as exc:  # noqa: BLE001 - never raise into Orthanc
            orthanc.LogError(f"teaching-archive: refusal not audited ({type(exc).__name__})")

    orthanc.RegisterReceivedInstanceCallback(on_received)
