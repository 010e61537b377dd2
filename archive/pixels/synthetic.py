"""Synthetic DICOM images with text burnt in at known places (tests, benchmarks, demos).

Real instances with burnt-in text are patient data; these let tests and benchmarks
check detection and masking against ground truth without any. Fake values only.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from archive.pixels.policy import Region

SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"
US_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.3.1"
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
MR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.4"
VL_PHOTO_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.4"

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansMono-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def available_fonts() -> list[str]:
    """TrueType fonts present on this machine (Debian fonts-dejavu-core and friends)."""
    return [f for f in FONT_CANDIDATES if Path(f).is_file()]


def font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def draw_text(
    image: Image.Image,
    text: str,
    xy: tuple[int, int],
    *,
    font_path: str | None = None,
    size: int = 16,
    fill: int | tuple[int, int, int] = 255,
) -> Region:
    """Draw ``text`` at ``xy`` and return the box it covers (the ground truth)."""
    draw = ImageDraw.Draw(image)
    fnt = font(font_path, size)
    draw.text(xy, text, font=fnt, fill=fill)
    left, top, right, bottom = draw.textbbox(xy, text, font=fnt)
    return Region(int(left), int(top), int(right - left), int(bottom - top))


def ct_like(rows: int = 256, columns: int = 256) -> np.ndarray:
    """A smooth, noise-free CT-like slice (int16 HU + 1024): body ellipse, soft gradient."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = rows / 2, columns / 2
    r = np.sqrt(((y - cy) / (rows * 0.42)) ** 2 + ((x - cx) / (columns * 0.38)) ** 2)
    body = np.where(r < 1.0, 1040 + 60 * (1 - r) + 0.2 * (x - cx), 0)  # soft tissue
    bone = np.where((r > 0.85) & (r < 0.92), 800, 0)  # a ring of "cortex"
    return (body + bone).astype(np.int16)


