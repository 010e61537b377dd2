"""Malformed DICOM datasets built as raw bytes (no parser could build them): deep nesting,
overrunning lengths, truncation. Shared by the guard's unit tests and the front's
integration tests."""

from __future__ import annotations

import struct

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from tests.corpus import make_ct_series

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def encode(ds: Dataset, *, implicit: bool = False, little: bool = True) -> bytes:
    """The dataset's bytes as a C-STORE carries them (no preamble, no file meta)."""
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = implicit, little
    write_dataset(buf, Dataset(ds))  # without file_meta
    return buf.getvalue()


def _explicit_le(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def small_header(sop_uid: str | None = None) -> bytes:
    """SOP class and instance UIDs in explicit VR little endian (even-padded)."""
    sop_uid = sop_uid or generate_uid()
    pad = lambda s: s + b"\0" if len(s) % 2 else s  # noqa: E731
    return _explicit_le(0x0008, 0x0016, b"UI", pad(CT_IMAGE.encode())) + _explicit_le(
        0x0008, 0x0018, b"UI", pad(sop_uid.encode())
    )


def nested(depth: int, *, sop_uid: str | None = None) -> bytes:
    """Explicit VR LE: SOP UIDs, then (0040,0275) sequences nested `depth` deep, each of
    undefined length with one undefined-length item (~16 bytes per level, no recursion
    needed to build it)."""
    open_level = struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    close_level = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return small_header(sop_uid) + open_level * depth + close_level * depth


def good_ct(implicit: bool = False, little: bool = True) -> tuple[Dataset, bytes]:
    ds = make_ct_series(1)[0]
    return ds, encode(ds, implicit=implicit, little=little)


def huge_length() -> bytes:
    """A valid header, then an element claiming 0xFFFFFFF0 bytes."""
    return small_header() + struct.pack("<HH2sHI", 0x0009, 0x0010, b"OB", 0, 0xFFFFFFF0) + b"x" * 16
