"""Received-instance callback: de-identify and check pixels before Orthanc stores anything.

The work is archive/ingest/receive.py (which says what is refused and how the sender
learns of it); this adapter tells it how the instance came in - DICOM (through the
archive's DICOM front, plugins/uploaders.py), a REST upload by a named user, or a plugin
- and maps its verdict to orthanc.ReceivedInstanceAction. It never raises: orthanc-python
4.0 would then store the instance as received.
"""

from __future__ import annotations

from archive.ingest.receive import MODIFY, REFUSED, Receiver, build_service
from archive.ingest.receive import ticket_key as _ticket_key
from plugins.uploaders import note_uploader, take_dicom_front, take_uploader  # noqa: F401


def ticket_key(services) -> bytes:
    """The release tickets' key (plugins/quarantine_routes.py mints them)."""
    return _ticket_key(services.runtime.keyring)


def register(orthanc, services) -> None:
    receiver = Receiver(services, build_service(services), orthanc.LogError, orthanc.LogWarning)
    origins = {
        orthanc.InstanceOrigin.DICOM_PROTOCOL: "dicom",
        orthanc.InstanceOrigin.REST_API: "rest",
        orthanc.InstanceOrigin.PLUGIN: "plugin",
    }
    modify = orthanc.ReceivedInstanceAction.MODIFY
    discard = orthanc.ReceivedInstanceAction.DISCARD

    def on_received(data: bytes, origin) -> tuple:
        try:
            intake = origins.get(origin, "other")
            if take_dicom_front() is not None:  # C-STOREd to the DICOM front (archive/dicom)
                intake = "dicom"
            uploader = take_uploader()
            actor = f"rest:{uploader}" if uploader and intake == "rest" else None
            verdict, payload = receiver(data, intake, actor)
        except Exception as exc:  # noqa: BLE001 - fail closed: never KeepAsIs
            orthanc.LogError(f"teaching-archive: refused an instance ({type(exc).__name__})")
            return modify, REFUSED
        return (modify, payload) if verdict == MODIFY else (discard, None)

    orthanc.RegisterReceivedInstanceCallback(on_received)