def _base(
    modality: str, sop_class: str, rows: int, columns: int, manufacturer: str, model: str
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("synthetic", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.PatientName = "SYNTHETIC^TEST"
    ds.PatientID = "SYN0001"
    ds.Rows, ds.Columns = rows, columns
    return ds


def make_dataset(
    frames: np.ndarray,
    *,
    modality: str,
    sop_class: str,
    photometric: str,
    manufacturer: str = "Synthetic Imaging",
    model: str = "Model 1",
    jpeg: bool = False,
    multiframe: bool | None = None,
    bits_stored: int | None = None,
) -> FileDataset:
    """A DICOM instance holding ``frames`` ((frames,) rows, cols[, 3]).

    ``jpeg`` encodes each frame with Pillow (baseline, quality 90) and encapsulates it,
    as devices do; 8-bit only. RGB is then stored as YBR_FULL_422, like real JPEGs.
    """
    colour = photometric == "RGB"
    stack = frames if frames.ndim == (4 if colour else 3) else frames[np.newaxis]
    n, rows, columns = stack.shape[:3]
    if multiframe is None:
        multiframe = n > 1
    ds = _base(modality, sop_class, rows, columns, manufacturer, model)
    if multiframe:
        ds.NumberOfFrames = n
    if jpeg:
        if stack.dtype != np.uint8:
            raise ValueError("JPEG synthetic images must be 8-bit")
        encoded = []
        for frame in stack:
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG", quality=90)
            encoded.append(buf.getvalue())
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.SamplesPerPixel = 3 if colour else 1
        ds.PhotometricInterpretation = "YBR_FULL_422" if colour else "MONOCHROME2"
        if colour:
            ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.LossyImageCompression = "01"
        return ds
    ds.set_pixel_data(
        stack if multiframe else stack[0],
        photometric,
        bits_stored or stack.dtype.itemsize * 8,
        generate_instance_uid=False,
    )
    if multiframe:
        ds.NumberOfFrames = n
    return ds


def ultrasound_with_text(
    *,
    rows: int = 240,
    columns: int = 320,
    frames: int = 1,
    texts: tuple[tuple[str, tuple[int, int]], ...] = (("SMITH JOHN", (8, 6)),),
    font_path: str | None = None,
    size: int = 16,
    jpeg: bool = False,
    colour: bool = True,
    manufacturer: str = "Synthetic Imaging",
    model: str = "Sono 1",
) -> tuple[FileDataset, list[Region]]:
    """A dark ultrasound-like image (a bright wedge) with text; returns the text boxes."""
    boxes: list[Region] = []
    stack = []
    for _ in range(frames):
        image = Image.new("L", (columns, rows), 0)
        draw = ImageDraw.Draw(image)
        draw.polygon(
            [(columns // 2, rows // 4), (columns // 5, rows - 10), (4 * columns // 5, rows - 10)],
            fill=90,
        )
        boxes = [
            draw_text(image, text, xy, font_path=font_path, size=size, fill=255)
            for text, xy in texts
        ]
        arr = np.asarray(image)
        stack.append(np.stack([arr] * 3, axis=-1) if colour else arr)
    data = np.stack(stack)
    sop = US_MULTIFRAME_SOP_CLASS if frames > 1 else US_SOP_CLASS
    ds = make_dataset(
        data if frames > 1 else data[0],
        modality="US",
        sop_class=sop,
        photometric="RGB" if colour else "MONOCHROME2",
        manufacturer=manufacturer,
        model=model,
        jpeg=jpeg,
        multiframe=frames > 1,
    )
    return ds, boxes


def ct_slice(
    *,
    rows: int = 256,
    columns: int = 256,
    body_part: str = "CHEST",
    slice_thickness: float | None = 5.0,
    modality: str = "CT",
) -> FileDataset:
    """A synthetic CT (or MR) slice without any text."""
    sop = CT_SOP_CLASS if modality == "CT" else MR_SOP_CLASS
    arr = ct_like(rows, columns)
    ds = make_dataset(
        arr.astype(np.uint16),
        modality=modality,
        sop_class=sop,
        photometric="MONOCHROME2",
        bits_stored=12,
    )
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.BodyPartExamined = body_part
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    return ds


# --- a recall set for OCR: fonts, sizes, positions, contrasts, speckle backgrounds ---------

RECALL_WORDS = (
    "HARTLEY MARGARET",
    "ID 7730194",
    "DOB 14/02/1961",
    "ST WULFSTAN INFIRMARY",
    "Acc 55120983",
    "OKONKWO ADAEZE",
    "12-Mar-2024 14:22",
    "MRN PLANT-99117",
    "Dr Pemberton",
    "Tel 01632 960123",
)


def speckle(rows: int, columns: int, rng: np.random.Generator, mean: float) -> np.ndarray:
    """An ultrasound-like speckle background (Rayleigh noise smoothed a little)."""
    noise = rng.rayleigh(mean / 1.25, size=(rows, columns))
    smooth = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1) + np.roll(noise, -1, 0)) / 4
    return np.clip(smooth, 0, 255)


def recall_case(
    index: int, *, seed: int = 24, text: bool = True
) -> tuple[FileDataset, list[Region]]:
    """One synthetic frame of the OCR recall set and the boxes of the strings drawn on it.

    The case number picks the font, size (9-24 px), place (corners, bands, over the
    image), contrast (text 60-255 grey levels above or below its ground) and background
    (black, speckle, mid-grey gradient). ``text=False`` gives the same frame with no text:
    the false-positive side of the set.
    """
    rng = np.random.default_rng(seed * 1000 + index)
    fonts = available_fonts() or [None]
    rows, columns = (480, 640) if index % 3 else (600, 800)
    kind = index % 3
    if kind == 0:
        base = np.zeros((rows, columns))
    elif kind == 1:
        base = speckle(rows, columns, rng, float(rng.integers(30, 90)))
    else:
        y = np.linspace(0, 1, rows)[:, None]
        base = 60 + 90 * y + np.zeros((rows, columns))
    image = Image.fromarray(base.astype(np.uint8), mode="L")
    boxes: list[Region] = []
    if text:
        for n in range(2):
            words = RECALL_WORDS[(index + 3 * n) % len(RECALL_WORDS)]
            size = int(rng.integers(9, 25))
            font_path = fonts[int(rng.integers(0, len(fonts)))]
            contrast = int(rng.integers(60, 256))
            x = int(rng.integers(4, columns - 12 * size - 4)) if n else int(rng.integers(4, 40))
            band = rows - size - 8 if (index + n) % 2 else 4
            y = int(rng.integers(4, rows - size - 8)) if n else band
            patch = np.asarray(image)[y : y + size, x : x + 10 * size]
            ground = float(patch.mean()) if patch.size else 0.0
            fill = (
                min(255, int(ground) + contrast) if ground < 128 else max(0, int(ground) - contrast)
            )
            boxes.append(draw_text(image, words, (x, y), font_path=font_path, size=size, fill=fill))
    ds = make_dataset(
        np.asarray(image),
        modality="US",
        sop_class=US_SOP_CLASS,
        photometric="MONOCHROME2",
        jpeg=bool(index % 4 == 3),
    )
    return ds, boxes
