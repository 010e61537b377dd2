"""The renderer: every transfer syntax the archive may hold becomes a proper PNG; what has
no pixels becomes a typed icon; rescale, VOI, MONOCHROME1 and colour are applied."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from archive.render import PREVIEW_SIZE, THUMBNAIL_SIZE, icon_png, render_png
from archive.render.image import label_for
from tests.corpus import make_ct_series, make_sr_instance, to_bytes


def _file(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path).read_bytes()


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _is_icon(image: Image.Image) -> bool:
    return image.mode == "RGB" and image.getpixel((0, 0)) == (38, 50, 64)


SYNTAXES = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "image_dfl.dcm",  # deflated
    "MR_small_RLE.dcm",  # RLE
    "SC_rgb_rle.dcm",  # RLE colour
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR
    "JPGExtended.dcm",  # JPEG extended 12-bit
    "JPEG-LL.dcm",  # JPEG lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless
    "JPEG2000.dcm",  # JPEG 2000
    "US1_J2KR.dcm",  # JPEG 2000 lossless, colour
    "emri_small_jpeg_2k_lossless.dcm",  # JPEG 2000 multi-frame
    "color3d_jpeg_baseline.dcm",  # JPEG baseline multi-frame colour
    "OBXXXX1A.dcm",  # palette colour
    "RG1_UNCI.dcm",  # MONOCHROME1
]


@pytest.mark.parametrize("name", SYNTAXES)
def test_every_syntax_renders_an_image(name: str) -> None:
    data = _file(name)
    image = _png(render_png(data, THUMBNAIL_SIZE))
    assert not _is_icon(image), name
    assert max(image.size) == THUMBNAIL_SIZE
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    ratio = ds.Columns / ds.Rows
    assert abs(image.size[0] / image.size[1] - ratio) < 0.05
    pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, f"{name} rendered flat"


def test_preview_is_up_to_1024_and_keeps_detail() -> None:
    image = _png(render_png(_file("CT_small.dcm"), PREVIEW_SIZE))
    assert image.size == (PREVIEW_SIZE, PREVIEW_SIZE)
    small = _png(render_png(_file("CT_small.dcm"), PREVIEW_SIZE, upscale=False))
    assert small.size == (128, 128)


@pytest.mark.parametrize(
    ("name", "label"),
    [("rtplan.dcm", "RT PLAN"), ("waveform_ecg.dcm", "ECG")],
)
def test_no_pixels_gives_a_typed_icon(name: str, label: str) -> None:
    data = _file(name)
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    assert label_for(str(ds.get("SOPClassUID", "")), str(ds.get("Modality", ""))) == label
    image = _png(render_png(data))
    assert _is_icon(image)
    assert _png(render_png(data)).tobytes() == _png(icon_png(label)).tobytes()


def test_sr_pdf_and_garbage_give_icons() -> None:
    sr = to_bytes(make_sr_instance())
    assert _png(render_png(sr)).tobytes() == _png(icon_png("SR")).tobytes()
    assert label_for("1.2.840.10008.5.1.4.1.1.104.1") == "PDF"
    assert label_for("1.2.840.10008.5.1.4.1.1.481.3") == "RT STRUCT"
    assert _is_icon(_png(render_png(b"not a dicom file at all")))
    # Pixels that cannot be decoded (truncated): an icon, not an exception.
    ds = make_ct_series(1)[0]
    ds.PixelData = ds.PixelData[:100]
    assert _is_icon(_png(render_png(to_bytes(ds))))


def _synthetic(values: np.ndarray, **attrs) -> bytes:
    ds = make_ct_series(1, rows=values.shape[0], columns=values.shape[1])[0]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = values.astype(np.int16).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return to_bytes(ds)


def test_rescale_and_window_are_applied() -> None:
    # Stored 0..2000 with intercept -1000: HU -1000..1000. A window 0 +- 50 HU puts the
    # left half (HU < -50) black and the right part (HU > 50) white.
    ramp = np.tile(np.linspace(0, 2000, 64), (64, 1))
    data = _synthetic(ramp, RescaleIntercept="-1000", RescaleSlope="1",
                      WindowCenter="0", WindowWidth="100")  # fmt: skip
    pixels = np.asarray(_png(render_png(data, 64, upscale=False)))
    assert pixels[:, :28].max() == 0
    assert pixels[:, 36:].min() == 255
    # No window: min/max of the frame, so the ramp spans 0..255.
    plain = _synthetic(ramp)
    pixels = np.asarray(_png(render_png(plain, 64, upscale=False)))
    assert pixels[:, 0].max() < 10 and pixels[:, -1].min() > 245


def test_monochrome1_is_inverted() -> None:
    ramp = np.tile(np.linspace(0, 1000, 64), (64, 1))
    normal = np.asarray(_png(render_png(_synthetic(ramp), 64, upscale=False)))
    inverted = np.asarray(
        _png(
            render_png(_synthetic(ramp, PhotometricInterpretation="MONOCHROME1"), 64, upscale=False)
        )  # fmt: skip
    )
    assert normal[0, 0] < 10 and inverted[0, 0] > 245
    assert np.abs(normal.astype(int) + inverted.astype(int) - 255).max() <= 1


def test_multiframe_shows_the_middle_frame() -> None:
    frames = np.stack([np.full((16, 16), i * 100, dtype=np.int16) for i in range(5)])
    frames[:, 0, 0] = 0  # a black pixel, so min/max maps each frame's value to 255
    frames[:, 0, 1] = 1000
    ds = make_ct_series(1, rows=16, columns=16)[0]
    ds.NumberOfFrames = 5
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = frames.tobytes()
    pixels = np.asarray(_png(render_png(to_bytes(ds), 16, upscale=False)))
    # The middle frame (index 2) holds 200 everywhere else: (200 - 0) / 1000 of 255.
    assert abs(int(pixels[8, 8]) - round(200 / 1000 * 255)) <= 1


def test_pydicom_encoded_nm_jpeg2000_rt_plan_and_sr(tmp_path: Path) -> None:
    """Issue 22: the JPEG 2000 nuclear-medicine and RT plan thumbnails were broken icons.
    Objects made here by pydicom (not only its test files): a multi-frame 16-bit NM in
    JPEG 2000 lossless and lossy renders its middle frame sharply at every size; an RT
    plan and an SR get their typed icons."""
    from tests.corpus import make_nm_j2k, make_rt_plan

    for lossless in (True, False):
        ds = make_nm_j2k(8, lossless=lossless)
        assert ds.file_meta.TransferSyntaxUID.is_compressed
        data = to_bytes(ds)
        for size in (THUMBNAIL_SIZE, PREVIEW_SIZE):
            image = _png(render_png(data, size))
            assert not _is_icon(image) and image.size == (size, size)
            assert np.asarray(image.convert("L")).std() > 20
        # the middle frame (4 of 8), not the first: sin(x/6 + 4) differs from sin(x/6)
        middle = np.asarray(_png(render_png(data, 64, upscale=False)))
        first = ds.pixel_array[0].astype(float)
        assert np.corrcoef(middle.ravel(), first.ravel())[0, 1] < 0.9
    plan = _png(render_png(to_bytes(make_rt_plan())))
    assert plan.tobytes() == _png(icon_png("RT PLAN")).tobytes()
    assert _png(render_png(to_bytes(make_sr_instance()), PREVIEW_SIZE)).size == (
        PREVIEW_SIZE,
        PREVIEW_SIZE,
    )
