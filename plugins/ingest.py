"""Received-instance callback: de-identify before Orthanc stores anything.

Runs for C-STORE and REST uploads alike. A quarantined or opted-out instance is
discarded from Orthanc (it is held, encrypted, in the quarantine); bad input raises so
that Orthanc answers the sender with a failure and the sender can resend.
"""

from __future__ import annotations

import orthanc

from archive.ingest import IngestRefused, IngestService
from archive.ingest.service import Action

_ORIGINS = {
    orthanc.InstanceOrigin.DICOM_PROTOCOL: "dicom",
    orthanc.InstanceOrigin.REST_API: "rest",
    orthanc.InstanceOrigin.PLUGIN: "plugin",
}


def register(services) -> None:
    def hold(data: bytes, reason: str, **meta) -> str:
        return services.quarantine().hold(data, reason, **meta)

    service = IngestService(
        policy=services.deid_policy,
        secrets=services.deid_secrets,
        hold=hold,
        record=services.record,
    )

    def on_received(data: bytes, origin) -> tuple:
        intake = _ORIGINS.get(origin, "other")
        try:
            outcome = service.process(bytes(data), intake=intake, source=intake)
        except IngestRefused as exc:
            orthanc.LogWarning(f"teaching-archive: refused an instance: {exc}")
            raise
        if outcome.action is Action.STORE:
            return orthanc.ReceivedInstanceAction.MODIFY, outcome.data
        orthanc.LogWarning(f"teaching-archive: instance not stored: {outcome.reason}")
        return orthanc.ReceivedInstanceAction.DISCARD, None

    orthanc.RegisterReceivedInstanceCallback(on_received)
