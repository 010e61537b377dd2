"""The receiver's side: store a verified package without a second de-identification.

`import_package` takes an `OpenedPackage` (signature, manifest and every ciphertext hash
already checked) and, case by case: decrypts and checks each instance against this
archive's own policy (as a check: it may hold, never re-identify or re-hash), creates the
case under the sender's id (or a new one, mapped), keeps the teaching text that passes
the free-text check, uploads the kept instances unchanged (`upload`, with a one-time
ticket so ingest stores them as they are), holds the others in the encrypted quarantine
with the reason, reads every stored instance back from the vault to hash it, recreates
the collections and returns the receipt body. Nothing here talks to Orthanc: the CLI
passes `upload` and `stored_sha256`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from pydicom import dcmread

from archive.catalogue import Catalogue
from archive.catalogue.errors import CatalogueError
from archive.catalogue.model import LEVELS, SeriesSummary, StudySummary
from archive.deid.residual import scan_text
from archive.transfer.package import OpenedPackage, PackageRefused, sha256
from archive.vault.ledger import orthanc_id

TEXT_VRS = frozenset({"LO", "SH", "PN", "LT", "ST", "UT", "UC", "AE", "CS"})
# Coded values: CS strings are terms, not free text; UIDs and dates are expected.
SCANNED_VRS = frozenset({"LO", "SH", "PN", "LT", "ST", "UT", "UC"})


@dataclass
class Checked:
    entry: dict
    data: bytes
    header: Any
    reason: str = ""  # empty: store it


@dataclass
class ImportResult:
    items: list[dict] = field(default_factory=list)
    cases: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)
    text_held: list[dict] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(1 for i in self.items if i["outcome"] == "stored")

    @property
    def held(self) -> int:
        return sum(1 for i in self.items if i["outcome"] == "held")


@dataclass
class Receiver:
    """What the import needs of the receiving archive."""

    catalogue: Catalogue
    prefix: str
    level: str  # this archive's de-identification level
    pixel_check: Callable[[bytes, str | None], str]  # "" or the reason it would hold
    mint_ticket: Callable[[str, bytes], None]  # (sop uid, bytes): store these unchanged
    upload: Callable[[bytes], None]  # to the running archive; raises on refusal
    stored_sha256: Callable[[str, str], str | None]  # (study uid, sop uid) -> hash in vault
    hold: Callable[..., str]  # quarantine hold; returns the item id
    held_sha256: Callable[[str], str]  # item id -> hash of what the quarantine holds
    record: Callable[[dict], None]  # one imported item, for the mapping table
    editor: str
    progress: Callable[[int, int], None] = lambda done, total: None
    record_consent: Callable[[str, str], None] = lambda study_uid, level: None


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def policy_check(header: Any, case: dict, receiver: Receiver) -> str:
    """Why this archive's policy holds the instance, or "" (checks only, no changes)."""
    if _text(header, "PatientIdentityRemoved").upper() != "YES" or not _text(
        header, "DeidentificationMethod"
    ):
        return "not marked de-identified (PatientIdentityRemoved, DeidentificationMethod)"
    level = str(case.get("level", ""))
    if level not in LEVELS or LEVELS.index(level) < LEVELS.index(receiver.level):
        return (
            f"de-identified at the sender's level {level or 'unknown'}; this archive's policy "
            f"requires {receiver.level}"
        )
    for element in header.iterall():
        if element.VR in SCANNED_VRS and element.value not in (None, ""):
            values = element.value if element.VR != "PN" else [element.value]
            for value in values if isinstance(values, list | tuple) else [values]:
                hits = scan_text(str(value))
                if hits:
                    name = element.keyword or f"({element.tag.group:04X},{element.tag.elem:04X})"
                    return f"residual identifier check: {hits[0]} in {name}"
    return ""


