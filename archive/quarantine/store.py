"""The quarantine: held instances, encrypted under the archive's keys, with their reasons.

Held bytes are the de-identified-as-far-as-possible instance, or (when the engine
itself failed) the instance as received. Either way they are written only through the
vault's envelope encryption, so the quarantine is never identifiable data in clear.
"""

from __future__ import annotations

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
    """
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
    ) -> str:
        """Encrypt and record one instance; the file is written before the record."""
        item_id = "q-" + secrets.token_hex(12)
        self.files.write(item_id, CONTENT_HELD, data)
        self.conn.execute(
            "INSERT INTO quarantine_items (id, received_at, reason, intake, modality, study_uid,"
            " patient_pseudonym, raw, ingested_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def count(self, status: str = "held") -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM quarantine_items WHERE status = ?", (status,)
        ).fetchone()[0]
