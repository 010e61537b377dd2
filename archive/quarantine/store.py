"""The quarantine: held instances, encrypted under the archive's keys, with their reasons.

Held bytes are the de-identified-as-far-as-possible instance, or (when the engine
itself failed) the instance as received. Either way they are written only through the
vault's envelope encryption, so the quarantine is never identifiable data in clear.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from archive import db
from archive.errors import ArchiveError
from archive.paths import HomePaths
from archive.quarantine import tables
from archive.quarantine.tables import consent, items
from archive.vault.store import EncryptedStore

CONTENT_HELD = 1

# Step 1 creates the tables as tables.py declares them now; on a home made before
# issue 27 it ran as a SQL script without the pixel-review columns, which step 2 adds
# only where they are missing.
SCHEMA: list[db.Step] = [
    db.create_tables(tables.metadata, [tables.items]),
    # Pixel review (issue 5): what held the item (engine or pixel step), the reviewer's
    # mask and its OCR result, the pixel flags; photograph consent per de-identified study.
    (
        db.add_columns(tables.items, tables.PIXEL_REVIEW_COLUMNS),
        db.create_tables(tables.metadata, [tables.consent]),
    ),
]


class QuarantineError(ArchiveError):
    """A quarantine item is missing or in the wrong state."""


@dataclass(frozen=True)
class QuarantineItem:
    id: str
    received_at: str
    reason: str
    intake: str
    modality: str
    study_uid: str | None
    patient_pseudonym: str | None
    raw: bool
    ingested_by: str
    status: str
    decided_by: str | None
    decided_at: str | None
    kind: str = "deid"  # "deid": the engine held it; "pixels": header clean, pixels held
    series_uid: str | None = None
    sop_uid: str | None = None
    flags: tuple[str, ...] = ()
    mask_regions: tuple[tuple[int, int, int, int], ...] | None = None
    image_area: tuple[tuple[int, int, int, int], ...] = ()
    masked_by: str | None = None
    ocr_words_left: int | None = None

    def as_dict(self) -> dict[str, object]:
        """For --json: no patient values live in a record (pseudonym and UIDs only)."""
        out = dict(self.__dict__)
        out["flags"] = list(self.flags)
        out["mask_regions"] = [list(r) for r in self.mask_regions or ()] or None
        out["image_area"] = [list(r) for r in self.image_area]
        return out

    @classmethod
    def from_row(cls, row: Any) -> QuarantineItem:
        return cls(
            id=row["id"],
            received_at=row["received_at"],
            reason=row["reason"],
            intake=row["intake"],
            modality=row["modality"],
            study_uid=row["study_uid"],
            patient_pseudonym=row["patient_pseudonym"],
            raw=bool(row["raw"]),
            ingested_by=row["ingested_by"],
            status=row["status"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            kind=row["kind"],
            series_uid=row["series_uid"],
            sop_uid=row["sop_uid"],
            flags=tuple(json.loads(row["flags"] or "[]")),
            mask_regions=(
                None
                if row["mask_regions"] is None
                else tuple(tuple(r) for r in json.loads(row["mask_regions"]))
            ),
            image_area=tuple(tuple(r) for r in json.loads(row["image_area"] or "[]")),
            masked_by=row["masked_by"],
            ocr_words_left=row["ocr_words_left"],
        )


class QuarantineStore:
    """Encrypted held instances plus their records in the archive database."""

    def __init__(self, home: HomePaths, keyring, conn: Any) -> None:
        self.files = EncryptedStore(home.quarantine_dir, keyring)
        self.conn = conn
        db.migrate(conn, "quarantine", SCHEMA)

    def hold(
        self,
        data: bytes,
        reason: str,
        *,
        raw: bool,
        intake: str,
        modality: str = "",
        study_uid: str | None = None,
        patient_pseudonym: str | None = None,
        ingested_by: str = "",
        kind: str = "deid",
        series_uid: str | None = None,
        sop_uid: str | None = None,
        flags: list[str] | tuple[str, ...] = (),
    ) -> str:
        """Encrypt and record one instance; the file is written before the record."""
        if kind not in ("deid", "pixels") or (raw and kind != "deid"):
            raise QuarantineError(f"unknown quarantine kind {kind!r}")
        item_id = "q-" + secrets.token_hex(12)
        self.files.write(item_id, CONTENT_HELD, data)
        self.conn.execute(
            insert(items).values(
                id=item_id,
                received_at=datetime.now(UTC).isoformat(timespec="seconds"),
                reason=reason,
                intake=intake,
                modality=modality,
                study_uid=study_uid,
                patient_pseudonym=patient_pseudonym,
                raw=int(raw),
                ingested_by=ingested_by,
                kind=kind,
                series_uid=series_uid,
                sop_uid=sop_uid,
                flags=json.dumps(list(flags)),
            )
        )
        return item_id

    def get(self, item_id: str) -> QuarantineItem:
        row = self.conn.execute(select(items).where(items.c.id == item_id)).fetchone()
        if row is None:
            raise QuarantineError(f"No quarantine item {item_id}; see `archive quarantine list`.")
        return QuarantineItem.from_row(row)

    def list(self, status: str | None = "held") -> list[QuarantineItem]:
        statement = select(items).order_by(items.c.received_at, items.c.id)
        if status is not None:
            statement = statement.where(items.c.status == status)
        rows = self.conn.execute(statement)
        return [QuarantineItem.from_row(row) for row in rows]

    def read(self, item_id: str) -> bytes:
        self.get(item_id)
        return self.files.read(item_id, CONTENT_HELD)

    def decide(self, item_id: str, status: str, reviewer: str, note: str = "") -> QuarantineItem:
        """Mark an item released or rejected; a rejected item's ciphertext is removed."""
        item = self.get(item_id)
        if item.status != "held":
            raise QuarantineError(f"Quarantine item {item_id} is already {item.status}.")
        self.conn.execute(
            update(items)
            .where(items.c.id == item_id, items.c.status == "held")
            .values(
                status=status,
                decided_by=reviewer,
                decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
                decision_note=note,
            )
        )
        if status in ("rejected", "released"):
            self.files.remove(item_id, CONTENT_HELD)
        return self.get(item_id)

    def replace_masked(
        self,
        item_id: str,
        data: bytes,
        regions: list[tuple[int, int, int, int]],
        image_area: list[tuple[int, int, int, int]],
        words_left: int,
        by: str,
    ) -> QuarantineItem:
        """Keep a reviewer's masked version (encrypted) and the OCR result on it.

        The unmasked bytes are overwritten: masking only removes information, and a
        reviewer who masked too much rejects the item rather than un-masking it.
        """
        item = self.get(item_id)
        if item.status != "held":
            raise QuarantineError(f"Quarantine item {item_id} is already {item.status}.")
        if item.kind != "pixels":
            raise QuarantineError(
                f"Quarantine item {item_id} was held for a header problem ({item.reason});"
                " masking pixels cannot fix it: reject it and fix the source."
            )
        self.files.write(item_id, CONTENT_HELD, data)
        self.conn.execute(
            update(items)
            .where(items.c.id == item_id)
            .values(
                mask_regions=json.dumps(regions),
                image_area=json.dumps(image_area),
                masked_by=by,
                ocr_words_left=words_left,
            )
        )
        return self.get(item_id)

    def record_consent(self, study_uid: str, level: str, by: str, note: str = "") -> None:
        """Photograph consent for a de-identified study (the latest record counts)."""
        statement = db.dialect_insert(self.conn, consent).values(
            study_uid=study_uid,
            level=level,
            recorded_by=by,
            recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            note=note,
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[consent.c.study_uid],
                set_={
                    name: statement.excluded[name]
                    for name in ("level", "recorded_by", "recorded_at", "note")
                },
            )
        )

    def consent_for(self, study_uid: str) -> str | None:
        return self.conn.execute(
            select(consent.c.level).where(consent.c.study_uid == study_uid)
        ).scalar()

    def count(self, status: str = "held") -> int:
        return self.conn.execute(
            select(func.count()).select_from(items).where(items.c.status == status)
        ).scalar()


