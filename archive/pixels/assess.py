"""The whole pixel decision for one instance: release, masked, or quarantine.

Order of the checks, and why:
1. encapsulated documents: nothing OCR can read reliably -> quarantine;
2. photographs: consent first, because a face is identifying whatever the text;
3. header reasons (is_candidate) or an OCR screen for policy-listed modalities;
   CT/MR without header reasons are never OCRed, so their throughput is unchanged;
4. candidates: a matching template masks, then OCR must find nothing outside the image
   area; no template -> quarantine for a reviewer.
Any error on the way quarantines (fail closed). Reasons never quote patient values or
recognised text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydicom.dataset import Dataset

from archive.pixels.consent import photograph_releasable
from archive.pixels.decode import PixelDecodeError, has_pixels
from archive.pixels.detect import (
    facial_features_possible,
    is_candidate,
    is_document,
    is_photograph,
    modality,
)
from archive.pixels.mask import apply_mask
from archive.pixels.ocr import OcrUnavailable, TextHit, ocr_find_text
from archive.pixels.policy import MaskingPolicy, MaskTemplate, Region, match_template

Action = Literal["release", "masked", "quarantine"]

FACIAL_FLAG = "facial-features-possible"
PHOTOGRAPH_FLAG = "photograph"


@dataclass
class PixelVerdict:
    """What to do with an instance's pixels and why.

    ``dataset`` is the instance to store on release (the input) or on masking (the
    masked copy); it is None on quarantine so nothing held can be released by mistake.
    """

    action: Action
    reasons: list[str]
    dataset: Dataset | None
    template: str | None = None
    flags: list[str] = field(default_factory=list)
    policy: str = ""
    text_hits: list[TextHit] = field(default_factory=list)


def _safe(value: object, default: str) -> str:
    text = "".join(ch for ch in str(value or "").strip() if ch.isprintable())
    return text[:64] if text else default


def device_description(ds: Dataset) -> str:
    """Manufacturer/model/size/modality: the key a template would need (no patient data)."""
    return "/".join(
        (
            _safe(ds.get("Manufacturer"), "unknown manufacturer"),
            _safe(ds.get("ManufacturerModelName"), "unknown model"),
            f"{ds.get('Rows', '?')}x{ds.get('Columns', '?')}",
            _safe(ds.get("Modality"), "unknown modality"),
        )
    )


def _mask_and_verify(
    ds: Dataset, policy: MaskingPolicy, template: MaskTemplate
) -> tuple[Dataset, list[TextHit]]:
    masked = apply_mask(ds, template.regions)
    ignore: tuple[Region, ...] = template.regions + template.image_area
    hits = ocr_find_text(masked, policy, regions_to_ignore=ignore)
    return masked, hits


def verify_masked(
    masked: Dataset,
    policy: MaskingPolicy,
    regions: tuple[Region, ...],
    image_area: tuple[Region, ...] = (),
) -> list[TextHit]:
    """OCR a masked instance and set BurnedInAnnotation honestly from the result.

    For reviewers' ad-hoc region sets (``archive quarantine mask``): "NO" only when no
    text is left outside the masked regions and the image area.
    """
    hits = ocr_find_text(masked, policy, regions_to_ignore=regions + image_area)
    masked.BurnedInAnnotation = "YES" if hits else "NO"
    return hits


def _assess(ds: Dataset, policy: MaskingPolicy, consent_level: str | None) -> PixelVerdict:
    label = policy.label
    flags: list[str] = []
    if facial_features_possible(ds, policy):
        flags.append(FACIAL_FLAG)

    def verdict(
        action: Action, reasons: list[str], out: Dataset | None, **kw: object
    ) -> PixelVerdict:
        return PixelVerdict(action, reasons, out, flags=flags, policy=label, **kw)  # type: ignore[arg-type]

    document = is_document(ds, policy)
    if document:
        return verdict(
            "quarantine", [f"scanned/encapsulated document ({document}) needs review"], None
        )

    photograph = is_photograph(ds, policy)
    if photograph:
        flags.append(PHOTOGRAPH_FLAG)
        minimum = policy.consent.photograph_release_minimum
        if not photograph_releasable(policy, consent_level):
            return verdict("quarantine", [f"photograph without {minimum} consent"], None)
        flags.append(f"photograph-consent:{consent_level}")

    if not has_pixels(ds):
        return verdict("release", ["no pixel data"], ds)

    header_reasons = is_candidate(ds, policy)
    reasons = list(header_reasons)
    if photograph:
        reasons.insert(0, f"{photograph} released under recorded consent")
    if not header_reasons:
        if modality(ds) not in policy.ocr.extra_modalities:
            return verdict("release", reasons or ["no burnt-in text indicators"], ds)
        hits = ocr_find_text(ds, policy)
        if not hits:
            return verdict("release", [*reasons, "OCR screen found no text"], ds)
        reasons.append(f"OCR found text ({len(hits)} words)")

    template = match_template(ds, policy)
    if template is None:
        if policy.candidates.release_clean_candidates and not any(
            r.startswith("OCR found text") for r in reasons
        ):
            if not ocr_find_text(ds, policy):
                return verdict("release", [*reasons, "OCR found no text"], ds)
        return verdict(
            "quarantine",
            [*reasons, f"burnt-in text possible, no masking template for {device_description(ds)}"],
            None,
        )

    masked, hits = _mask_and_verify(ds, policy, template)
    if hits:
        return verdict(
            "quarantine",
            [
                *reasons,
                f"text left outside the image area after masking with template "
                f"{template.label} ({len(hits)} words)",
            ],
            None,
            template=template.label,
            text_hits=hits,
        )
    masked.BurnedInAnnotation = "NO"
    return verdict(
        "masked",
        [*reasons, f"masked with template {template.label}; OCR found no text left"],
        masked,
        template=template.label,
    )


def assess(ds: Dataset, policy: MaskingPolicy, *, consent_level: str | None = None) -> PixelVerdict:
    """Decide release / masked / quarantine for one (header-de-identified) instance.

    ``consent_level`` is the photograph consent recorded against the case, if any.
    """
    try:
        return _assess(ds, policy, consent_level)
    except OcrUnavailable as exc:
        # first reason exactly "OCR unavailable" (what scripts match), then the detail
        return _held(ds, policy, ["OCR unavailable", str(exc)])
    except PixelDecodeError as exc:
        return _held(ds, policy, [str(exc)])
    except Exception as exc:  # fail closed on anything unforeseen; no values in the reason
        return _held(ds, policy, [f"pixel check failed ({type(exc).__name__})"])


def _held(ds: Dataset, policy: MaskingPolicy, reasons: list[str]) -> PixelVerdict:
    flags: list[str] = []
    try:
        if facial_features_possible(ds, policy):
            flags.append(FACIAL_FLAG)
        if is_photograph(ds, policy):
            flags.append(PHOTOGRAPH_FLAG)
    except Exception:  # noqa: S110 - flags are advisory; the verdict is already "hold"
        pass
    return PixelVerdict("quarantine", reasons, None, flags=flags, policy=policy.label)
