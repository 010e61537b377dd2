"""Hand a scanned C-STORE dataset to Orthanc: a Part-10 file POSTed to its loopback API.

The front (archive/dicom/front.py) is the archive's only DICOM entry; Orthanc's own DICOM
server is off. What the front accepts it POSTs to Orthanc's /instances on 127.0.0.1,
with FRONT_SECRET_HEADER carrying a random per-serve secret that the plugin's HTTP filter
accepts only from 127.0.0.1 (plugins/http_filter.py), and FRONT_AET_HEADER naming the
calling AE so the received-instance callback records the instance as a DICOM intake.
The secret reaches Orthanc and the front through their environment (FRONT_SECRET_ENV),
read once and removed; it is never printed or logged.

Orthanc's answer maps to the DIMSE status: success only once Orthanc has stored the
instance (or held it in the quarantine), so nothing acknowledged is lost.
"""

from __future__ import annotations

import hmac
import io
from collections.abc import Mapping
from dataclasses import dataclass

FRONT_SECRET_HEADER = "X-Archive-Dicom-Front"  # noqa: S105 - a header name
FRONT_AET_HEADER = "X-Archive-Dicom-Aet"
FRONT_SECRET_ENV = "ARCHIVE_DICOM_FRONT_SECRET"  # noqa: S105 - a variable name

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # try again later
CANNOT_UNDERSTAND = 0xC000  # do not resend as is
REFUSED_NOT_AUTHORIZED = 0x0124
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1438.1"  # the front's (invented) class


@dataclass(frozen=True)
class Forwarded:
    status: int
    comment: str  # short, safe to send back (ErrorComment, 64 chars) and to audit


def from_front(ip: str, headers: Mapping[str, str], secret: str | None) -> str | None:
    """The calling AE title when a request comes from the front (127.0.0.1 and the right
    secret, compared in constant time), else None."""
    if not secret or ip != "127.0.0.1":
        return None
    given = aet = None
    for name, value in headers.items():
        lowered = str(name).lower()
        if lowered == FRONT_SECRET_HEADER.lower():
            given = str(value)
        elif lowered == FRONT_AET_HEADER.lower():
            aet = str(value).strip()
    if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
        return None
    return aet or "unknown-ae"


def part10(dataset: bytes, sop_class: str, sop_instance: str, syntax: str, aet: str) -> bytes:
    """Preamble, DICM and a file meta group built from the association's context, then
    the dataset's bytes as received (never parsed nor re-encoded)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "ARCHIVE_FRONT"
    if aet:
        meta.SourceApplicationEntityTitle = aet
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    out = io.BytesIO()
    out.write(buf.getvalue())
    out.write(dataset)
    return out.getvalue()


def status_of(http_status: int, body: Mapping | None) -> Forwarded:
    """Orthanc's answer to POST /instances as a DIMSE status."""
    if http_status == 200:
        state = str((body or {}).get("Status", ""))
        if state in ("Success", "AlreadyStored", "FilteredOut", ""):
            return Forwarded(SUCCESS, "stored" if state != "FilteredOut" else "held")
        return Forwarded(OUT_OF_RESOURCES, f"not stored ({state[:24]}); resend later")
    if http_status == 400:
        return Forwarded(CANNOT_UNDERSTAND, "refused: not valid or not de-identifiable")
    if http_status in (401, 403):
        return Forwarded(OUT_OF_RESOURCES, "archive refused its own front; resend later")
    return Forwarded(OUT_OF_RESOURCES, "archive could not store it now; resend later")


class OrthancForwarder:
    """POSTs to Orthanc's loopback HTTP API with the front's secret (one client, pooled)."""

    def __init__(self, base_url: str, secret: str, timeout: float = 300.0) -> None:
        import httpx

        self._httpx = httpx
        self.secret = secret
        self.client = httpx.Client(
            base_url=base_url, timeout=timeout, limits=httpx.Limits(max_connections=32)
        )

    def store(self, data: bytes, aet: str) -> Forwarded:
        headers = {
            FRONT_SECRET_HEADER: self.secret,
            FRONT_AET_HEADER: aet,
            "Content-Type": "application/dicom",
        }
        try:
            answer = self.client.post("/instances", content=data, headers=headers)
        except self._httpx.HTTPError:
            return Forwarded(OUT_OF_RESOURCES, "archive not reachable now; resend later")
        body = None
        if answer.status_code == 200:
            try:
                body = answer.json()
            except ValueError:
                body = None
            if isinstance(body, list):  # Orthanc answers a list for a multi-file body
                body = body[0] if body else None
        return status_of(answer.status_code, body if isinstance(body, dict) else None)

    def close(self) -> None:
        self.client.close()
