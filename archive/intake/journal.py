"""The intake journal: what was seen, what the archive confirmed, what was deleted.

Keyed by (path key, size, mtime, sha256): the path is kept only as a SHA-256 (a file
name can carry a patient's name), and the content hash makes duplicates idempotent: a
file whose bytes the archive already confirmed is deleted without another upload.
Tables live in the archive database (room "intake", on the encrypted data volume).

Crash windows, and why each is safe:
- killed before the upload answer is recorded -> the file is still there and is
  uploaded again; Orthanc answers AlreadyStored (de-identified UIDs are deterministic);
- killed after "confirmed" but before the unlink -> the next run finds the hash
  confirmed and deletes the source without uploading.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from base64 import b32encode
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archive.config import ArchiveConfig
from archive.db import connect, migrate, open_database

STEPS = [
    """
    CREATE TABLE intake_sources (
        id INTEGER PRIMARY KEY,
        path_key TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        state TEXT NOT NULL,          -- seen | confirmed | deleted | rejected | denied | retry
        outcome TEXT,                 -- stored | already | held | duplicate
        attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        first_seen TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (path_key, size, mtime_ns, sha256)
    );
    CREATE INDEX intake_sources_sha ON intake_sources (sha256);
    CREATE TABLE intake_content (
        sha256 TEXT PRIMARY KEY,
        outcome TEXT NOT NULL,
        confirmed_at TEXT NOT NULL
    );
    """
]


def path_key(path: Path | str) -> str:
    """The journal's name for a path: a hash, never the name itself."""
    return hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()


def label(hex_digest: str) -> str:
    """A short audit-safe label of a hash (base32: no long digit runs for the audit guard)."""
    return b32encode(bytes.fromhex(hex_digest)[:10]).decode().lower()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Entry:
    id: int
    path_key: str
    size: int
    mtime_ns: int
    sha256: str
    state: str
    outcome: str | None
    attempts: int


class Journal:
    """Thread-safe access to the intake tables through one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        migrate(conn, "intake", STEPS)

    @classmethod
    def open(cls, db_path: Path | ArchiveConfig) -> Journal:
        """The journal in the archive database: a SQLite path, or the configuration
        (then SQLite or PostgreSQL as [database] says)."""
        conn = open_database(db_path) if isinstance(db_path, ArchiveConfig) else connect(db_path)
        # WAL + NORMAL survives a killed process; a power cut may lose the last marks,
        # which only costs a harmless re-upload (AlreadyStored). Measured: FULL halves
        # watch-folder throughput on this hardware.
        conn.execute("PRAGMA synchronous=NORMAL")
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    def _row(self, row: sqlite3.Row) -> Entry:
        return Entry(
            row["id"],
            row["path_key"],
            row["size"],
            row["mtime_ns"],
            row["sha256"],
            row["state"],
            row["outcome"],
            row["attempts"],
        )

    def record(self, key: str, size: int, mtime_ns: int, sha256: str) -> Entry:
        """The entry of this exact file version, created on first sight."""
        with self._lock:
            now = _now()
            self.conn.execute(
                "INSERT OR IGNORE INTO intake_sources (path_key, size, mtime_ns, sha256,"
                " state, first_seen, updated_at) VALUES (?, ?, ?, ?, 'seen', ?, ?)",
                (key, size, mtime_ns, sha256, now, now),
            )
            row = self.conn.execute(
                "SELECT * FROM intake_sources WHERE path_key = ? AND size = ? AND mtime_ns = ?"
                " AND sha256 = ?",
                (key, size, mtime_ns, sha256),
            ).fetchone()
            return self._row(row)

    def get(self, entry_id: int) -> Entry | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT * FROM intake_sources WHERE id = ?", (entry_id,)
            ).fetchone()
            return self._row(row) if row else None

    def confirmed(self, sha256: str) -> str | None:
        """The archive's confirmed outcome for these bytes, if it ever confirmed them."""
        with self._lock:
            row = self.conn.execute(
                "SELECT outcome FROM intake_content WHERE sha256 = ?", (sha256,)
            ).fetchone()
            return row["outcome"] if row else None

    def confirm(self, entry_id: int, sha256: str, outcome: str) -> None:
        """The archive said stored/held: content and entry confirmed in one transaction."""
        with self._lock:
            now = _now()
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute(
                    "INSERT OR IGNORE INTO intake_content (sha256, outcome, confirmed_at)"
                    " VALUES (?, ?, ?)",
                    (sha256, outcome, now),
                )
                self.conn.execute(
                    "UPDATE intake_sources SET state = 'confirmed', outcome = ?, reason = NULL,"
                    " updated_at = ? WHERE id = ?",
                    (outcome, now, entry_id),
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def mark(self, entry_id: int, state: str, reason: str | None = None) -> None:
        with self._lock:
            self.conn.execute(
                "UPDATE intake_sources SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                (state, reason, _now(), entry_id),
            )

    def attempt(self, entry_id: int) -> int:
        """Count one upload attempt; returns the number so far."""
        with self._lock:
            self.conn.execute(
                "UPDATE intake_sources SET attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (_now(), entry_id),
            )
            row = self.conn.execute(
                "SELECT attempts FROM intake_sources WHERE id = ?", (entry_id,)
            ).fetchone()
            return int(row["attempts"])

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT state, COUNT(*) AS n FROM intake_sources GROUP BY state"
            ).fetchall()
            return {r["state"]: r["n"] for r in rows}
