"""Manifests: which instances of which cases went somewhere, each with its SHA-256.

A manifest entry is `(case_id, sop_instance_uid, sha256)`. Entries are validated and
sorted so the same content always hashes to the same `manifest_sha256`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from archive.governance._store import canonical_json, clean_text, sha256_hex, sha256_of, sop_uid
from archive.governance.errors import InvalidInputError


@dataclass(frozen=True, order=True)
class ManifestEntry:
    case_id: str
    sop_instance_uid: str
    sha256: str


def normalise(entries: Iterable[Sequence[str]]) -> list[ManifestEntry]:
    """Validate entries, refuse empty manifests and duplicated SOP instance UIDs."""
    out: dict[str, ManifestEntry] = {}
    for entry in entries:
        if isinstance(entry, ManifestEntry):
            case_id, uid, digest = entry.case_id, entry.sop_instance_uid, entry.sha256
        else:
            if len(entry) != 3:
                raise InvalidInputError(
                    "each manifest entry must be (case_id, sop_instance_uid, sha256)."
                )
            case_id, uid, digest = entry
        item = ManifestEntry(
            clean_text(case_id, "case id", max_len=128),
            sop_uid(uid),
            sha256_hex(digest, "instance sha256"),
        )
        previous = out.get(item.sop_instance_uid)
        if previous is not None and previous != item:
            raise InvalidInputError(
                "a SOP instance UID appears twice in the manifest with different content; "
                "rebuild the manifest from the archive."
            )
        out[item.sop_instance_uid] = item
    if not out:
        raise InvalidInputError("the manifest is empty; nothing would be sent.")
    return sorted(out.values())


def as_dict(entries: Sequence[ManifestEntry]) -> list[dict[str, object]]:
    """Grouped by case, in a stable order."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for e in entries:
        grouped.setdefault(e.case_id, []).append(
            {"sop_instance_uid": e.sop_instance_uid, "sha256": e.sha256}
        )
    return [{"case_id": cid, "instances": items} for cid, items in sorted(grouped.items())]


def manifest_sha256(entries: Sequence[ManifestEntry]) -> str:
    """Hash of the canonical manifest body: what a receipt must quote back."""
    return sha256_of(canonical_json(as_dict(entries)))
