"""The intake journal: what was seen, what the archive confirmed, what was deleted.

Keyed by (path key, size, mtime, fingerprint): the path is kept only as a keyed hash (a
file name can carry a patient's name), and the content fingerprint makes duplicates
idempotent: a file whose bytes the archive already confirmed is deleted without another
upload. Both are HMAC-SHA256 under a key derived from the keyring's pseudonym key
(`Fingerprints`), so a copy of the database cannot be used to test whether a given file
or name was ever dropped. The columns keep their historic names (`path_key`, `sha256`).
Rows written before keying (plain SHA-256) are converted in place when the watcher
first opens the journal with the keyring: HMAC(key, SHA-256(x)) is what is stored for
new rows too, so old and new fingerprints stay comparable.
Tables live in the archive database (room "intake", on the encrypted data volume).

Crash windows, and why each is safe:
- killed before the upload answer is recorded -> the file is still there and is
  uploaded again; Orthanc answers AlreadyStored (de-identified UIDs are deterministic);
- killed after "confirmed" but before the unlink -> the next run finds the hash
  confirmed and deletes the source without uploading.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from base64 import b32encode
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archive.config import ArchiveConfig
from archive.db import connect, dialect, migrate, open_database

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
    """,
    # Step 2 (issue #20): keyed fingerprints (which scheme, and a check value of the key)
    # and the encrypted rejects' records (the bytes and the original name are sealed in
    # the rejects store, archive/intake/rejects.py).
    """
    CREATE TABLE intake_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE intake_rejects (
        id TEXT PRIMARY KEY,
        rejected_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        entry_id INTEGER,
        size INTEGER NOT NULL,
        origin TEXT NOT NULL
    );
    """,
]
KEYED_SCHEME = "hmac-sha256-v1"


class Fingerprints:
    """Keyed hashes for the journal: HMAC-SHA256 of the SHA-256 of a file's bytes or of
    its path, under a key derived from the keyring's pseudonym key (never stored)."""

    def __init__(self, pseudonym_key: bytes) -> None:
        if not isinstance(pseudonym_key, bytes) or len(pseudonym_key) != 32:
            raise ValueError("the pseudonym key must be 32 bytes")
        self._key = hmac.new(pseudonym_key, b"intake-fingerprint-v1", hashlib.sha256).digest()

    def __repr__(self) -> str:  # never print the key
        return "Fingerprints(<hidden>)"

    def of_digest(self, label: bytes, digest: bytes) -> str:
        return hmac.new(self._key, label + b"\x00" + digest, hashlib.sha256).hexdigest()

    def content(self, data: bytes | memoryview) -> str:
        return self.of_digest(b"content", hashlib.sha256(data).digest())

    def path(self, path: Path | str) -> str:
        return self.of_digest(b"path", bytes.fromhex(path_key(path)))

    def check_value(self) -> str:
        """Identifies the key (not the key): a journal keyed under another keyring is
        refused instead of silently losing its duplicate detection."""
        return self.of_digest(b"check", b"")


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

    def __init__(self, conn: sqlite3.Connection, fingerprints: Fingerprints | None = None) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        migrate(conn, "intake", STEPS)
        self.converted = 0  # unkeyed rows converted by this open
        if fingerprints is not None:
            self.converted = self._key_rows(fingerprints)

    @classmethod
    def open(
        cls, db_path: Path | ArchiveConfig, fingerprints: Fingerprints | None = None
    ) -> Journal:
        """The journal in the archive database: a SQLite path, or the configuration
        (then SQLite or PostgreSQL as [database] says)."""
        conn = open_database(db_path) if isinstance(db_path, ArchiveConfig) else connect(db_path)
        # WAL + NORMAL survives a killed process; a power cut may lose the last marks,
        # which only costs a harmless re-upload (AlreadyStored). Measured: FULL halves
        # watch-folder throughput on this hardware.
        conn.execute("PRAGMA synchronous=NORMAL")
        return cls(conn, fingerprints)

    def _key_rows(self, fp: Fingerprints) -> int:
        """Convert plain SHA-256 rows to keyed ones once (one transaction); refuse a
        journal keyed under another key."""
        sqlite = dialect(self.conn) == "sqlite"
        with self._lock:
            if sqlite:  # the unkeyed values must not survive in freed space
                self.conn.execute("PRAGMA secure_delete = ON")
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                rows = dict(
                    (r["name"], r["value"])
                    for r in self.conn.execute("SELECT name, value FROM intake_meta")
                )
                if rows.get("fingerprints") == KEYED_SCHEME:
                    self.conn.execute("COMMIT")
                    if rows.get("check") != fp.check_value():
                        from archive.intake.settings import IntakeError

                        raise IntakeError(
                            "the intake journal was keyed with another keyring; open the "
                            "watcher with the archive's own keyring (ARCHIVE_HOME's keys/)."
                        )
                    return 0
                n = 0
                for r in self.conn.execute(
                    "SELECT id, path_key, sha256 FROM intake_sources"
                ).fetchall():
                    self.conn.execute(
                        "UPDATE intake_sources SET path_key = ?, sha256 = ? WHERE id = ?",
                        (fp.of_digest(b"path", bytes.fromhex(r["path_key"])),
                         fp.of_digest(b"content", bytes.fromhex(r["sha256"])), r["id"]),
                    )  # fmt: skip
                    n += 1
                for r in self.conn.execute("SELECT sha256 FROM intake_content").fetchall():
                    self.conn.execute(
                        "UPDATE intake_content SET sha256 = ? WHERE sha256 = ?",
                        (fp.of_digest(b"content", bytes.fromhex(r["sha256"])), r["sha256"]),
                    )
                    n += 1
                for name, value in (("fingerprints", KEYED_SCHEME), ("check", fp.check_value())):
                    self.conn.execute("DELETE FROM intake_meta WHERE name = ?", (name,))
                    self.conn.execute(
                        "INSERT INTO intake_meta (name, value) VALUES (?, ?)", (name, value)
                    )
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            if n and sqlite:
                # ... nor in the write-ahead log: copy it into the database and empty it
                # (best effort while others write; they overwrite it soon enough).
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return n

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

    # -- rejects (records; the sealed bytes live in archive/intake/rejects.py) --------

    def add_reject(self, reject_id: str, reason: str, entry_id: int | None, size: int,
                   origin: str) -> None:  # fmt: skip
        with self._lock:
            self.conn.execute(
                "INSERT INTO intake_rejects (id, rejected_at, reason, entry_id, size, origin)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (reject_id, _now(), reason, entry_id, size, origin),
            )

    def rejects(self) -> list[dict]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT * FROM intake_rejects ORDER BY rejected_at, id"
            ).fetchall()
            return [dict(r) for r in rows]

    def reject(self, reject_id: str) -> dict | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT * FROM intake_rejects WHERE id = ?", (reject_id,)
            ).fetchone()
            return dict(row) if row else None

    def drop_reject(self, reject_id: str) -> bool:
        with self._lock:
            cur = self.conn.execute("DELETE FROM intake_rejects WHERE id = ?", (reject_id,))
            return cur.rowcount > 0
