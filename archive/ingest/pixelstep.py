"""The pixel step of ingest: de-identified bytes in, bytes to store or a reason to hold.

CT and MR without any burnt-in indicator cost no parse at all when the de-identification
engine hands over the header it wrote (else one header-only parse; no pixel decode, no
OCR) and are stored byte-identical; only candidates, photographs, documents and the
pixel policy's OCR-screened modalities are parsed whole and assessed. A masked instance
is written losslessly (Explicit VR Little Endian) with BurnedInAnnotation set from the
OCR result and the Clean Pixel Data Option recorded. Any failure holds (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from io import BytesIO
from typing import Literal

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from archive.pixels import (
    PHOTOGRAPH_FLAG,
    MaskingPolicy,
    assess,
    facial_features_possible,
    is_candidate,
    is_photograph,
)
from archive.pixels.assess import FACIAL_FLAG
from archive.pixels.detect import is_document, modality
from archive.pixels.face import SliceFace, slice_face

PixelAction = Literal["release", "masked", "quarantine"]
CLEAN_PIXEL_CODE = ("113101", "Clean Pixel Data Option")


@dataclass
class PixelOutcome:
    action: PixelAction
    data: bytes | None  # what to store (None when held)
    reasons: list[str]
    flags: list[str] = field(default_factory=list)
    template: str | None = None
    assessed: bool = False  # whether the full pixel assessment ran
    ocr: dict = field(default_factory=dict)  # the OCR report: frames, words, kinds, boxes
    face: SliceFace | None = None  # the face measures of a thin CT/MR slice


def needs_pixel_check(header: Dataset, policy: MaskingPolicy) -> bool:
    """Whether the header alone shows the pixels must be looked at."""
    return bool(
        is_document(header, policy)
        or is_photograph(header, policy)
        or is_candidate(header, policy)
        or modality(header) in policy.ocr.extra_modalities
    )


def _record_masking(ds: Dataset, template: str | None) -> None:
    method = ds.get("DeidentificationMethod")
    values = [] if method is None else list(method) if not isinstance(method, str) else [method]
    values.append(f"pixels masked ({template or 'reviewer regions'})"[:64])
    ds.DeidentificationMethod = values
    codes = ds.get("DeidentificationMethodCodeSequence") or Sequence()
    if not any(getattr(item, "CodeValue", "") == CLEAN_PIXEL_CODE[0] for item in codes):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = CLEAN_PIXEL_CODE[0], "DCM"
        item.CodeMeaning = CLEAN_PIXEL_CODE[1]
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes


def encode_masked(ds: Dataset, template: str | None) -> bytes:
    """Part-10 bytes of a masked dataset (lossless, the masking recorded in the header)."""
    _record_masking(ds, template)
    ds.preamble = b"\x00" * 128
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _may_check_face(header: Dataset, policy: MaskingPolicy) -> bool:
    # stop_before_pixels drops PixelData, so ask about the header's other facts only
    rules = policy.facial
    if modality(header) not in rules.modalities:
        return False
    try:
        thickness = float(header.get("SliceThickness"))
    except (TypeError, ValueError):
        return True
    return thickness <= rules.check_thickness_mm


def check_pixels(
    data: bytes,
    policy: MaskingPolicy,
    *,
    consent_level: str | None = None,
    handed_over: bool = False,
    identifiers: Seq[str] = (),
    header: Dataset | None = None,
) -> PixelOutcome:
    """Decide one de-identified instance's pixels.

    ``handed_over``: the engine flagged a burnt-in rule; a plain "release" is then only
    accepted when the pixel policy itself saw a candidate (and let it through by policy)
    or a photograph with consent, never because the pixel policy did not look.

    ``header``: the header of ``data`` as the de-identification engine wrote it (its
    elements before the pixel data, archive/deid/raw.py); without it the header is
    parsed from ``data``. The pixels are parsed only when they are examined.
    """
    try:
        if header is None:
            header = dcmread(BytesIO(data), stop_before_pixels=True)
        if not handed_over and not needs_pixel_check(header, policy):
            flags = [FACIAL_FLAG] if facial_features_possible(header, policy) else []
            face = None
            if _may_check_face(header, policy):
                try:
                    face = slice_face(header, data=data)  # pixels read in place
                except Exception as exc:  # noqa: BLE001 - fail closed, with the reason
                    return PixelOutcome(
                        "quarantine",
                        None,
                        [f"face check could not run ({type(exc).__name__}); held for review"],
                        flags,
                    )
            return PixelOutcome("release", data, ["no burnt-in text indicators"], flags, face=face)
        ds = dcmread(BytesIO(data))
        verdict = assess(ds, policy, consent_level=consent_level, identifiers=identifiers)
        flags = list(verdict.flags)
        if verdict.action == "quarantine":
            return PixelOutcome(
                "quarantine", None, verdict.reasons, flags, verdict.template, True, verdict.ocr
            )
        if verdict.action == "masked":
            assert verdict.dataset is not None and verdict.dataset.BurnedInAnnotation == "NO"
            masked = encode_masked(verdict.dataset, verdict.template)
            return PixelOutcome(
                "masked", masked, verdict.reasons, flags, verdict.template, True, verdict.ocr
            )
        if handed_over and not (is_candidate(ds, policy) or PHOTOGRAPH_FLAG in flags):
            return PixelOutcome(
                "quarantine",
                None,
                ["burnt-in rule of the de-identification policy not covered by the pixel policy"],
                flags,
                assessed=True,
            )
        return PixelOutcome(
            "release", data, verdict.reasons, flags, verdict.template, True, verdict.ocr
        )
    except Exception as exc:  # noqa: BLE001 - fail closed; no values in the reason
        return PixelOutcome("quarantine", None, [f"pixel check failed ({type(exc).__name__})"])
