"""Finding text in pixels with Debian's tesseract-ocr (run as a subprocess).

Only where text is, never what it says, leaves this module: recognised words may be a
patient's name, so TextHit carries a frame, a box and a confidence, and nothing here
logs or raises with the recognised text. If tesseract cannot run, OcrUnavailable is
raised and callers must hold the instance (fail closed).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from archive.deid import freetext
from archive.errors import ArchiveError
from archive.pixels.decode import decode_frame, frame_count, sample_frames, to_gray8
from archive.pixels.policy import MaskingPolicy, OcrSettings, Region


class OcrUnavailable(ArchiveError):
    """Tesseract is missing, failed or timed out: the pixels could not be checked."""


@dataclass(frozen=True)
class TextHit:
    """One word OCR read: frame index, box in the image's own pixels, confidence 0-100.

    ``kind`` says what the word looks like, never what it says: "identifier" when it
    matches one of the instance's own identifiers (name, ID, institution...), a
    free-text pattern's kind ("date", "phone number", "title and name", ...) when its
    line matches one (archive.deid.freetext), or "" for other text.
    """

    frame: int
    bbox: Region
    confidence: float
    kind: str = ""


def _prepare(gray: np.ndarray, settings: OcrSettings) -> tuple[Image.Image, int]:
    """Dark text on a light ground, enlarged when small: what tesseract reads best."""
    if gray.mean() < 128:  # mostly dark image (ultrasound, CT): text is light
        gray = 255 - gray
    image = Image.fromarray(gray)  # uint8 2-D: mode "L"
    scale = 1
    if max(image.size) < settings.upscale_below and settings.upscale_factor > 1:
        scale = settings.upscale_factor
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
    # a white border stops tesseract from discarding text that touches the edge
    border = 10
    framed = Image.new("L", (image.width + 2 * border, image.height + 2 * border), 255)
    framed.paste(image, (border, border))
    return framed, scale


def _run_tesseract(png: bytes, settings: OcrSettings) -> str:
    exe = shutil.which(settings.command)
    if exe is None:
        raise OcrUnavailable("OCR unavailable: tesseract not found; apt-get install tesseract-ocr")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")  # one core per call: predictable on 2 cores
    cmd = [
        exe,
        "stdin",
        "stdout",
        "-l",
        settings.language,
        "--psm",
        str(settings.page_segmentation_mode),
        "tsv",
    ]
    try:
        done = subprocess.run(
            cmd, input=png, capture_output=True, timeout=settings.timeout_seconds, env=env
        )
    except subprocess.TimeoutExpired:
        raise OcrUnavailable("OCR unavailable: tesseract timed out") from None
    except OSError as exc:
        raise OcrUnavailable(
            f"OCR unavailable: tesseract failed to start ({exc.strerror})"
        ) from None
    if done.returncode != 0:
        raise OcrUnavailable(f"OCR unavailable: tesseract exited with status {done.returncode}")
    return done.stdout.decode("utf-8", errors="replace")


def _words(tsv: str) -> Iterable[tuple[tuple[str, ...], int, int, int, int, float, str]]:
    reader = csv.reader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if not header or header[:1] != ["level"]:
        raise OcrUnavailable("OCR unavailable: tesseract returned no TSV table")
    for row in reader:
        if len(row) < 12 or row[0] != "5":  # level 5 = word
            continue
        try:
            left, top, width, height = (int(v) for v in row[6:10])
            conf = float(row[10])
        except ValueError:
            continue
        yield tuple(row[1:5]), left, top, width, height, conf, row[11]


def _identifier_tokens(identifiers: Iterable[str]) -> frozenset[str]:
    """Upper-case alphanumeric tokens (3+ characters) of the instance's identifiers."""
    tokens: set[str] = set()
    for value in identifiers:
        for token in _TOKEN.findall(str(value).upper()):
            if len(token) >= 3:
                tokens.add(token)
    return frozenset(tokens)


_TOKEN = re.compile(r"[A-Z0-9]+")


def _classify(lines: dict[tuple[str, ...], list[str]], idents: frozenset[str]):
    """kind of each line's words: identifier match first, then free-text patterns."""
    kinds: dict[tuple[str, ...], str] = {}
    for key, words in lines.items():
        text = " ".join(words)
        if idents and any(t in idents for t in _TOKEN.findall(text.upper())):
            kinds[key] = "identifier"
            continue
        found = freetext.kinds(text)
        kinds[key] = found[0] if found else ""
    return kinds


