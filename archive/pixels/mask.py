"""Blacking out regions of every frame and storing the result losslessly.

The input may be compressed (JPEG, JPEG 2000, RLE...), YBR, planar or palette colour:
it is decoded to RGB or grey first, so the masked output is always native pixel data
in Explicit VR Little Endian, with the Image Pixel attributes rewritten to match.
Re-encoding lossily would smear masked edges back into view, so we never do.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from archive.pixels.decode import PixelDecodeError, decode_all, has_pixels
from archive.pixels.policy import Region

# elements that describe the old encoding or colour mapping and would now lie
_STALE_PIXEL_TAGS = (
    0x00280006,  # Planar Configuration (set again below when needed)
    0x00281101,  # Red/Green/Blue Palette Color LUT Descriptors
    0x00281102,
    0x00281103,
    0x00281199,  # Palette Color LUT UID
    0x00281201,  # Red/Green/Blue Palette Color LUT Data
    0x00281202,
    0x00281203,
    0x00281221,  # Segmented palette LUT data
    0x00281222,
    0x00281223,
    0x00282000,  # ICC Profile (describes the old colour space)
    0x7FE00001,  # Extended Offset Table
    0x7FE00002,
    0x00880200,  # Icon Image Sequence: a thumbnail that still shows the text
)


def _fill_value(arr: np.ndarray, pi: str) -> int:
    """The value that displays as black: darkest for MONOCHROME2/RGB, brightest for MONO1.

    Taken from the image's own range rather than the type's limits so viewers'
    automatic windowing is not thrown by an out-of-range value.
    """
    if pi == "MONOCHROME1":
        return int(arr.max())
    if pi == "RGB":
        return 0
    return int(arr.min())


def _strip_overlays(ds: Dataset) -> None:
    """Overlay planes (60xx) can hold burnt-in-like text bitmaps: drop them all."""
    for tag in [t for t in ds.keys() if 0x6000 <= t.group <= 0x601E and t.group % 2 == 0]:
        del ds[tag]


def apply_mask(ds: Dataset, regions: Iterable[Region]) -> Dataset:
    """A copy of ``ds`` with ``regions`` blacked out in every frame, stored uncompressed.

    BurnedInAnnotation is set to "YES": masking alone proves nothing. Only a clean OCR
    check afterwards (see ``verify_masked`` / ``assess``) may change it to "NO".
    The SOP Instance UID is left alone: de-identification assigns the archive's UIDs.
    """
    if not has_pixels(ds):
        raise ValueError("instance has no pixel data to mask")
    tsyntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if tsyntax is not None and not tsyntax.is_little_endian:
        # retired Explicit VR Big Endian: pydicom cannot re-encode it safely
        raise PixelDecodeError("big-endian instances cannot be masked; convert them first")
    regions = tuple(regions)
    arr, pi = decode_all(ds)  # (frames, rows, cols[, 3]); YBR/palette now RGB
    arr = np.array(arr, copy=True)
    rows, cols = arr.shape[1], arr.shape[2]
    fill = _fill_value(arr, pi)
    for r in regions:
        y0, y1 = max(0, r.y), min(rows, r.y + r.height)
        x0, x1 = max(0, r.x), min(cols, r.x + r.width)
        if y1 > y0 and x1 > x0:
            arr[:, y0:y1, x0:x1, ...] = fill

    out = copy.deepcopy(ds)
    was_lossy = str(ds.get("LossyImageCompression", "")) == "01" or _is_lossy_syntax(ds)
    for tag in _STALE_PIXEL_TAGS:
        if tag in out:
            del out[tag]
    _strip_overlays(out)
    if out.file_meta.get("TransferSyntaxUID") is not None and (
        not out.file_meta.TransferSyntaxUID.is_little_endian
        or out.file_meta.TransferSyntaxUID.is_compressed
    ):
        out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    bits_stored = min(int(ds.get("BitsStored") or 0) or 99, arr.dtype.itemsize * 8)
    multi = "NumberOfFrames" in ds
    out.set_pixel_data(arr if multi else arr[0], pi, bits_stored, generate_instance_uid=False)
    if multi:
        out.NumberOfFrames = arr.shape[0]  # a multi-frame IOD keeps it even for one frame
    if was_lossy:
        out.LossyImageCompression = "01"  # the pixels were lossy once; stays true forever
    out.BurnedInAnnotation = "YES"
    if out.file_meta.get("TransferSyntaxUID") is None:
        out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return out


def _is_lossy_syntax(ds: Dataset) -> bool:
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    return bool(tsyntax is not None and tsyntax.is_compressed and tsyntax not in _LOSSLESS)


# compressed transfer syntaxes that lose nothing (RLE, JPEG lossless, JPEG-LS lossless,
# JPEG 2000 / HTJ2K lossless); any other compressed syntax counts as lossy
_LOSSLESS = frozenset(
    {
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
    }
)
