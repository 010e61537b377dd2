"""Render a DICOM instance as a PNG from its bytes: pydicom decodes, numpy maps, Pillow draws.

Why here and not Orthanc's /instances/{id}/preview: a Python callback calling
orthanc.RestApi* holds Python's lock while Orthanc works, and Orthanc's threads that
need the Python storage area then wait for it (thumbnails right after a start froze the
archive, ops/NO-RESTAPI.md). Rendering from the decrypted bytes needs nothing from
Orthanc, and the result is better: the full-resolution image scaled with Lanczos
instead of a 64-pixel preview blown up by the browser.

What it does: pixel data in any syntax pydicom can decode with the installed plugins
(native, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000); the middle
frame of a multi-frame image; rescale (modality LUT) then VOI (the first window centre
and width, or a VOI LUT, else the min/max of the frame); MONOCHROME1 inverted; colour
(RGB, YBR converted, palette colour). Anything without renderable pixels (SR, RT plan or
structure set, waveforms such as ECG, encapsulated PDF, a decoder missing, damaged data)
gets a typed icon: a PNG labelled "SR", "RT PLAN", "ECG", ... - never an exception.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image, ImageDraw, ImageFont

THUMBNAIL_SIZE = 256
PREVIEW_SIZE = 1024
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_log = logging.getLogger(__name__)

# SOP class UID (exact, or prefix ending in ".") -> icon label
_LABELS = (
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT PLAN"),
    ("1.2.840.10008.5.1.4.1.1.481.8", "RT PLAN"),  # RT Ion Plan
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT STRUCT"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RT DOSE"),
    ("1.2.840.10008.5.1.4.1.1.481.4", "RT RECORD"),
    ("1.2.840.10008.5.1.4.1.1.481.", "RT"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "KO"),
    ("1.2.840.10008.5.1.4.1.1.88.", "SR"),
    ("1.2.840.10008.5.1.4.1.1.9.1.", "ECG"),
    ("1.2.840.10008.5.1.4.1.1.9.2.", "HAEMO"),
    ("1.2.840.10008.5.1.4.1.1.9.4.", "AUDIO"),
    ("1.2.840.10008.5.1.4.1.1.9.", "WAVEFORM"),
    ("1.2.840.10008.5.1.4.1.1.104.1", "PDF"),
    ("1.2.840.10008.5.1.4.1.1.104.", "DOCUMENT"),
    ("1.2.840.10008.5.1.4.1.1.11.", "PR"),
    ("1.2.840.10008.5.1.4.1.1.66", "SEG/REG"),
)
_MODALITY_LABELS = {"RTPLAN": "RT PLAN", "RTSTRUCT": "RT STRUCT", "RTDOSE": "RT DOSE",
                    "RTRECORD": "RT RECORD", "ECG": "ECG", "DOC": "PDF"}  # fmt: skip


def label_for(sop_class_uid: str, modality: str = "") -> str:
    """The icon label of an instance without renderable pixels."""
    for key, label in _LABELS:
        if sop_class_uid == key or (key.endswith(".") and sop_class_uid.startswith(key)):
            return label
    modality = (modality or "").strip().upper()
    return _MODALITY_LABELS.get(modality, modality[:10] or "DICOM")


def icon_png(label: str, size: int = THUMBNAIL_SIZE, note: str = "") -> bytes:
    """A square PNG icon with a large label (and a small note under it)."""
    size = max(32, int(size))
    image = Image.new("RGB", (size, size), (38, 50, 64))
    draw = ImageDraw.Draw(image)
    margin = max(2, size // 16)
    draw.rounded_rectangle(
        (margin, margin, size - margin, size - margin),
        radius=size // 10,
        outline=(150, 170, 190),
        width=max(1, size // 64),
    )
    text = (label or "DICOM")[:12]
    font_size = max(8, int(size * 0.8 / max(3, len(text)) * 1.6))
    font_size = min(font_size, size // 3)
    font = ImageFont.load_default(size=font_size)
    box = draw.textbbox((0, 0), text, font=font)
    width, height = box[2] - box[0], box[3] - box[1]
    draw.text(((size - width) / 2 - box[0], (size - height) / 2 - box[1]), text,
              font=font, fill=(235, 240, 245))  # fmt: skip
    if note:
        small = ImageFont.load_default(size=max(8, size // 14))
        nb = draw.textbbox((0, 0), note, font=small)
        draw.text(((size - (nb[2] - nb[0])) / 2 - nb[0], size - margin * 3 - (nb[3] - nb[1])),
                  note, font=small, fill=(170, 185, 200))  # fmt: skip
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _to_uint8(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64, copy=False)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.full(values.shape, 128 if high != 0 else 0, dtype=np.uint8)
    scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _grey(ds, frame: np.ndarray) -> np.ndarray:
    """Rescale (modality LUT), then the first VOI window (or VOI LUT), else min/max."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        values = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    except Exception:  # noqa: BLE001 - a broken rescale: show the stored values
        values = frame.astype(np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center = _first(ds.WindowCenter)
            width = max(_first(ds.WindowWidth), 1.0)
            return _scale_range(values, center - width / 2, center + width / 2)
        except (TypeError, ValueError):
            _log.info("unusable window centre/width; min/max used")
    elif "VOILUTSequence" in ds:
        try:
            return _to_uint8(np.asarray(apply_voi_lut(values, ds, index=0)))
        except Exception:  # noqa: BLE001 - an unusable VOI LUT: min/max
            _log.info("unusable VOI LUT; min/max used")
    return _to_uint8(values)


def _first(value) -> float:
    try:
        return float(value[0])
    except (TypeError, IndexError, KeyError):
        return float(value)


def _scale_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return _to_uint8(values)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _frame(ds) -> np.ndarray:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        ds.pixel_array_options(index=frames // 2)
    return np.asarray(ds.pixel_array)


def _image(ds) -> Image.Image:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frame = _frame(ds)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(frame, ds)
        return Image.fromarray(_to_uint8_rgb(rgb, ds), "RGB")
    if samples == 3 or (frame.ndim == 3 and frame.shape[-1] == 3):
        return Image.fromarray(_to_uint8_rgb(frame, ds), "RGB")
    if frame.ndim != 2:
        raise ValueError(f"unexpected pixel array shape {frame.shape}")
    grey = _grey(ds, frame)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey, "L")


def _to_uint8_rgb(rgb: np.ndarray, ds) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    bits = int(ds.get("BitsStored", 8) or 8)
    if rgb.dtype.kind in "ui" and bits > 8 and rgb.max() > 255:
        top = float(2**bits - 1) if rgb.max() <= 2**bits - 1 else float(rgb.max())
        return np.clip(rgb.astype(np.float64) * (255.0 / top), 0, 255).astype(np.uint8)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _fit(image: Image.Image, size: int, upscale: bool) -> Image.Image:
    width, height = image.size
    scale = size / max(width, height)
    if scale >= 1 and not upscale:
        return image
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new == image.size:
        return image
    return image.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 1 else None)


def render_png(data: bytes, size: int = THUMBNAIL_SIZE, *, upscale: bool = True) -> bytes:
    """A PNG of the instance no larger than `size` pixels (aspect kept; small images are
    scaled up to it with Lanczos when `upscale`), or a typed icon. Never raises for bad
    or unrenderable data."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
    except Exception:  # noqa: BLE001 - not DICOM: an icon, not a 500
        return icon_png("DICOM", size, "unreadable")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "")
    if not any(tag in ds for tag in _PIXEL_TAGS):
        return icon_png(label_for(sop_class, modality), size)
    try:
        image = _image(ds)
    except Exception as exc:  # noqa: BLE001 - no decoder, damaged data: an icon
        _log.warning("no image rendered: %s", type(exc).__name__)
        return icon_png(label_for(sop_class, modality), size, "no preview")
    return _png(_fit(image, size, upscale))