def _check(case: dict, entry: dict, data: bytes, receiver: Receiver) -> Checked:
    header = dcmread(BytesIO(data), stop_before_pixels=True)
    if (
        _text(header, "SOPInstanceUID") != entry["sop_instance_uid"]
        or _text(header, "StudyInstanceUID") != case["study_uid"]
    ):
        raise PackageRefused(
            f"{entry['file']} is not the instance its manifest entry names; nothing more was "
            "stored: ask the sender for a new package."
        )
    reason = policy_check(header, case, receiver)
    if not reason and not entry.get("review"):  # a person already looked at reviewed ones
        consent = (case.get("consent") or {}).get("level")
        reason = receiver.pixel_check(data, None if consent in (None, "none") else consent)
    return Checked(entry, data, header, reason)


def _summary(case: dict, checked: list[Checked], level: str) -> StudySummary:
    first = checked[0].header
    series: dict[str, SeriesSummary] = {}
    counts: dict[str, int] = {}
    for c in checked:
        uid = _text(c.header, "SeriesInstanceUID")
        counts[uid] = counts.get(uid, 0) + 1
        series.setdefault(
            uid,
            SeriesSummary(
                series_uid=uid,
                modality=_text(c.header, "Modality"),
                description=_text(c.header, "SeriesDescription"),
            ),
        )
    listed = [
        SeriesSummary(s.series_uid, s.modality, s.description, counts[u]) for u, s in series.items()
    ]
    from archive.catalogue.from_orthanc import age_band

    return StudySummary(
        study_uid=case["study_uid"],
        patient_pseudonym=_text(first, "PatientID"),
        modalities=[s.modality for s in listed if s.modality],
        body_part=_text(first, "BodyPartExamined"),
        series_count=len(listed),
        instance_count=len(checked),
        age_band=age_band(_text(first, "PatientAge")),
        sex=_text(first, "PatientSex").upper() if _text(first, "PatientSex") else "",
        level=level,
        intake="rest",
        study_description=_text(first, "StudyDescription"),
        series=listed,
    )


def _case_id(case: dict, receiver: Receiver) -> tuple[str, bool]:
    """(the receiver's case id, whether it already existed for this study)."""
    cat = receiver.catalogue
    existing = cat.case_for_study(case["study_uid"])
    if existing is not None:
        return existing.case_id, True
    wanted = str(case["case_id"]).strip().upper()
    taken = cat.repo.get_case(wanted) is not None
    if not taken and not wanted.startswith(f"{receiver.prefix.upper()}-"):
        return wanted, False
    year = datetime.now(UTC).year
    return f"{receiver.prefix}-{year}-{cat.repo.next_value(f'case:{year}'):05d}", False


def _create_case(case: dict, case_id: str, checked: list[Checked], receiver: Receiver) -> None:
    cat = receiver.catalogue
    summary = _summary(case, checked, receiver.level)
    pseudonym = summary.patient_pseudonym
    facts = cat._facts(summary, orthanc_id(pseudonym, case["study_uid"]))  # noqa: SLF001
    series = facts.pop("_series")
    status = case.get("status", "available")
    if any(c.reason for c in checked) or status not in ("available", "quarantined"):
        status = "quarantined"
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with cat.repo.transaction():
        cat.repo.insert_case(
            {"case_id": case_id, **facts, "status": status, "added_at": stamp, "updated_at": stamp}
        )
        cat.repo.replace_series(case_id, series)


def _keep_text(case: dict, case_id: str, receiver: Receiver, result: ImportResult) -> None:
    """Keep every teaching field the receiver's own checks accept; list the others."""
    values = {k: v for k, v in (case.get("metadata") or {}).items() if v not in ("", [], None)}
    if not values:
        return
    try:
        receiver.catalogue.edit(case_id, values, receiver.editor)
        return
    except CatalogueError:
        pass
    for name, value in values.items():
        try:
            receiver.catalogue.edit(case_id, {name: value}, receiver.editor)
        except CatalogueError as exc:
            result.text_held.append(
                {"sender_case_id": case["case_id"], "field": name, "reason": str(exc)[:300]}
            )


