"""OCR with the real tesseract: detection, masking verification, quarantine of leftovers.

Kept few and small (each tesseract call costs ~0.1-0.5 s).
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from archive.paths import POLICIES_DIR
from archive.pixels import (
    Region,
    apply_mask,
    assess,
    define_template,
    load_masking_policy,
    ocr_find_text,
    verify_masked,
)
from archive.pixels.decode import decode_all
from archive.pixels.synthetic import (
    CT_SOP_CLASS as CT_SOP,
)
from archive.pixels.synthetic import (
    US_MULTIFRAME_SOP_CLASS as US_MF,
)
from archive.pixels.synthetic import (
    available_fonts,
    ct_slice,
    make_dataset,
    recall_case,
    ultrasound_with_text,
)

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Debian package tesseract-ocr not installed"
)

FONTS = available_fonts() or [None]
HEADER = Region(0, 0, 320, 30)
FOOTER = Region(0, 200, 320, 40)
IMAGE_AREA = Region(0, 30, 320, 170)


def _read(name: str):
    """A pydicom test file; the larger ones come from the pydicom-data package."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is in pydicom-data: pip install pydicom-data")
    return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def policy():
    return load_masking_policy(POLICIES_DIR)


def _overlaps(a: Region, b: Region) -> bool:
    return not (
        a.x + a.width <= b.x
        or b.x + b.width <= a.x
        or a.y + a.height <= b.y
        or b.y + b.height <= a.y
    )


def _with_template(policy, *regions: Region, image_area=(IMAGE_AREA,)):
    template = define_template(
        "synthetic-sono1-us-240x320",
        "Synthetic Imaging",
        "Sono 1",
        240,
        320,
        "US",
        list(regions),
        image_area=list(image_area),
    )
    return dataclasses.replace(policy, templates=(template,))


@pytest.mark.parametrize(
    "font_index, size, jpeg",
    [(0, 12, False), (1, 16, True), (2, 11, True), (3, 20, False)],
)
def test_ocr_finds_drawn_text_where_it_was_drawn(policy, font_index, size, jpeg):
    ds, boxes = ultrasound_with_text(
        texts=(("SMITH JOHN", (8, 6)), ("4417023 DOB", (170, 205))),
        font_path=FONTS[font_index % len(FONTS)],
        size=size,
        jpeg=jpeg,
    )
    hits = ocr_find_text(ds, policy)
    assert hits, "no text found"
    for box in boxes:  # every drawn string is found ...
        assert any(_overlaps(h.bbox, box) for h in hits), box
    for hit in hits:  # ... and nothing else
        assert any(_overlaps(hit.bbox, box) for box in boxes), hit
        assert hit.confidence >= policy.ocr.min_confidence


def test_ocr_does_not_flag_a_plain_ct_like_gradient(policy):
    assert ocr_find_text(ct_slice(rows=256, columns=256), policy) == []


def test_ignored_regions_hide_hits_inside_them(policy):
    ds, boxes = ultrasound_with_text(texts=(("SMITH JOHN", (8, 6)),), size=16)
    assert ocr_find_text(ds, policy)
    assert ocr_find_text(ds, policy, regions_to_ignore=[HEADER]) == []


def test_template_masks_and_release_is_verified(policy):
    ds, _ = ultrasound_with_text(
        texts=(("SMITH JOHN", (8, 6)), ("ID 4417023", (150, 210))), size=14
    )
    verdict = assess(ds, _with_template(policy, HEADER, FOOTER))
    assert verdict.action == "masked", verdict.reasons
    assert verdict.template == "synthetic-sono1-us-240x320@v1"
    out = verdict.dataset
    assert out.BurnedInAnnotation == "NO"
    before, _ = decode_all(ds)
    after, _ = decode_all(out)
    outside = np.ones(before.shape[1:3], dtype=bool)
    for r in (HEADER, FOOTER):
        outside[r.y : r.y + r.height, r.x : r.x + r.width] = False
    assert np.array_equal(before[:, outside], after[:, outside])
    assert (after[:, ~outside] == 0).all()


