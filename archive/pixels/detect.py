"""Header-only tests: might these pixels carry text, a photograph, a face?

These are cheap (no pixel decoding) so they run on every instance; OCR, which is not
cheap, runs only where these say so or the policy lists the modality. Reasons name
the rule that fired and never a value taken from the patient.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from archive.pixels.policy import MaskingPolicy


def _upper_values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        items = [value]
    else:
        try:
            items = list(value)  # type: ignore[call-overload]
        except TypeError:
            items = [value]
    return [str(v).strip().upper() for v in items]


def modality(ds: Dataset) -> str:
    return str(ds.get("Modality") or "").strip().upper()


def sop_class(ds: Dataset) -> str:
    return str(ds.get("SOPClassUID") or "").strip()


def is_document(ds: Dataset, policy: MaskingPolicy) -> str | None:
    """Name of the encapsulated-document SOP class, if this is one."""
    return policy.candidates.document_sop_classes.get(sop_class(ds))


def is_candidate(ds: Dataset, policy: MaskingPolicy) -> list[str]:
    """Why this instance may carry burnt-in text (empty list: no header reason)."""
    rules = policy.candidates
    reasons: list[str] = []
    burned = str(ds.get("BurnedInAnnotation") or "").strip().upper()
    if burned == "YES":
        reasons.append("BurnedInAnnotation is YES")
    elif burned and burned != "NO":  # anything but an explicit NO may mean text
        reasons.append("BurnedInAnnotation is not NO")
    mod = modality(ds)
    if mod in rules.modalities:
        reasons.append(f"modality {mod} often carries burnt-in text")
    uid = sop_class(ds)
    if uid in rules.sop_classes:
        reasons.append(f"SOP class {rules.sop_classes[uid]} often carries burnt-in text")
    if uid in rules.document_sop_classes:
        reasons.append(f"scanned/encapsulated document ({rules.document_sop_classes[uid]})")
    conversion = str(ds.get("ConversionType") or "").strip().upper()
    if conversion in rules.scanned_conversion_types:
        reasons.append(f"secondary capture of a scanned document or film ({conversion})")
    elif conversion and rules.any_conversion_type:
        reasons.append(f"converted or captured image (Conversion Type {conversion[:16]})")
    image_type = _upper_values(ds.get("ImageType"))
    for value in image_type[:2]:  # value 1 ORIGINAL/DERIVED, value 2 PRIMARY/SECONDARY
        if value in rules.image_type_values:
            reasons.append(f"derived or secondary image (image type {value})")
            break
    for marker in rules.image_type_markers:
        if any(marker == v or marker in v for v in image_type):
            reasons.append(f"image type marks a capture ({marker})")
            break
    for keyword in ("SeriesDescription", "StudyDescription"):
        text = str(ds.get(keyword) or "").lower()
        for marker in rules.description_markers:
            if marker in text:
                reasons.append(f"{keyword} marks a capture ({marker})")
                break
    if any(0x6000 <= t.group <= 0x601E and t.element == 0x3000 for t in ds.keys()):
        reasons.append("overlay plane present")
    return reasons


def is_photograph(ds: Dataset, policy: MaskingPolicy) -> str | None:
    """Why this is an external photograph of the patient (None: it is not)."""
    rules = policy.photographs
    uid = sop_class(ds)
    if uid in rules.sop_classes:
        return f"photograph ({rules.sop_classes[uid]})"
    mod = modality(ds)
    if mod in rules.modalities:
        return f"photograph (modality {mod})"
    return None


def _slice_thickness(ds: Dataset) -> float | None:
    value = ds.get("SliceThickness")
    if value in (None, ""):
        # enhanced multi-frame CT/MR keep it in the functional groups
        for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            groups = ds.get(seq)
            if not groups:
                continue
            measures = groups[0].get("PixelMeasuresSequence")
            if measures and measures[0].get("SliceThickness") not in (None, ""):
                value = measures[0].SliceThickness
                break
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def is_head(ds: Dataset, policy: MaskingPolicy) -> bool:
    rules = policy.facial
    body_part = str(ds.get("BodyPartExamined") or "").strip().upper()
    if body_part in rules.body_parts:
        return True
    for keyword in ("SeriesDescription", "StudyDescription", "ProtocolName"):
        text = str(ds.get(keyword) or "").lower()
        if any(marker in text for marker in rules.description_markers):
            return True
    return False


def facial_features_possible(ds: Dataset, policy: MaskingPolicy) -> bool:
    """Thin-slice CT/MR of the head: a surface rendering could show the face."""
    rules = policy.facial
    if modality(ds) not in rules.modalities or not is_head(ds, policy):
        return False
    thickness = _slice_thickness(ds)
    if thickness is None:
        return rules.flag_when_thickness_unknown
    return thickness <= rules.max_slice_thickness_mm
