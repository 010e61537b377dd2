"""Faces in head series, from the pixels: detect the facial surface, deface it, render it.

Labels lie (a 1 mm head series may be called "SERIES 3"), so the check reads the
volume itself (issue 24):

- ``slice_face(ds)``: one axial slice, cheap (a quarter-resolution view): is its body a
  head-sized cross-section (width and depth in millimetres), and how far does the middle
  of its skin outline stand out in front of the outline 25 mm to each side (the nose,
  the lips and the chin do; a skull does not)? Anterior and posterior outlines are both
  read, so a flipped image is judged the same.
- ``series_face(slices, rules)``: the series covers the facial surface when enough
  slices (``min_face_extent_mm`` of height) show that protrusion at a spacing of at most
  ``max_spacing_mm``: a surface rendering could then rebuild the face (RCR guidance).
- ``deface(volume, ...)``: quickshear-style: the skin mask, a plane fitted (least
  squares, in the sagittal direction) through the cheek points of the facial slices,
  and everything of the body in front of that plane, over the facial band, set to air.
- ``depth_map(volume, ...)`` / ``depth_png``: the skin surface seen from the front,
  as a picture a reviewer (or a test) can compare before and after.

Plain numpy; no value from the patient is ever put into a reason.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset

from archive.pixels.decode import decode_frame
from archive.pixels.policy import FacialRules

AIR_HU = -1000.0
SKIN_HU = -300.0  # air/skin boundary on CT (Hounsfield units)
MR_FRACTION = 0.15  # on MR (no absolute scale): this share of the 99th percentile
SIDE_MM = 25.0  # the outline this far to each side of the midline is the reference
MID_MM = 12.0  # the midline band in which the nose/lips/chin are looked for


@dataclass(frozen=True)
class SliceFace:
    """What one axial slice says about a face (no pixel values kept)."""

    position: float  # along the slice normal, mm
    thickness: float | None
    head_sized: bool
    protrusion_mm: float  # how far the middle stands out in front of its sides


@dataclass(frozen=True)
class FaceResult:
    covered: bool  # the facial surface is in the series at rendering resolution
    reason: str
    face_slices: int
    spacing_mm: float | None
    extent_mm: float

    def as_dict(self) -> dict[str, object]:
        return {
            "covered": self.covered,
            "reason": self.reason,
            "face_slices": self.face_slices,
            "spacing_mm": self.spacing_mm,
            "extent_mm": round(self.extent_mm, 1),
        }


def _raw(ds: Dataset, tag: int) -> object:
    """An element's value without pydicom's conversion when it is still raw (the face
    check runs on every thin CT/MR slice: converting with validation costs more than the
    check). Numbers come back as text ("0.7\\0.7") or an int for US; None if absent."""
    elem = ds._dict.get(tag)  # noqa: SLF001 - read-only peek at the raw element
    if elem is None:
        return None
    value = getattr(elem, "value", None)
    if isinstance(value, bytes):
        if tag >> 16 == 0x0028 and len(value) == 2:  # US attributes of Image Pixel
            return int.from_bytes(value, "little")
        return value.decode("ascii", errors="replace").strip(" \x00")
    if value is not None and not isinstance(value, str | int | float):
        try:
            return "\\".join(str(v) for v in value)  # MultiValue
        except TypeError:
            return value
    return value


def _floats(value: object, n: int) -> list[float] | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            items = [float(v) for v in value.split("\\")]
        elif isinstance(value, int | float):
            items = [float(value)]
        else:
            items = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return items if len(items) == n else None


def _int(ds: Dataset, tag: int, default: int) -> int:
    value = _raw(ds, tag)
    try:
        return int(value) if value not in (None, "") else default  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def slice_position(ds: Dataset) -> float | None:
    """Position along the slice normal (mm), from ImagePositionPatient and orientation."""
    ipp = _floats(_raw(ds, 0x00200032), 3)
    iop = _floats(_raw(ds, 0x00200037), 6)
    if ipp is None:
        loc = _floats(_raw(ds, 0x00201041), 1)
        return loc[0] if loc else None
    if iop is None:
        return ipp[2]
    r, c = iop[:3], iop[3:]
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    return float(sum(n * p for n, p in zip(normal, ipp, strict=True)))


def pixel_spacing(ds: Dataset) -> tuple[float, float]:
    """(row, column) spacing in mm; 1 mm when the header does not say (a head is then
    judged in pixels, and 512 px is not head-sized: fail towards flagging is not
    possible without a scale, so the reason says so)."""
    values = _floats(_raw(ds, 0x00280030), 2)
    if values and values[0] > 0 and values[1] > 0:
        return values[0], values[1]
    return 1.0, 1.0


def body_mask(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """Skin and everything inside it: CT by Hounsfield units, MR by relative intensity."""
    if str(_raw(ds, 0x00080060) or "").strip().upper() == "CT":
        slope = (_floats(_raw(ds, 0x00281053), 1) or [1.0])[0] or 1.0
        intercept = (_floats(_raw(ds, 0x00281052), 1) or [0.0])[0]
        # compare stored values with the threshold brought into stored units: no copy
        return (
            frame > (SKIN_HU - intercept) / slope
            if slope > 0
            else frame * slope + intercept > SKIN_HU
        )
    top = float(np.percentile(frame, 99))
    return frame > top * MR_FRACTION if top > 0 else np.zeros(frame.shape, bool)


def _outline(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: has body, first body row (anterior), last body row (posterior)."""
    has = mask.any(axis=0)
    first = np.where(has, mask.argmax(axis=0), -1)
    last = np.where(has, mask.shape[0] - 1 - mask[::-1].argmax(axis=0), -1)
    return has, first, last


