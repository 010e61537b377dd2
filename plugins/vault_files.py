"""Read a study's files from the vault and send them by C-STORE, without orthanc.RestApi*.

A callback calling orthanc.RestApi* holds Python's lock while Orthanc works, and
Orthanc's threads that need the Python storage area wait for that lock: a pull through
/modalities/{x}/store froze the whole archive (ops/NO-RESTAPI.md). Request paths use
this instead: the vault's instance ledger says which stored file is which instance, the
files are decrypted here, and archive.dicom.send sends them with pynetdicom (socket I/O
releases Python's lock, so Orthanc keeps serving meanwhile).
"""

from __future__ import annotations

from archive.dicom.send import SendResult, send_entries
from archive.vault.ledger import LedgerEntry, read_dicom


def study_entries(services, orthanc_study_id: str) -> list[LedgerEntry]:
    """Every stored instance of an Orthanc study, by series then instance number."""
    return services.ledger().study_files(orthanc_study_id)


def read_entry(services, entry: LedgerEntry) -> bytes:
    """The decrypted DICOM file of a ledger entry."""
    return read_dicom(services.storage, entry)


def study_files(services, orthanc_study_id: str) -> list[tuple[LedgerEntry, bytes]]:
    """(entry, stored DICOM bytes) of every instance of a study."""
    return [(e, read_entry(services, e)) for e in study_entries(services, orthanc_study_id)]


def send_to_node(services, entries, node, *, timeout: float = 30.0) -> SendResult:
    """C-STORE the entries' stored bytes to a registered node (anything with aet, host
    and port: the access room's DicomNode), calling as the archive's own AE title.
    archive.dicom.send.SendError if the node is down or refuses the association."""
    return send_entries(
        entries,
        lambda entry: read_entry(services, entry),
        host=node.host,
        port=int(node.port),
        called_aet=node.aet,
        calling_aet=services.config.dicom.aet,
        timeout=timeout,
    )
