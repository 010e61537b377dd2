"""Rebuild a lost "DICOM until pixel data" attachment from its instance's DICOM file.

Orthanc 1.10 writes, beside each instance's DICOM file (content type 1), a copy of that
file's first bytes up to the pixel data (content type 3), because a Python storage area
has no range read. The archive writes it without fsync (ops/BENCHMARKS.md): a power cut
can leave it missing or empty, and Orthanc does not rebuild it, so reading the
instance's tags fails while its DICOM file is intact. Its plaintext is exactly the first
`size` bytes of the DICOM file, and Orthanc's index holds that size and its MD5, so the
rebuild is either byte-exact (checked) or refused; nothing is guessed.
"""

from __future__ import annotations

import hashlib

from archive.backup.orthanc_index import DICOM_CONTENT, Attachment
from archive.vault.errors import TamperError
from archive.vault.store import EncryptedStore

UNTIL_PIXEL_DATA = 3  # Orthanc's FileContentType_DicomUntilPixelData


def rebuild_until_pixel_data(
    store: EncryptedStore, lost: Attachment, dicom: Attachment
) -> str | None:
    """Write `lost` again from `dicom`; returns None when done, else why it was refused."""
    if lost.content_type != UNTIL_PIXEL_DATA or dicom.content_type != DICOM_CONTENT:
        return "only a type-3 attachment can be rebuilt, and only from a type-1 file"
    if lost.resource != dicom.resource:
        return "the two attachments belong to different instances"
    try:
        data = store.read(dicom.uuid, DICOM_CONTENT)
    except (OSError, TamperError) as exc:
        return f"the instance's DICOM file cannot be read ({type(exc).__name__})"
    if not 0 < lost.size <= len(data):
        return "the index's size does not fit inside the DICOM file"
    prefix = data[: lost.size]
    if not lost.md5 or hashlib.md5(prefix).hexdigest() != lost.md5:  # noqa: S324 - Orthanc's
        return "the rebuilt bytes do not match the MD5 in Orthanc's index"
    store.write(lost.uuid, UNTIL_PIXEL_DATA, prefix)  # durable this time
    return None