def _protrusion(profile: np.ndarray, has: np.ndarray, mid: int, half: int, side: int) -> float:
    """Rows by which the outline's middle stands in front of its two sides (>= 0)."""
    cols = profile.shape[0]
    lo, hi = max(0, mid - half), min(cols, mid + half + 1)
    band = profile[lo:hi][has[lo:hi]]
    left, right = mid - side, mid + side
    if band.size == 0 or left < 0 or right >= cols or not (has[left] and has[right]):
        return 0.0
    return float(min(profile[left], profile[right]) - band.min())


def measure_slice(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[bool, float]:
    """(head-sized, protrusion in mm) of one body mask."""
    row_mm, col_mm = spacing
    has, first, last = _outline(mask)
    if not has.any():
        return False, 0.0
    cols = np.flatnonzero(has)
    width = (cols[-1] - cols[0] + 1) * col_mm
    depth = (int(last[has].max()) - int(first[has].min()) + 1) * row_mm
    head = 100.0 <= width <= 230.0 and 100.0 <= depth <= 260.0
    if not head:
        return False, 0.0
    mid = int(round((cols[0] + cols[-1]) / 2))
    half = max(1, int(round(MID_MM / col_mm)))
    side = max(1, int(round(SIDE_MM / col_mm)))
    front = _protrusion(first, has, mid, half, side)  # smaller row = further forward
    back = _protrusion(-last, has, mid, half, side)  # a flipped image: face at the bottom
    return True, max(front, back) * row_mm


_NATIVE_LE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


def _trailing_pixels(data: bytes, size: int, explicit: bool) -> int | None:
    """Offset of the pixel values when (7FE0,0010) is the file's last element holding
    exactly ``size`` bytes (the usual layout), checked tag, VR and length; else None."""
    head = 12 if explicit else 8
    start = len(data) - size - head
    if start < 0:
        return None
    element = data[start : start + head]
    if element[:4] != b"\xe0\x7f\x10\x00":
        return None
    length = size.to_bytes(4, "little")
    if explicit and (element[4:6] not in (b"OW", b"OB") or element[8:12] != length):
        return None
    if not explicit and element[4:8] != length:
        return None
    return start + head


def _native_view(ds: Dataset, step: int, data: bytes | None = None) -> np.ndarray | None:
    """A strided view of uncompressed little-endian grey pixels, without decoding (the
    common CT/MR case); from the file's bytes when ``ds`` was read without its pixels.
    None when the general decoder is needed."""
    try:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        if syntax not in _NATIVE_LE or _int(ds, 0x00280002, 1) != 1:
            return None
        bits = _int(ds, 0x00280100, 0)
        if bits not in (8, 16) or _int(ds, 0x00280008, 1) != 1:
            return None
        signed = _int(ds, 0x00280103, 0) == 1
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        rows, cols = _int(ds, 0x00280010, 0), _int(ds, 0x00280011, 0)
        if rows <= 0 or cols <= 0:
            return None
        size = rows * cols * dtype.itemsize
        if "PixelData" in ds:
            raw, offset = ds.PixelData, 0
        elif data is not None:
            raw = data
            offset = _trailing_pixels(data, size + (size & 1), syntax == _NATIVE_LE[0])
            if offset is None:
                return None
        else:
            return None
        if len(raw) - offset < size:
            return None  # truncated: the decoder will say so
        arr = np.frombuffer(raw, dtype=dtype, count=rows * cols, offset=offset)
        arr = arr.reshape(rows, cols)
        view = arr[::step, ::step]
        stored = _int(ds, 0x00280101, bits)
        if stored < bits and not signed:
            view = view & ((1 << stored) - 1)
        return view
    except (AttributeError, TypeError, ValueError):
        return None


def slice_face(ds: Dataset, view_mm: float = 2.0, *, data: bytes | None = None) -> SliceFace:
    """One slice's face measures from a view of about ``view_mm`` pixels (a 512 x 512
    head slice at 0.5 mm is read 1 pixel in 4: cheap enough for ingest). ``ds`` may be
    a header read without pixels when ``data`` (the file's bytes) is given."""
    row_mm, col_mm = pixel_spacing(ds)
    step = max(1, int(view_mm / max(row_mm, col_mm)))
    view = _native_view(ds, step, data)
    if view is None:
        if "PixelData" not in ds and data is not None:
            ds = dcmread(BytesIO(data))
        frame, _ = decode_frame(ds, 0)
        if frame.ndim == 3:
            frame = frame.max(axis=-1)
        view = frame[::step, ::step]
    head, protrusion = measure_slice(body_mask(view, ds), (row_mm * step, col_mm * step))
    thick_values = _floats(_raw(ds, 0x00180050), 1)
    thick = thick_values[0] if thick_values else None
    return SliceFace(slice_position(ds) or 0.0, thick, head, protrusion)


def is_face_slice(face: SliceFace, rules: FacialRules) -> bool:
    """A slice series_face counts as showing a facial outline."""
    return face.head_sized and face.protrusion_mm >= rules.min_protrusion_mm


def series_face(slices: Iterable[SliceFace], rules: FacialRules) -> FaceResult:
    """Does the series cover the facial surface closely enough to render it?"""
    ordered = sorted(slices, key=lambda s: s.position)
    positions = [s.position for s in ordered]
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False) if b - a > 1e-3]
    spacing = float(np.median(gaps)) if gaps else None
    if spacing is None:
        thick = [s.thickness for s in ordered if s.thickness]
        spacing = float(np.median(thick)) if thick else None
    face = [s for s in ordered if is_face_slice(s, rules)]
    extent = _longest_run(face, spacing)
    n = len(face)
    if not face:
        return FaceResult(False, "no slice shows a facial outline", 0, spacing, 0.0)
    if spacing is None:
        return FaceResult(
            True, "facial outline present; slice spacing unknown (fail closed)", n, None, extent
        )
    if spacing > rules.max_spacing_mm:
        return FaceResult(
            False,
            f"facial outline on {n} slices, but {spacing:.1f} mm apart is too coarse to "
            f"render (over {rules.max_spacing_mm:g} mm)",
            n,
            spacing,
            extent,
        )
    if extent < rules.min_face_extent_mm:
        return FaceResult(
            False,
            f"facial outline over {extent:.0f} mm only (under {rules.min_face_extent_mm:g} mm)",
            n,
            spacing,
            extent,
        )
    return FaceResult(
        True,
        f"facial surface covered: {n} slices over {extent:.0f} mm at {spacing:.1f} mm spacing",
        n,
        spacing,
        extent,
    )