def test_text_outside_the_template_quarantines(policy):
    ds, _ = ultrasound_with_text(
        texts=(("SMITH JOHN", (8, 6)), ("ID 4417023", (150, 210))), size=14
    )
    verdict = assess(ds, _with_template(policy, HEADER))  # footer text is left
    assert verdict.action == "quarantine"
    assert verdict.dataset is None
    assert "text left outside the masked regions" in verdict.reasons[-1]
    assert "4417023" not in " ".join(verdict.reasons)
    assert verdict.text_hits and all(h.bbox.y >= 200 for h in verdict.text_hits)


def test_multiframe_jpeg_all_frames_masked_and_verified(policy):
    ds, _ = ultrasound_with_text(frames=4, jpeg=True, texts=(("SMITH JOHN", (8, 6)),), size=14)
    verdict = assess(ds, _with_template(policy, HEADER))
    assert verdict.action == "masked", verdict.reasons
    out = verdict.dataset
    assert out.NumberOfFrames == 4 and not out.file_meta.TransferSyntaxUID.is_compressed
    assert (decode_all(out)[0][:, :30] == 0).all()


def test_pydicom_ultrasound_masked_with_repository_template(policy):
    raw = _read("US1_UNCR.dcm")
    assert len(ocr_find_text(raw, policy)) >= 10  # the header band is full of text
    for name in ("US1_UNCR.dcm", "US1_J2KR.dcm"):
        ds = _read(name)
        verdict = assess(ds, policy)
        assert verdict.action == "masked", (name, verdict.reasons)
        assert verdict.template == "ge-logiq700-us-480x640@v1"
        assert verdict.dataset.BurnedInAnnotation == "NO"


def test_verify_masked_sets_burned_in_annotation_honestly(policy):
    ds, _ = ultrasound_with_text(
        texts=(("SMITH JOHN", (8, 6)), ("ID 4417023", (150, 210))), size=14
    )
    partly = apply_mask(ds, [HEADER])
    assert verify_masked(partly, policy, (HEADER,))
    assert partly.BurnedInAnnotation == "YES"
    fully = apply_mask(ds, [HEADER, FOOTER])
    assert verify_masked(fully, policy, (HEADER, FOOTER)) == []
    assert fully.BurnedInAnnotation == "NO"


def test_policy_listed_modality_is_screened_by_ocr(policy):
    ds, _ = ultrasound_with_text(texts=(("SMITH JOHN", (8, 6)),), size=16, colour=False)
    xa = make_dataset(
        decode_all(ds)[0][0],
        modality="XA",
        sop_class="1.2.840.10008.5.1.4.1.1.12.1",
        photometric="MONOCHROME2",
    )
    verdict = assess(xa, policy)
    assert verdict.action == "quarantine"
    assert any(r.startswith("OCR found text") for r in verdict.reasons)
    blank = make_dataset(
        np.full((240, 320), 40, np.uint8),
        modality="XA",
        sop_class="1.2.840.10008.5.1.4.1.1.12.1",
        photometric="MONOCHROME2",
    )
    assert assess(blank, policy).action == "release"


# --- issue 24: the whole frame, every frame, text-free candidates released -----------------


def test_text_in_the_template_image_area_is_no_longer_ignored(policy):
    # the old check ignored the template's image area, so this label stayed legible
    ds, _ = ultrasound_with_text(
        texts=(("SMITH JOHN", (8, 6)), ("WULFSTAN 4417023", (90, 120))), size=16
    )
    verdict = assess(ds, _with_template(policy, HEADER, FOOTER))
    assert verdict.action == "quarantine", verdict.reasons
    assert "text left outside the masked regions" in verdict.reasons[-1]
    assert "WULFSTAN" not in " ".join(verdict.reasons)