# -- for other rooms (the transfer package): read-only, no rules ---------------------------


def _has_table(conn: Any, table: Any) -> bool:
    from sqlalchemy import inspect

    return inspect(conn._sa).has_table(table.name)


def released_reviews(conn: Any) -> dict[str, dict[str, str]]:
    """The review outcome of every instance a person released or masked from quarantine,
    by SOP instance UID (empty when the quarantine never held anything)."""
    if not _has_table(conn, items):
        return {}
    rows = conn.execute(
        select(
            items.c.sop_uid,
            items.c.decided_by,
            items.c.decided_at,
            items.c.reason,
            items.c.masked_by,
        ).where(items.c.sop_uid.is_not(None), items.c.status == "released")
    ).fetchall()
    return {
        str(sop): {
            "decision": "masked" if masked_by else "released",
            "reviewer": str(by or masked_by or ""),
            "decided_at": str(at or ""),
            "reason_held": str(reason or "")[:300],
        }
        for sop, by, at, reason, masked_by in rows
    }


def consent_level(conn: Any, study_uid: str) -> str:
    """The photograph consent recorded for a study, or "none"."""
    if not _has_table(conn, consent):
        return "none"
    level = conn.execute(select(consent.c.level).where(consent.c.study_uid == study_uid)).scalar()
    return str(level) if level is not None else "none"