def _longest_run(face: list[SliceFace], spacing: float | None) -> float:
    """Height (mm) of the longest run of facial slices without a gap: a face is one
    stretch of the head, not scattered slices."""
    if not face:
        return 0.0
    step = spacing or 0.0
    start = prev = face[0].position
    longest = 0.0
    for s in face[1:]:
        if step and s.position - prev > 1.6 * step:
            start = s.position
        prev = s.position
        longest = max(longest, prev - start)
    return longest + step


def face_of_series(datasets: Sequence[Dataset], rules: FacialRules) -> FaceResult:
    """The face check of one CT/MR series given as datasets (``archive deid``, review)."""
    return series_face([slice_face(ds) for ds in datasets], rules)


# --- defacing and the picture that proves it ----------------------------------------------


def volume_masks(volume: np.ndarray, threshold: float) -> np.ndarray:
    """Skin-and-inside mask of a (slices, rows, columns) volume."""
    return volume > threshold


def deface(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    threshold: float,
    fill: float,
    *,
    min_protrusion_mm: float = 10.0,
    margin_mm: float = 10.0,
) -> tuple[np.ndarray, int]:
    """Remove the facial surface; returns (defaced copy, slices changed).

    ``spacing`` is (slice, row, column) in mm, rows running front to back. The plane:
    least squares through the outline 25 mm each side of the midline on every facial
    slice (front row as a function of slice position), moved 2 mm forward; every body
    voxel in front of it, over the facial band and ``margin_mm`` beyond, becomes
    ``fill`` (air). The brain, behind the plane, is untouched.
    """
    z_mm, row_mm, col_mm = spacing
    mask = volume_masks(volume, threshold)
    zs: list[float] = []
    ys: list[float] = []
    face_slices: list[int] = []
    for k in range(volume.shape[0]):
        head, protrusion = measure_slice(mask[k], (row_mm, col_mm))
        if not head or protrusion < min_protrusion_mm:
            continue
        has, first, _ = _outline(mask[k])
        cols = np.flatnonzero(has)
        mid = int(round((cols[0] + cols[-1]) / 2))
        side = max(1, int(round(SIDE_MM / col_mm)))
        for c in (mid - side, mid + side):
            if 0 <= c < has.shape[0] and has[c]:
                zs.append(k * z_mm)
                ys.append(float(first[c]))
        face_slices.append(k)
    out = volume.copy()
    if not face_slices:
        return out, 0
    if len(set(zs)) > 1:
        slope, intercept = np.polyfit(np.array(zs), np.array(ys), 1)
    else:
        slope, intercept = 0.0, float(np.mean(ys))
    forward = 2.0 / row_mm
    band = int(math.ceil(margin_mm / z_mm))
    lo, hi = max(0, min(face_slices) - band), min(volume.shape[0], max(face_slices) + band + 1)
    rows = np.arange(volume.shape[1])[:, None]
    changed = 0
    for k in range(lo, hi):
        plane_row = slope * k * z_mm + intercept - forward
        cut = (rows < plane_row) & mask[k]
        if cut.any():
            out[k][cut] = fill
            changed += 1
    return out, changed


