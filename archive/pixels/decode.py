"""Decoding pixel data (compressed or not) into arrays in a known colour space.

Every path that looks at or changes pixels goes through here, so OCR, masking and the
preview agree on what the pixels are: colour images always come out as RGB (YBR is
converted, planar configuration undone), byte order is native, frames come first.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, get_decoder

from archive.errors import ArchiveError


class PixelDecodeError(ArchiveError):
    """The pixel data cannot be decoded here (unsupported or corrupt encoding)."""


def has_pixels(ds: Dataset) -> bool:
    return any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def sample_frames(n_frames: int, n_samples: int) -> list[int]:
    """Evenly spaced frame indices, always including the first and the last."""
    if n_frames <= n_samples:
        return list(range(n_frames))
    if n_samples == 1:
        return [0]
    step = (n_frames - 1) / (n_samples - 1)
    return sorted({round(i * step) for i in range(n_samples)})


def _decode(ds: Dataset, index: int | None) -> tuple[np.ndarray, str]:
    try:
        tsyntax = ds.file_meta.TransferSyntaxUID
    except AttributeError:
        raise PixelDecodeError("pixel data has no transfer syntax; cannot decode") from None
    try:
        decoder = get_decoder(tsyntax)
        arr, meta = decoder.as_array(ds, index=index, as_rgb=True)
    except Exception as exc:  # decoder messages name codecs, never patient values
        raise PixelDecodeError(f"pixel data cannot be decoded ({type(exc).__name__})") from None
    pi = str(meta.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        pi = "RGB"
        if arr.dtype != np.uint8:  # 16-bit palette entries: keep the top byte
            arr = (arr >> 8).astype(np.uint8)
    if pi not in ("MONOCHROME1", "MONOCHROME2", "RGB"):
        raise PixelDecodeError(f"photometric interpretation {pi} is not supported")
    return arr, pi


def decode_frame(ds: Dataset, index: int) -> tuple[np.ndarray, str]:
    """One frame as (rows, columns[, 3]) and its photometric interpretation."""
    arr, pi = _decode(ds, index if frame_count(ds) > 1 else None)
    if arr.ndim == (4 if pi == "RGB" else 3):
        arr = arr[0]
    return arr, pi


def decode_all(ds: Dataset) -> tuple[np.ndarray, str]:
    """All frames as (frames, rows, columns[, 3]) and the photometric interpretation."""
    arr, pi = _decode(ds, None)
    if arr.ndim == (3 if pi == "RGB" else 2):
        arr = arr[np.newaxis, ...]
    return arr, pi


def to_gray8(frame: np.ndarray, pi: str) -> np.ndarray:
    """An 8-bit grey image in which high values are bright, for OCR.

    Min-max scaling rather than a clinical window: burnt-in text is drawn at an extreme
    value, and a window chosen for tissue could clip it into the background.
    """
    if pi == "RGB":
        f = frame.astype(np.float32)
        # the brightest channel keeps coloured text visible on a grey background
        grey = np.maximum(np.maximum(f[..., 0], f[..., 1]), f[..., 2])
    else:
        grey = frame.astype(np.float32)
    lo, hi = float(grey.min()), float(grey.max())
    if hi <= lo:
        out = np.zeros(grey.shape, dtype=np.uint8)
    else:
        out = ((grey - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    if pi == "MONOCHROME1":
        out = 255 - out
    return out


def to_display8(frame: np.ndarray, pi: str) -> np.ndarray:
    """An 8-bit image for people to look at: 8-bit RGB stays colour, the rest is grey."""
    if pi == "RGB" and frame.dtype == np.uint8:
        return frame
    return to_gray8(frame, pi)
