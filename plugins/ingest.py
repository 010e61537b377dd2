"""Received-instance callback: de-identify and check pixels before Orthanc stores anything.

Runs for C-STORE and REST uploads alike. A quarantined or opted-out instance is
discarded from Orthanc (it is held, encrypted, in the quarantine); bad input raises so
that Orthanc answers the sender with a failure and the sender can resend. A PLUGIN
instance is stored unchanged only with a one-time release ticket minted by the
quarantine release route (plugins/quarantine_routes.py); anything else is de-identified.
"""

from __future__ import annotations

import threading

import orthanc

from archive.ingest import IngestRefused, IngestService, load_handover, tickets
from archive.ingest import flags as ingest_flags
from archive.ingest.service import Action
from archive.pixels import load_masking_policy

_ORIGINS = {
    orthanc.InstanceOrigin.DICOM_PROTOCOL: "dicom",
    orthanc.InstanceOrigin.REST_API: "rest",
    orthanc.InstanceOrigin.PLUGIN: "plugin",
}

_uploader = threading.local()


def note_uploader(name: str | None) -> None:
    """Attribute the next instance received on this thread to a named user.

    For the HTTP filter: a POST /instances by an authenticated user runs the
    received-instance callback on the same thread, so the quarantine can refuse a
    release by whoever ingested the study. Cleared after each instance.
    """
    _uploader.name = name


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


def register(services) -> None:
    service = build_service(services)

    def on_received(data: bytes, origin) -> tuple:
        intake = _ORIGINS.get(origin, "other")
        actor = getattr(_uploader, "name", None)
        _uploader.name = None
        try:
            outcome = service.process(bytes(data), intake=intake, source=intake, actor=actor)
        except IngestRefused as exc:
            orthanc.LogWarning(f"teaching-archive: refused an instance: {exc}")
            raise
        if outcome.action is Action.STORE:
            return orthanc.ReceivedInstanceAction.MODIFY, outcome.data
        orthanc.LogWarning(f"teaching-archive: instance not stored: {outcome.reason}")
        return orthanc.ReceivedInstanceAction.DISCARD, None

    orthanc.RegisterReceivedInstanceCallback(on_received)
