"""The whole pixel decision for one instance: release, masked, or quarantine.

Order of the checks, and why:
1. encapsulated documents: nothing OCR can read reliably -> quarantine;
2. photographs: consent first, because a face is identifying whatever the text;
3. header reasons (is_candidate: US, NM, SC, derived/secondary images, captures, any
   BurnedInAnnotation but NO...) or a policy-listed modality: OCR reads every frame;
   CT/MR without header reasons are never OCRed, so their throughput is unchanged;
4. no text on any frame -> released unmasked (when the policy allows);
5. text -> a template that matches the header AND whose boxes hold some of the text
   masks, then OCR of the whole frame minus the boxes must find nothing; otherwise
   quarantine for a reviewer.
Any error on the way quarantines (fail closed). Reasons never quote patient values or
recognised text.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from archive.pixels.ocr import OcrUnavailable, TextHit, frames_to_read, ocr_find_text
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
    ocr: dict[str, object] = field(default_factory=dict)  # frames, words, kinds: no text


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
    ds: Dataset, policy: MaskingPolicy, template: MaskTemplate, identifiers: Sequence[str] = ()
) -> tuple[Dataset, list[TextHit]]:
    """Mask the template's regions, then OCR the whole frame minus those regions.

    The template's image area hides nothing: text left anywhere holds the instance.
    """
    masked = apply_mask(ds, template.regions)
    hits = ocr_find_text(
        masked, policy, regions_to_ignore=template.regions, identifiers=identifiers
    )
    return masked, hits


def verify_masked(
    masked: Dataset,
    policy: MaskingPolicy,
    regions: tuple[Region, ...],
    image_area: tuple[Region, ...] = (),
) -> list[TextHit]:
    """OCR a masked instance and set BurnedInAnnotation honestly from the result.

    For reviewers' ad-hoc region sets (``archive quarantine mask``): "NO" only when no
    text is left outside the masked regions and the image area the reviewer declared.
    A reviewer has looked at the image and names its clinical labels; a template, which
    nobody looks at per image, is verified over the whole frame (``_mask_and_verify``).
    """
    hits = ocr_find_text(masked, policy, regions_to_ignore=regions + image_area)
    masked.BurnedInAnnotation = "YES" if hits else "NO"
    return hits


def describe_hits(hits: Sequence[TextHit]) -> str:
    """ "N words (k match identifiers, 1 date...)": counts and kinds, never the text."""
    kinds: dict[str, int] = {}
    for hit in hits:
        if hit.kind:
            kinds[hit.kind] = kinds.get(hit.kind, 0) + 1
    words = f"{len(hits)} word{'s' if len(hits) != 1 else ''}"
    if not kinds:
        return words
    named = ", ".join(
        f"{n} {'match identifiers' if k == 'identifier' else k}" for k, n in sorted(kinds.items())
    )
    return f"{words}: {named}"


def _inside_any(hit: TextHit, regions: Sequence[Region]) -> bool:
    return any(r.contains(hit.bbox, tolerance=4) for r in regions)


def _assess(
    ds: Dataset, policy: MaskingPolicy, consent_level: str | None, identifiers: Sequence[str]
) -> PixelVerdict:
    label = policy.label
    flags: list[str] = []
    if facial_features_possible(ds, policy):
        flags.append(FACIAL_FLAG)
    report: dict[str, object] = {}

    def verdict(
        action: Action, reasons: list[str], out: Dataset | None, **kw: object
    ) -> PixelVerdict:
        return PixelVerdict(  # type: ignore[arg-type]
            action, reasons, out, flags=flags, policy=label, ocr=report, **kw
        )

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
    if not header_reasons and modality(ds) not in policy.ocr.extra_modalities:
        return verdict("release", reasons or ["no burnt-in text indicators"], ds)

    # every frame, the whole frame: what text is there, and does it look identifying?
    hits = ocr_find_text(ds, policy, identifiers=identifiers)
    report.update(
        frames=len(frames_to_read(ds, policy.ocr)),
        words=len(hits),
        kinds=sorted({h.kind for h in hits if h.kind}),
    )
    if not hits:
        if header_reasons and not policy.candidates.release_clean_candidates:
            return verdict(
                "quarantine",
                [*reasons, "OCR found no text; the policy holds such candidates for review"],
                None,
            )
        return verdict("release", [*reasons, "OCR found no text on any frame"], ds)
    reasons.append(f"OCR found text ({describe_hits(hits)})")

    template = match_template(ds, policy)
    if template is None:
        return verdict(
            "quarantine",
            [*reasons, f"burnt-in text possible, no masking template for {device_description(ds)}"],
            None,
            text_hits=hits,
        )
    if not any(_inside_any(h, template.regions) for h in hits):
        # a template whose boxes hold none of this image's text is not its layout
        return verdict(
            "quarantine",
            [*reasons, f"template {template.label} does not fit: none of its boxes holds text"],
            None,
            template=template.label,
            text_hits=hits,
        )

    masked, left = _mask_and_verify(ds, policy, template, identifiers)
    report["words_left_after_masking"] = len(left)
    if left:
        return verdict(
            "quarantine",
            [
                *reasons,
                f"text left outside the masked regions after masking with template "
                f"{template.label} ({describe_hits(left)})",
            ],
            None,
            template=template.label,
            text_hits=left,
        )
    masked.BurnedInAnnotation = "NO"
    report["masked_regions"] = [r.as_dict() for r in template.regions]
    return verdict(
        "masked",
        [*reasons, f"masked with template {template.label}; OCR found no text left"],
        masked,
        template=template.label,
    )


def assess(
    ds: Dataset,
    policy: MaskingPolicy,
    *,
    consent_level: str | None = None,
    identifiers: Sequence[str] = (),
) -> PixelVerdict:
    """Decide release / masked / quarantine for one (header-de-identified) instance.

    ``consent_level`` is the photograph consent recorded against the case, if any;
    ``identifiers`` are the instance's own identifying values from before
    de-identification (kept in memory only), so OCR words matching them are named.
    """
    try:
        return _assess(ds, policy, consent_level, identifiers)
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