def ocr_image(
    gray: np.ndarray,
    settings: OcrSettings,
    frame: int = 0,
    identifiers: frozenset[str] = frozenset(),
) -> list[TextHit]:
    """Words in one 8-bit grey frame that pass the policy's confidence and length bars.

    Each word's ``kind`` comes from its whole line (a date or a phone number spans
    several words); the recognised text itself never leaves this function.
    """
    image, scale = _prepare(gray, settings)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    kept: list[tuple[tuple[str, ...], Region, float]] = []
    lines: dict[tuple[str, ...], list[str]] = {}
    for line, left, top, width, height, conf, text in _words(
        _run_tesseract(buf.getvalue(), settings)
    ):
        if text.strip():
            lines.setdefault(line, []).append(text)
        if conf < settings.min_confidence:
            continue
        length = sum(ch.isalnum() for ch in text)
        if length < settings.min_text_length:
            continue
        if length < 4 and conf < settings.short_word_min_confidence:
            continue
        x0 = max(0, (left - 10) // scale)
        y0 = max(0, (top - 10) // scale)
        x1 = min(gray.shape[1], -(-(left - 10 + width) // scale))
        y1 = min(gray.shape[0], -(-(top - 10 + height) // scale))
        if x1 <= x0 or y1 <= y0:
            continue
        kept.append((line, Region(x0, y0, x1 - x0, y1 - y0), conf))
    kinds = _classify(lines, identifiers) if kept else {}
    return [TextHit(frame, box, conf, kinds.get(line, "")) for line, box, conf in kept]


def _ignored(hit: TextHit, regions: Iterable[Region]) -> bool:
    return any(r.contains(hit.bbox) for r in regions)


def _smooth3(gray: np.ndarray) -> np.ndarray:
    """3x3 box mean (edges replicated): speckle averages out, text strokes stay."""
    padded = np.pad(gray.astype(np.float32), 1, mode="edge")
    rows, cols = gray.shape
    total = np.zeros((rows, cols), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            total += padded[dy : dy + rows, dx : dx + cols]
    return total / 9.0


def smoothed_extremes(gray: np.ndarray) -> list[np.ndarray]:
    """Black-on-white images of the smoothed frame's brightest and darkest pixels.

    The cut is the 99th (1st) percentile, and at least 40 grey levels from the median, so
    a frame without text gives an almost blank page rather than a field of noise.
    """
    smooth = _smooth3(gray)
    median = float(np.median(smooth))
    out = []
    bright_cut = max(float(np.percentile(smooth, 99.0)), median + 40)
    dark_cut = min(float(np.percentile(smooth, 1.0)), median - 40)
    for mask in (smooth >= bright_cut, smooth <= dark_cut):
        if mask.any():
            out.append(np.where(mask, 0, 255).astype(np.uint8))
    return out


def frames_to_read(ds: Dataset, settings: OcrSettings) -> list[int]:
    """Every frame (policy 0), or the policy's number of evenly spaced ones."""
    n = frame_count(ds)
    if settings.frames_to_sample == 0:
        return list(range(n))
    return sample_frames(n, settings.frames_to_sample)


def ocr_find_text(
    ds: Dataset,
    policy: MaskingPolicy,
    regions_to_ignore: Iterable[Region] = (),
    *,
    identifiers: Iterable[str] = (),
) -> list[TextHit]:
    """Text OCR finds on the frames of ``ds`` (every frame unless the policy samples),
    minus hits inside ignored regions. ``identifiers`` are the instance's own values
    (names, IDs...): a word matching one is marked kind "identifier".

    Raises OcrUnavailable when OCR is disabled by policy or tesseract cannot run, and
    PixelDecodeError when the pixels cannot be decoded; callers treat both as "hold".
    """
    settings = policy.ocr
    if not settings.enabled:
        raise OcrUnavailable("OCR unavailable: disabled by policy")
    ignore = tuple(regions_to_ignore)
    idents = _identifier_tokens(identifiers)
    hits: list[TextHit] = []
    seen: dict[bytes, int] = {}
    for index in frames_to_read(ds, settings):
        frame, pi = decode_frame(ds, index)
        gray = to_gray8(frame, pi)
        digest = hashlib.blake2b(gray.tobytes(), digest_size=16).digest()
        if digest in seen:  # a still cine loop: the same pixels say the same thing
            continue
        seen[digest] = index
        found = ocr_image(gray, settings, frame=index, identifiers=idents)
        # Tesseract binarises globally: bright text over mid-grey tissue can merge with
        # it. A pass on only the brightest pixels recovers such overlay text.
        for threshold in settings.bright_thresholds:
            bright = np.where(gray >= threshold, 255, 0).astype(np.uint8)
            found.extend(ocr_image(bright, settings, frame=index, identifiers=idents))
        if settings.smoothed_passes:
            for image in smoothed_extremes(gray):
                found.extend(ocr_image(image, settings, frame=index, identifiers=idents))
        for hit in found:
            if not _ignored(hit, ignore) and not any(_same_word(hit, h) for h in hits):
                hits.append(hit)
    return hits


def _same_word(a: TextHit, b: TextHit) -> bool:
    """Two passes reading the same word: same frame, boxes overlap by half or more."""
    if a.frame != b.frame:
        return False
    ax1, ay1 = a.bbox.x + a.bbox.width, a.bbox.y + a.bbox.height
    bx1, by1 = b.bbox.x + b.bbox.width, b.bbox.y + b.bbox.height
    w = min(ax1, bx1) - max(a.bbox.x, b.bbox.x)
    h = min(ay1, by1) - max(a.bbox.y, b.bbox.y)
    if w <= 0 or h <= 0:
        return False
    smaller = min(a.bbox.width * a.bbox.height, b.bbox.width * b.bbox.height)
    return w * h >= 0.5 * smaller


def tesseract_available(policy: MaskingPolicy) -> bool:
    """True when the configured tesseract binary is on PATH (for status checks)."""
    return shutil.which(policy.ocr.command) is not None