def import_package(opened: OpenedPackage, receiver: Receiver) -> ImportResult:
    """Import every case of the package; see the module doc. Returns what happened."""
    result = ImportResult()
    total = opened.envelope.get("instance_count", 0)
    done = 0
    by_case: dict[str, list[Checked]] = {}
    cases = {c["case_id"]: c for c in opened.manifest["cases"]}
    current: str | None = None

    def finish(sender_id: str) -> None:
        nonlocal done
        case = cases[sender_id]
        checked = by_case.pop(sender_id, [])
        case_id, existed = _case_id(case, receiver)
        result.cases[sender_id] = case_id
        if checked and not existed:
            _create_case(case, case_id, checked, receiver)
        if not existed:
            _keep_text(case, case_id, receiver, result)
        consent = (case.get("consent") or {}).get("level")
        if consent not in (None, "", "none"):  # the consent need travels with the case
            receiver.record_consent(case["study_uid"], str(consent))
        for c in checked:
            sop = c.entry["sop_instance_uid"]
            item = {
                "sender_case_id": sender_id,
                "case_id": case_id,
                "sop_instance_uid": sop,
                "review": c.entry.get("review"),  # the sender's review outcome, kept
            }
            if c.reason:
                held = receiver.hold(
                    c.data,
                    f"transfer check: {c.reason}",
                    study_uid=case["study_uid"],
                    series_uid=_text(c.header, "SeriesInstanceUID"),
                    sop_uid=sop,
                    modality=_text(c.header, "Modality"),
                    patient_pseudonym=_text(c.header, "PatientID"),
                )
                item.update(
                    sha256=receiver.held_sha256(held), outcome="held", reason=c.reason, item=held
                )
            else:
                receiver.mint_ticket(sop, c.data)
                receiver.upload(c.data)
                stored = receiver.stored_sha256(case["study_uid"], sop)
                if stored is None:
                    raise PackageRefused(
                        f"the archive did not store instance {sop} of {sender_id}; see its log, "
                        "then import the package again (what is stored stays stored)."
                    )
                item.update(sha256=stored, outcome="stored", reason="")
            result.items.append(item)
            receiver.record(item)
            done += 1
            receiver.progress(done, total)

    for case, entry, data in opened.instances():
        if current is not None and case["case_id"] != current:
            finish(current)
        current = case["case_id"]
        by_case.setdefault(current, []).append(_check(case, entry, data, receiver))
    if current is not None:
        finish(current)
    for case_id in cases:  # cases without instances still carry teaching work
        if case_id not in result.cases:
            finish(case_id)
    _collections(opened, receiver, result)
    return result


def _collections(opened: OpenedPackage, receiver: Receiver, result: ImportResult) -> None:
    cat = receiver.catalogue
    for col in opened.manifest.get("collections", []):
        members = [result.cases[c] for c in col.get("case_ids", []) if c in result.cases]
        try:
            made = cat.create_collection(
                col.get("title", ""), col.get("description", ""), receiver.editor
            )
            if members:
                cat.add_to_collection(made.collection_id, members, receiver.editor)
        except CatalogueError as exc:
            result.text_held.append(
                {
                    "sender_case_id": "",
                    "field": f"collection {col.get('collection_id', '')}",
                    "reason": str(exc)[:300],
                }
            )
            continue
        result.collections[str(col.get("collection_id", ""))] = made.collection_id


def receipt_body(opened: OpenedPackage, result: ImportResult, keys, organisation: str) -> dict:
    return {
        "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "receiver": {
            "organisation": organisation,
            "signing_key": keys.signing_public_hex,
            "fingerprint": keys.fingerprint,
        },
        "sender_fingerprint": opened.sender.fingerprint,
        "envelope_sha256": opened.envelope_sha256,
        "manifest_sha256": opened.envelope["manifest_sha256"],
        "items": [{k: v for k, v in i.items() if k != "item"} for i in result.items],
        "cases": result.cases,
        "collections": result.collections,
        "text_held": result.text_held,
    }


__all__ = ["ImportResult", "Receiver", "import_package", "policy_check", "receipt_body", "sha256"]
