"""Masking: exactly the template's regions, every frame, any encoding in, lossless out."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from archive.pixels import PixelDecodeError, Region, apply_mask, render_preview
from archive.pixels.decode import decode_all
from archive.pixels.synthetic import (
    CT_SOP_CLASS,
    SC_SOP_CLASS,
    make_dataset,
    ultrasound_with_text,
)

REGIONS = (Region(0, 0, 40, 12), Region(20, 50, 15, 30))


def _read(name: str):
    """A pydicom test file; the larger ones come from the pydicom-data package."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is in pydicom-data: pip install pydicom-data")
    return pydicom.dcmread(path)


def _inside(shape: tuple[int, int], regions) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for r in regions:
        mask[r.y : r.y + r.height, r.x : r.x + r.width] = True
    return mask


def _roundtrip(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


def _check_exact(before: np.ndarray, after: np.ndarray, regions, fill) -> None:
    """Outside the regions nothing changed; inside, every pixel of every frame is ``fill``."""
    assert before.shape == after.shape
    inside = _inside(before.shape[1:3], regions)
    assert np.array_equal(before[:, ~inside], after[:, ~inside])
    assert (after[:, inside] == fill).all()
    assert not (before[:, inside] == fill).all()  # the test would notice a no-op


def _random(shape, dtype=np.uint8, lo=1, hi=250):
    rng = np.random.default_rng(5)
    return rng.integers(lo, hi, size=shape, dtype=dtype)


@pytest.mark.parametrize("frames", [1, 3])
def test_rgb_mask_is_exact_on_every_frame(frames):
    data = _random((frames, 96, 128, 3))
    ds = make_dataset(
        data if frames > 1 else data[0], modality="OT", sop_class=SC_SOP_CLASS, photometric="RGB"
    )
    out = _roundtrip(apply_mask(ds, REGIONS))
    after, pi = decode_all(out)
    assert pi == "RGB"
    _check_exact(data, after, REGIONS, 0)
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert out.BurnedInAnnotation == "YES"  # unverified until OCR says otherwise
    assert out.SOPInstanceUID == ds.SOPInstanceUID
    assert ("NumberOfFrames" in out) is (frames > 1)


def test_monochrome1_is_filled_with_its_brightest_value_and_mono2_with_darkest():
    data = _random((1, 64, 64), np.uint16, 100, 4000)
    for pi, fill in (("MONOCHROME1", int(data.max())), ("MONOCHROME2", int(data.min()))):
        ds = make_dataset(
            data[0], modality="CR", sop_class=SC_SOP_CLASS, photometric=pi, bits_stored=12
        )
        out = _roundtrip(apply_mask(ds, REGIONS))
        after, out_pi = decode_all(out)
        assert out_pi == pi and out.BitsStored == 12
        _check_exact(data, after, REGIONS, fill)


def test_signed_ct_pixels_keep_their_representation():
    data = _random((1, 64, 64), np.int16, -1024, 2000)
    ds = make_dataset(data[0], modality="CT", sop_class=CT_SOP_CLASS, photometric="MONOCHROME2")
    out = _roundtrip(apply_mask(ds, REGIONS))
    assert out.PixelRepresentation == 1
    _check_exact(data, decode_all(out)[0], REGIONS, int(data.min()))


def test_jpeg_multiframe_is_decoded_masked_and_stored_losslessly():
    ds, _ = ultrasound_with_text(frames=3, jpeg=True)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    before, _ = decode_all(ds)  # what a viewer of the JPEG would see, as RGB
    out = _roundtrip(apply_mask(ds, REGIONS))
    assert not out.file_meta.TransferSyntaxUID.is_compressed
    assert out.PhotometricInterpretation == "RGB" and out.PlanarConfiguration == 0
    assert out.LossyImageCompression == "01"  # it was lossy once; that stays recorded
    assert out.NumberOfFrames == 3
    _check_exact(before, decode_all(out)[0], REGIONS, 0)


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG, YBR_FULL
        "SC_ybr_full_422_uncompressed.dcm",  # subsampled YBR, native
        "SC_rgb_rle_2frame.dcm",  # RLE, two frames
        "US1_J2KR.dcm",  # JPEG 2000 lossless, YBR_RCT
        "examples_palette.dcm",  # palette colour -> RGB
        "JPEG2000.dcm",  # JPEG 2000 grey, 16-bit signed
    ],
)
def test_pydicom_test_files_mask_exactly(name):
    ds = _read(name)
    before, pi = decode_all(ds)
    out = _roundtrip(apply_mask(ds, REGIONS))
    after, out_pi = decode_all(out)
    assert out_pi == pi
    fill = 0 if pi == "RGB" else int(before.min())
    _check_exact(before, after, REGIONS, fill)
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert out.Rows == ds.Rows and out.Columns == ds.Columns
    assert out.SamplesPerPixel == (3 if pi == "RGB" else 1)
    for stale in ("RedPaletteColorLookupTableData", "ICCProfile"):
        assert stale not in out


def test_icon_and_overlays_are_dropped():
    data = _random((1, 32, 32))
    ds = make_dataset(data[0], modality="OT", sop_class=SC_SOP_CLASS, photometric="MONOCHROME2")
    icon = Dataset()
    icon.Rows = icon.Columns = 4
    ds.IconImageSequence = [icon]
    ds.add_new(0x60003000, "OW", b"\xff" * 128)
    ds.add_new(0x60000010, "US", 32)
    out = apply_mask(ds, [Region(0, 0, 4, 4)])
    assert "IconImageSequence" not in out
    assert not [t for t in out.keys() if t.group == 0x6000]
    assert "IconImageSequence" in ds  # the input is left alone


def test_regions_clipped_to_image_and_input_unchanged():
    data = _random((1, 32, 32, 3))
    ds = make_dataset(data[0], modality="OT", sop_class=SC_SOP_CLASS, photometric="RGB")
    original = ds.PixelData
    out = apply_mask(ds, [Region(24, 24, 100, 100)])
    _check_exact(data, decode_all(out)[0], [Region(24, 24, 8, 8)], 0)
    assert ds.PixelData == original


def test_big_endian_refused():
    ds = _read("MR_small_bigendian.dcm")
    with pytest.raises(PixelDecodeError):
        apply_mask(ds, REGIONS)


def test_render_preview_is_a_png_within_bounds():
    ds = _read("US1_UNCR.dcm")
    png = render_preview(ds, max_size=200)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and max(image.size) == 200 and image.mode == "RGB"
    ct = _read("CT_small.dcm")
    assert Image.open(io.BytesIO(render_preview(ct))).size == (128, 128)
    with pytest.raises(ValueError, match="frame"):
        render_preview(ds, frame=1)
