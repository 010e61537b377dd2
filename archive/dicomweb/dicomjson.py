"""Stored DICOM -> DICOM JSON (PS3.18 F.2) for QIDO-RS and WADO-RS metadata, with the
quiz redaction (FORMAT.md "Metadata").

Pixel data and any other binary value larger than BULK_LIMIT are left out (the viewer
fetches frames by their own route; nothing else binary is needed to display). In quiz
mode the policy's `replace` elements get neutral text (descriptions) or are emptied, its
`remove` elements and every private element are removed, at every nesting level.
"""

from __future__ import annotations

import io
from typing import Any

from archive.dicomweb.policy import ViewerPolicy

BULK_LIMIT = 1024
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
STUDY_DESCRIPTION = 0x00081030
SERIES_DESCRIPTION = 0x0008103E
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

# QIDO-RS answers: the attributes of each level (PS3.18 table 10.6.3-3/4/5).
STUDY_TAGS = (
    0x00080020, 0x00080030, 0x00080050, 0x00080061, 0x00080090, 0x00081030, 0x00100010,
    0x00100020, 0x00100030, 0x00100040, 0x0020000D, 0x00200010, 0x00201206, 0x00201208,
)  # fmt: skip
SERIES_TAGS = (0x00080060, 0x0008103E, 0x0020000E, 0x00200011, 0x00201209, 0x00080021,
               0x00080031)  # fmt: skip
INSTANCE_TAGS = (0x00080016, 0x00080018, 0x00200013, 0x00280010, 0x00280011, 0x00280008,
                 0x0020000D, 0x0020000E)  # fmt: skip


def read_header(data: bytes):
    """The dataset of a stored file without its pixel data."""
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


def redact(ds, policy: ViewerPolicy, series_number: int | None = None) -> None:
    """Apply the quiz redaction in place (every nesting level)."""
    for elem in list(ds):
        tag = int(elem.tag)
        if elem.tag.is_private or tag in policy.remove:
            del ds[elem.tag]
        elif tag == STUDY_DESCRIPTION:
            elem.value = policy.study_description
        elif tag == SERIES_DESCRIPTION:
            n = f" {series_number}" if series_number else ""
            elem.value = f"{policy.series_description}{n}"
        elif tag in policy.replace:
            elem.value = [] if elem.VR == "SQ" else ""
        elif elem.VR == "SQ":
            for item in elem.value:
                redact(item, policy)


def to_json(ds, *, keep: tuple[int, ...] | None = None) -> dict[str, Any]:
    """DICOM JSON of `ds` (only the `keep` tags when given), binary bulk left out."""
    for elem in list(ds):
        tag = int(elem.tag)
        if (keep is not None and tag not in keep) or tag in PIXEL_TAGS:
            del ds[elem.tag]
        elif elem.VR in BINARY_VRS and elem.value is not None and len(elem.value) > BULK_LIMIT:
            del ds[elem.tag]
    return ds.to_json_dict(bulk_data_threshold=BULK_LIMIT, bulk_data_element_handler=_no_bulk)


def _no_bulk(elem) -> str:  # pragma: no cover - large binaries are removed before
    return ""


def value(tag: int, vr: str, *values: Any) -> dict[str, Any]:
    """One DICOM JSON attribute {tag: {"vr", "Value"}} (Value left out when empty)."""
    entry: dict[str, Any] = {"vr": vr}
    kept = [v for v in values if v not in (None, "")]
    if kept:
        entry["Value"] = kept
    return {f"{tag:08X}": entry}
