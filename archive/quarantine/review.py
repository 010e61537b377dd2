"""The reviewer's steps on a held instance: preview, mask, check a release, reject.

Plain Python shared by the CLI and the plugin's release route, so the rules are the
same wherever a release is attempted: only pixel-held items (headers already clean),
a reviewer other than whoever ingested the study, photograph consent where needed, and
OCR clean outside the masked regions and the image area, checked again at release.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom import dcmread

from archive.ingest.pixelstep import encode_masked
from archive.pixels import (
    PHOTOGRAPH_FLAG,
    MaskingPolicy,
    Region,
    apply_mask,
    photograph_releasable,
    render_preview,
    verify_masked,
)
from archive.quarantine.store import QuarantineError, QuarantineItem, QuarantineStore

Box = tuple[int, int, int, int]


def parse_region(text: str) -> Box:
    """ "x,y,w,h" -> a box; one clear error otherwise."""
    parts = text.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise QuarantineError(f"region {text!r} must be x,y,width,height in pixels") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise QuarantineError(f"region {text!r} needs x,y >= 0 and a positive size")
    return (x, y, w, h)


def write_private(path: Path, data: bytes) -> Path:
    """Write a file only its owner can read (0600), refusing to overwrite anything."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def preview(store: QuarantineStore, item_id: str, frame: int = 0, max_size: int = 1024) -> bytes:
    """PNG of one frame of a held item (it may show identifiers: the caller keeps it private)."""
    item = store.get(item_id)
    if item.status != "held":
        raise QuarantineError(f"Quarantine item {item_id} is {item.status}; nothing to show.")
    ds = dcmread(BytesIO(store.read(item_id)))
    try:
        return render_preview(ds, frame=frame, max_size=max_size)
    except ValueError as exc:
        raise QuarantineError(f"cannot render item {item_id}: {exc}") from None


@dataclass(frozen=True)
class MaskResult:
    item: QuarantineItem
    words_left: int
    device: dict[str, object]  # what a template saved from these regions would match


def mask(
    store: QuarantineStore,
    policy: MaskingPolicy,
    item_id: str,
    regions: list[Box],
    image_area: list[Box],
    by: str,
) -> MaskResult:
    """Black out ``regions`` in every frame, OCR the rest, keep the masked version."""
    if not regions:
        raise QuarantineError("give at least one --region x,y,width,height to mask")
    item = store.get(item_id)
    if item.status != "held":
        raise QuarantineError(f"Quarantine item {item_id} is already {item.status}.")
    if item.kind != "pixels":
        raise QuarantineError(
            f"Quarantine item {item_id} was held for a header problem; masking cannot fix it."
        )
    ds = dcmread(BytesIO(store.read(item_id)))
    masked = apply_mask(ds, [Region(*r) for r in regions])
    hits = verify_masked(
        masked, policy, tuple(Region(*r) for r in regions), tuple(Region(*r) for r in image_area)
    )
    data = encode_masked(masked, None)
    updated = store.replace_masked(item_id, data, regions, image_area, len(hits), by)
    device = {
        "manufacturer": str(ds.get("Manufacturer") or ""),
        "model": str(ds.get("ManufacturerModelName") or ""),
        "rows": int(ds.get("Rows") or 0),
        "columns": int(ds.get("Columns") or 0),
        "modality": str(ds.get("Modality") or ""),
    }
    return MaskResult(updated, len(hits), device)


def same_person(reviewer: str, ingested_by: str) -> bool:
    """Whether the reviewer is whoever ingested ("rest:alice" or "alice" both name alice)."""
    who = reviewer.strip().casefold()
    ingester = ingested_by.strip().casefold()
    return bool(who) and (who == ingester or ingester.rpartition(":")[2] == who)


def check_release(
    store: QuarantineStore, policy: MaskingPolicy, item_id: str, reviewer: str
) -> tuple[QuarantineItem, bytes]:
    """The reviewed bytes that may be released, or QuarantineError saying why not."""
    item = store.get(item_id)
    if not reviewer.strip():
        raise QuarantineError("a release needs a named reviewer")
    if item.status != "held":
        raise QuarantineError(f"Quarantine item {item_id} is already {item.status}.")
    if item.kind != "pixels" or item.raw:
        raise QuarantineError(
            f"Quarantine item {item_id} was held for a header problem ({item.reason});"
            " it cannot be released: reject it and fix the source."
        )
    if same_person(reviewer, item.ingested_by):
        raise QuarantineError(
            f"{reviewer} ingested this study; another reviewer must release item {item_id}."
        )
    if PHOTOGRAPH_FLAG in item.flags or "photograph" in item.reason:
        level = store.consent_for(item.study_uid or "")
        if not photograph_releasable(policy, level):
            raise QuarantineError(
                f"photograph without {policy.consent.photograph_release_minimum} consent; record"
                f" it with `archive quarantine consent {item.study_uid} --level LEVEL` first."
            )
    data = store.read(item_id)
    ds = dcmread(BytesIO(data))
    if "PixelData" not in ds:
        raise QuarantineError(f"item {item_id} has no pixels OCR could check; reject it.")
    regions = tuple(Region(*r) for r in item.mask_regions or ())
    area = tuple(Region(*r) for r in item.image_area)
    before = str(ds.get("BurnedInAnnotation") or "")
    hits = verify_masked(ds, policy, regions, area)
    if hits:
        raise QuarantineError(
            f"OCR still finds {len(hits)} words outside the masked regions and image area;"
            f" mask them with `archive quarantine mask {item_id} --region ...` first."
        )
    if item.mask_regions is not None and before != "NO":
        raise QuarantineError(f"item {item_id} was masked but not verified clean; mask it again.")
    return item, data