def depth_map(volume: np.ndarray, threshold: float, row_mm: float) -> np.ndarray:
    """Distance (mm) from the front of the field to the skin, per (slice, column).

    Rows run front to back; where a line of sight meets no skin the depth is the field's
    whole depth.
    """
    mask = volume_masks(volume, threshold)
    hit = mask.any(axis=1)
    first = mask.argmax(axis=1).astype(np.float32)
    first[~hit] = volume.shape[1]
    return first * row_mm


def depth_png(depth: np.ndarray) -> bytes:
    """The depth map as a grey PNG from the front: near is bright, far is dark,
    the top of the head at the top."""
    far = float(depth.max()) or 1.0
    picture = (255.0 * (1.0 - depth / far)).clip(0, 255).astype(np.uint8)[::-1]
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


# --- a synthetic head (tests, benchmarks): a skull, a brain, a face -------------------------


def synthetic_head(
    slices: int = 90, size: int = 128, *, spacing: float = 2.0, pixel: float = 1.6, face=True
) -> np.ndarray:
    """A CT-like head volume in HU (slices, rows, columns), front at row 0, top last.

    An ellipsoid head (soft tissue), a skull shell (bone), a brain (grey matter) and,
    when ``face``, a nose (a ridge in the midline over ~45 mm) and lips (over ~18 mm)
    below the brain. Fake anatomy only: what the face check and the defacer need.
    """
    z = (np.arange(slices) * spacing)[:, None, None]
    y = (np.arange(size) * pixel)[None, :, None]
    x = (np.arange(size) * pixel)[None, None, :]
    cy, cx = size * pixel / 2, size * pixel / 2
    cz = slices * spacing * 0.55
    head = ((y - cy) / 95) ** 2 + ((x - cx) / 72) ** 2 + ((z - cz) / 110) ** 2
    vol = np.full((slices, size, size), AIR_HU, dtype=np.float32)
    vol[head < 1.0] = 40.0
    skull = (head < 0.86) & (head > 0.72)
    vol[skull] = 900.0
    brain = ((y - cy) / 80) ** 2 + ((x - cx) / 60) ** 2 + ((z - (cz + 20)) / 80) ** 2 < 0.7
    vol[brain] = 35.0
    if face:
        front = cy - 95 * np.sqrt(np.clip(1 - ((z - cz) / 110) ** 2, 0, 1))  # face surface
        nose_z = (z > cz - 50) & (z < cz - 5)
        tip = 22.0 * np.clip((z - (cz - 50)) / 45, 0, 1)  # grows downwards to the tip
        nose = nose_z & (np.abs(x - cx) < 14 - 0.5 * np.abs(x - cx)) & (y >= front - tip)
        nose &= y < front + 5
        lips_z = (z > cz - 72) & (z < cz - 56)
        lips = lips_z & (np.abs(x - cx) < 24) & (y >= front - 11) & (y < front + 5)
        vol[nose | lips] = 40.0
    return vol
