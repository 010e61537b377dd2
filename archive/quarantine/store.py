"""The quarantine: held instances, encrypted under the archive's keys, with their reasons.

Held bytes are the de-identified-as-far-as-possible instance, or (when the engine
itself failed) the instance as received. Either way they are written only through the
vault's envelope encryption, so the quarantine is never identifiable data in clear.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from archive import db
from archive.errors import ArchiveError
from archive.paths import HomePaths
from archive.vault.store import EncryptedStore

CONTENT_HELD = 1

SCHEMA = [
    """
    CREATE TABLE quarantine_items (
        id TEXT PRIMARY KEY,
        received_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        intake TEXT NOT NULL,
        modality TEXT NOT NULL DEFAULT '',
        study_uid TEXT,
        patient_pseudonym TEXT,
        raw INTEGER NOT NULL DEFAULT 0,
        ingested_by TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'held',
        decided_by TEXT,
        decided_at TEXT,
        decision_note TEXT
    );
    CREATE INDEX quarantine_items_status ON quarantine_items (status);
    """,
    # Pixel review (issue 5): what held the item (engine or pixel step), the reviewer's
    # mask and its OCR result, the pixel flags; photograph consent per de-identified study.
    """
    ALTER TABLE quarantine_items ADD COLUMN kind TEXT NOT NULL DEFAULT 'deid';
    ALTER TABLE quarantine_items ADD COLUMN series_uid TEXT;
    ALTER TABLE quarantine_items ADD COLUMN sop_uid TEXT;
    ALTER TABLE quarantine_items ADD COLUMN flags TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE quarantine_items ADD COLUMN mask_regions TEXT;
    ALTER TABLE quarantine_items ADD COLUMN image_area TEXT;
    ALTER TABLE quarantine_items ADD COLUMN masked_by TEXT;
    ALTER TABLE quarantine_items ADD COLUMN ocr_words_left INTEGER;
    CREATE TABLE quarantine_consent (
        study_uid TEXT PRIMARY KEY,
        level TEXT NOT NULL,
        recorded_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    """,
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
    def from_row(cls, row: sqlite3.Row) -> QuarantineItem:
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

    def __init__(self, home: HomePaths, keyring, conn: sqlite3.Connection) -> None:
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
            "INSERT INTO quarantine_items (id, received_at, reason, intake, modality, study_uid,"
            " patient_pseudonym, raw, ingested_by, kind, series_uid, sop_uid, flags)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item_id,
                datetime.now(UTC).isoformat(timespec="seconds"),
                reason,
                intake,
                modality,
                study_uid,
                patient_pseudonym,
                int(raw),
                ingested_by,
                kind,
                series_uid,
                sop_uid,
                json.dumps(list(flags)),
            ),
        )
        return item_id

    def get(self, item_id: str) -> QuarantineItem:
        row = self.conn.execute(
            "SELECT * FROM quarantine_items WHERE id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise QuarantineError(f"No quarantine item {item_id}; see `archive quarantine list`.")
        return QuarantineItem.from_row(row)

    def list(self, status: str | None = "held") -> list[QuarantineItem]:
        if status is None:
            rows = self.conn.execute("SELECT * FROM quarantine_items ORDER BY received_at, id")
        else:
            rows = self.conn.execute(
                "SELECT * FROM quarantine_items WHERE status = ? ORDER BY received_at, id",
                (status,),
            )
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
            "UPDATE quarantine_items SET status = ?, decided_by = ?, decided_at = ?,"
            " decision_note = ? WHERE id = ? AND status = 'held'",
            (status, reviewer, datetime.now(UTC).isoformat(timespec="seconds"), note, item_id),
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
            "UPDATE quarantine_items SET mask_regions = ?, image_area = ?, masked_by = ?,"
            " ocr_words_left = ? WHERE id = ?",
            (json.dumps(regions), json.dumps(image_area), by, words_left, item_id),
        )
        return self.get(item_id)

    def record_consent(self, study_uid: str, level: str, by: str, note: str = "") -> None:
        """Photograph consent for a de-identified study (the latest record counts)."""
        self.conn.execute(
            "INSERT INTO quarantine_consent (study_uid, level, recorded_by, recorded_at, note)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO UPDATE SET level = excluded.level,"
            " recorded_by = excluded.recorded_by, recorded_at = excluded.recorded_at,"
            " note = excluded.note",
            (study_uid, level, by, datetime.now(UTC).isoformat(timespec="seconds"), note),
        )

    def consent_for(self, study_uid: str) -> str | None:
        row = self.conn.execute(
            "SELECT level FROM quarantine_consent WHERE study_uid = ?", (study_uid,)
        ).fetchone()
        return None if row is None else row["level"]

    def count(self, status: str = "held") -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM quarantine_items WHERE status = ?", (status,)
        ).fetchone()[0]
