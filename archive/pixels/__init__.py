"""Pixels: burnt-in text, masking templates, photograph consent, facial-features flag.

Plain Python (no Orthanc): ingest calls ``assess`` on each header-de-identified
instance; the quarantine review uses ``render_preview``, ``apply_mask``,
``verify_masked``, ``define_template`` and ``save_template``.
"""

from archive.pixels.assess import (
    FACIAL_FLAG,
    PHOTOGRAPH_FLAG,
    PixelVerdict,
    assess,
    device_description,
    verify_masked,
)
from archive.pixels.consent import (
    allowed_uses,
    check_consent_level,
    consent_allows,
    photograph_releasable,
    required_level,
)
from archive.pixels.decode import PixelDecodeError
from archive.pixels.detect import facial_features_possible, is_candidate, is_photograph
from archive.pixels.mask import apply_mask
from archive.pixels.ocr import OcrUnavailable, TextHit, ocr_find_text, tesseract_available
from archive.pixels.policy import (
    MaskingPolicy,
    MaskTemplate,
    Region,
    define_template,
    load_masking_policy,
    match_template,
    save_template,
)
from archive.pixels.preview import render_preview

__all__ = [
    "FACIAL_FLAG",
    "PHOTOGRAPH_FLAG",
    "MaskTemplate",
    "MaskingPolicy",
    "OcrUnavailable",
    "PixelDecodeError",
    "PixelVerdict",
    "Region",
    "TextHit",
    "allowed_uses",
    "apply_mask",
    "assess",
    "check_consent_level",
    "consent_allows",
    "define_template",
    "device_description",
    "facial_features_possible",
    "is_candidate",
    "is_photograph",
    "load_masking_policy",
    "match_template",
    "ocr_find_text",
    "photograph_releasable",
    "render_preview",
    "required_level",
    "save_template",
    "tesseract_available",
    "verify_masked",
]
