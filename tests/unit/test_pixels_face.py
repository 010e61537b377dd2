"""Faces from the pixel volume (issue 24): detection without labels, defacing, the proof.

A synthetic head (archive.pixels.face.synthetic_head: skull, brain, nose, lips) is
written as a neutral-labelled CT series; the face check must find the facial surface
from the pixels alone, only at rendering resolution, and the defacer must remove the
nose and lips (seen in a depth map from the front) without touching the brain.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from archive import db
from archive.deid import DeidSecrets, load_policy
from archive.ingest import IngestService, load_handover, record_flags
from archive.ingest.flags import (
    FACE_SURFACE_FLAG,
    decide_flag,
    face_holds,
    flags_for_study,
    record_face_slice,
)
from archive.paths import POLICIES_DIR
from archive.pixels import load_masking_policy
from archive.pixels.face import (
    SliceFace,
    deface,
    depth_map,
    depth_png,
    face_of_series,
    synthetic_head,
)
from archive.pixels.synthetic import CT_SOP_CLASS, ct_slice, make_dataset

PIXEL = 1.6


@pytest.fixture(scope="module")
def masking():
    return load_masking_policy(POLICIES_DIR)


def head_series(volume: np.ndarray, spacing: float, every: int = 1, neutral: bool = True):
    """CT slices of ``volume`` (HU), one in ``every``, labelled as nothing in particular."""
    study, series = generate_uid(), generate_uid()
    out = []
    for k in range(0, volume.shape[0], every):
        ds = make_dataset(
            (volume[k] + 1024).clip(0, 4095).astype(np.uint16),
            modality="CT",
            sop_class=CT_SOP_CLASS,
            photometric="MONOCHROME2",
            bits_stored=12,
        )
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelSpacing = [PIXEL, PIXEL]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, k * spacing]
        ds.SliceThickness = spacing * every
        ds.InstanceNumber = k // every + 1
        ds.SeriesDescription = "SERIES 3" if neutral else "HEAD"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        out.append(ds)
    return out


def test_neutral_labelled_thin_head_series_covers_the_face(masking):
    result = face_of_series(head_series(synthetic_head(), 2.0), masking.facial)
    assert result.covered, result.reason
    assert result.face_slices >= 10 and result.spacing_mm == pytest.approx(2.0)


def test_coarse_series_or_no_face_or_a_chest_is_not_flagged(masking):
    coarse = face_of_series(head_series(synthetic_head(), 2.0, every=3), masking.facial)
    assert not coarse.covered and "too coarse" in coarse.reason
    faceless = face_of_series(head_series(synthetic_head(face=False), 2.0), masking.facial)
    assert not faceless.covered
    chest = []
    for k in range(20):
        ds = ct_slice(rows=512, columns=512, slice_thickness=1.0)
        ds.PixelSpacing = [0.8, 0.8]
        ds.ImagePositionPatient = [0, 0, float(k)]
        chest.append(ds)
    assert not face_of_series(chest, masking.facial).covered


def test_deface_removes_nose_and_lips_and_leaves_the_brain(tmp_path):
    head = synthetic_head()
    spacing = (2.0, PIXEL, PIXEL)
    defaced, changed = deface(head, spacing, -300.0, -1000.0)
    assert changed > 0
    before, after = depth_map(head, -300.0, PIXEL), depth_map(defaced, -300.0, PIXEL)
    (tmp_path / "before.png").write_bytes(depth_png(before))
    (tmp_path / "after.png").write_bytes(depth_png(after))
    assert Image.open(tmp_path / "after.png").size == (head.shape[2], head.shape[0])
    mid = head.shape[2] // 2
    nose = slice(30, 46)  # slices of the nose (z 60-92 mm)
    lips = slice(14, 20)  # slices of the lips (z 28-40 mm)
    assert (after[nose, mid] - before[nose, mid]).min() >= 10.0  # the nose is gone
    assert (after[lips, mid] - before[lips, mid]).min() >= 5.0  # so are the lips
    top = slice(70, head.shape[0])  # the cranium above the face: not a voxel moved
    assert np.array_equal(before[top], after[top])
    brain = (head == 35.0) & (np.arange(head.shape[1])[None, :, None] > 40)
    assert np.array_equal(head[brain], defaced[brain])
    assert depth_png(before) != depth_png(after)


KEY = bytes(range(32))


def test_ingest_flags_the_face_from_pixels_and_governance_holds_it(masking, tmp_path):
    deid = load_policy(POLICIES_DIR)
    conn = db.connect(tmp_path / "a.db")
    held = []
    svc = IngestService(
        deid,
        DeidSecrets(pseudonym_key=KEY),
        lambda data, reason, **meta: held.append(reason) or "q",
        lambda event: 0,
        masking=masking,
        handover=load_handover(POLICIES_DIR, deid),
        record_flags=lambda s, se, f: record_flags(conn, s, se, f),
        record_face=lambda st, se, sop, face: record_face_slice(
            conn, st, se, sop, face, masking.facial
        ),
    )
    study = None
    for ds in head_series(synthetic_head(), 2.0):
        ds.PatientID, ds.PatientName = "FACE01", "FACE^TEST"
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        outcome = svc.process(buf.getvalue(), "dicom", "test")
        assert outcome.data is not None, outcome.reason
        study = outcome.study_uid
    assert not held
    assert FACE_SURFACE_FLAG in flags_for_study(conn, study)
    assert face_holds(conn, {"TA-1": study}, masking.facial, "export") == ["TA-1"]
    assert face_holds(conn, {"TA-1": study}, masking.facial, "share") == ["TA-1"]
    decide_flag(conn, study, FACE_SURFACE_FLAG, "reviewer", "defaced copy checked")
    assert face_holds(conn, {"TA-1": study}, masking.facial, "export") == []


def test_face_check_that_cannot_run_holds_the_slice(masking):
    from archive.ingest.pixelstep import check_pixels

    ds = head_series(synthetic_head(slices=4), 1.0)[0]
    ds.PixelData = ds.PixelData[:100]  # truncated pixels: cannot be read
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    outcome = check_pixels(buf.getvalue(), masking)
    assert outcome.action == "quarantine"
    assert outcome.reasons[0].startswith("face check could not run")


def _reference_record(conn, study, series, sop, face, rules) -> None:
    """What record_face_slice did before issue 26: the series result after every slice."""
    from archive.ingest.flags import _REPLACE_FACE_SLICE, ensure_schema, series_face_result

    ensure_schema(conn)
    row = {"study_uid": study, "series_uid": series, "sop_uid": sop, "position": face.position,
           "thickness": face.thickness, "head_sized": int(face.head_sized),
           "protrusion_mm": face.protrusion_mm}  # fmt: skip
    conn.execute(db.prepared(conn, _REPLACE_FACE_SLICE), row)
    if series_face_result(conn, study, series, rules).covered:
        record_flags(conn, study, series, [FACE_SURFACE_FLAG])


def _random_series(rng, n: int, spacing: float, face_band: tuple[int, int] | None):
    """Slices of one series (position, thickness, head, protrusion), face in a band."""
    out = []
    for k in range(n):
        in_band = face_band is not None and face_band[0] <= k < face_band[1]
        head = bool(in_band or rng.random() < 0.5)
        protrusion = float(rng.uniform(10, 30) if in_band else rng.uniform(0, 9.9))
        if not in_band and rng.random() < 0.03:  # a stray facial-looking slice
            protrusion = 12.0
        thickness = None if rng.random() < 0.1 else spacing
        out.append((f"1.2.{k}", SliceFace(k * spacing, thickness, head, protrusion)))
    return out


def test_incremental_face_record_flags_exactly_as_the_full_series_result(masking, tmp_path):
    """Issue 26: record_face_slice skips the series read when no result could change
    the flags; after every slice, the flags must be those of the full computation."""
    rules = masking.facial
    rng = np.random.default_rng(26)
    fast, slow = db.connect(tmp_path / "fast.db"), db.connect(tmp_path / "slow.db")
    cases = [
        ("thin face", _random_series(rng, 80, 0.6, (30, 70)), "in order"),
        ("thin face", _random_series(rng, 80, 0.6, (10, 60)), "shuffled"),
        ("coarse face", _random_series(rng, 40, 4.0, (5, 30)), "in order"),
        ("short face", _random_series(rng, 60, 1.0, (20, 28)), "shuffled"),
        ("no face", _random_series(rng, 60, 1.0, None), "in order"),
        ("resent", _random_series(rng, 50, 1.0, (0, 40)), "twice"),
        # facial slices 3.5 mm apart (too coarse) until slices without a face, 2.5 mm
        # apart, bring the series' spacing down: a slice with no face flags the series
        (
            "spacing",
            [(f"1.3.{k}", SliceFace(k * 3.5, 1.0, True, 20.0)) for k in range(11)]
            + [(f"1.4.{k}", SliceFace(200 + k * 2.5, 1.0, False, 0.0)) for k in range(30)],
            "in order",
        ),  # fmt: skip
    ]
    steps = []
    for i, (_name, slices, order) in enumerate(cases):
        series = f"2.25.{i}"
        if order == "shuffled":
            slices = [slices[j] for j in rng.permutation(len(slices))]
        if order == "twice":
            slices = slices[:10] + slices
        steps += [(series, sop, face) for sop, face in slices]
    # two studies' series interleaved, as concurrent senders would
    steps = [steps[j] for j in np.argsort(rng.random(len(steps)) + np.arange(len(steps)) / 40)]
    flagged_at = []
    for n, (series, sop, face) in enumerate(steps):
        record_face_slice(fast, "1.2.3", series, sop, face, rules)
        _reference_record(slow, "1.2.3", series, sop, face, rules)
        got = fast.execute("SELECT series_uid, flag FROM ingest_flags ORDER BY 1").fetchall()
        want = slow.execute("SELECT series_uid, flag FROM ingest_flags ORDER BY 1").fetchall()
        assert [tuple(r) for r in got] == [tuple(r) for r in want], f"after step {n}"
        if len(want) > len(flagged_at):
            flagged_at.append(n)
    assert len(flagged_at) >= 2, "the corpus must flag some series (else this shows nothing)"
    assert len(flagged_at) < len(cases), "and leave some unflagged"