def test_text_free_ultrasound_released_unmasked_even_with_a_template(policy):
    ds, _ = ultrasound_with_text(texts=())
    verdict = assess(ds, _with_template(policy, HEADER, FOOTER))
    assert verdict.action == "release", verdict.reasons
    assert verdict.dataset is ds  # nothing blacked out
    assert verdict.reasons[-1] == "OCR found no text on any frame"


def test_template_whose_boxes_hold_no_text_does_not_fit(policy):
    ds, _ = ultrasound_with_text(texts=(("SMITH JOHN", (100, 120)),), size=16)
    verdict = assess(ds, _with_template(policy, HEADER, FOOTER))
    assert verdict.action == "quarantine"
    assert "does not fit: none of its boxes holds text" in verdict.reasons[-1]


def test_template_matches_on_sop_class_and_photometric(policy):
    ds, _ = ultrasound_with_text(texts=(("SMITH JOHN", (8, 6)),), size=14)
    template = define_template(
        "synthetic-mono-only",
        "Synthetic Imaging",
        "Sono 1",
        240,
        320,
        "US",
        [HEADER],
        photometric=("MONOCHROME2",),
    )
    other = dataclasses.replace(policy, templates=(template,))
    verdict = assess(ds, other)  # the synthetic image is RGB
    assert verdict.action == "quarantine"
    assert "no masking template" in verdict.reasons[-1]


def test_every_frame_is_read_not_a_sample(policy):
    # text on frame 5 of 7 only: sampling first/middle/last missed it
    frames = []
    for i in range(7):
        ds, _ = ultrasound_with_text(
            texts=(("SMITH JOHN", (40, 100)),) if i == 4 else (), colour=False
        )
        frames.append(decode_all(ds)[0][0])
    cine = make_dataset(np.stack(frames), modality="US", sop_class=US_MF, photometric="MONOCHROME2")
    verdict = assess(cine, policy)
    assert verdict.action == "quarantine", verdict.reasons
    assert verdict.ocr["frames"] == 7


def test_ocr_words_matching_identifiers_and_patterns_are_named(policy):
    ds, _ = ultrasound_with_text(
        texts=(("MARIGOLD PLANTAGENET", (8, 6)), ("Tel 01632 960 123", (8, 200))), size=16
    )
    hits = ocr_find_text(ds, policy, identifiers=["PLANTAGENET^MARIGOLD"])
    kinds = {h.kind for h in hits}
    assert "identifier" in kinds and "phone number" in kinds, hits


def test_derived_screen_capture_filed_as_ct_is_read(policy):
    ds, _ = ultrasound_with_text(texts=(("DLP 412 mGycm SMITH", (10, 100)),), colour=False)
    ct = make_dataset(
        decode_all(ds)[0][0], modality="CT", sop_class=CT_SOP, photometric="MONOCHROME2"
    )
    ct.ImageType = ["DERIVED", "SECONDARY"]
    verdict = assess(ct, policy)
    assert verdict.action == "quarantine", verdict.reasons
    assert any(r.startswith("OCR found text") for r in verdict.reasons)


def test_smoothed_passes_read_text_on_speckle_that_one_threshold_misses(policy):
    # recall-set frames 7 and 10: legible text on speckle the earlier passes missed
    def found(pol, index):
        ds, boxes = recall_case(index)
        hits = ocr_find_text(ds, pol)
        return all(any(_overlaps(h.bbox, b) for h in hits) for b in boxes)

    old = dataclasses.replace(policy, ocr=dataclasses.replace(policy.ocr, smoothed_passes=False))
    assert policy.ocr.smoothed_passes
    assert found(policy, 10) and found(policy, 7)
    assert not (found(old, 10) and found(old, 7))
    clean, _ = recall_case(10, text=False)
    assert ocr_find_text(clean, policy) == []
