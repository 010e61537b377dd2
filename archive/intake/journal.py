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
import threading
from base64 import b32encode
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from archive import db
from archive.config import ArchiveConfig
from archive.db import connect, dialect, migrate, open_database

metadata = MetaData()
Int = BigInteger().with_variant(Integer(), "sqlite")
sources = Table(
    "intake_sources",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("path_key", Text, nullable=False),
    Column("size", Int, nullable=False),
    Column("mtime_ns", Int, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("state", Text, nullable=False),  # seen | confirmed | deleted | rejected | denied | retry
    Column("outcome", Text),  # stored | already | held | duplicate
    Column("attempts", Int, nullable=False, server_default="0"),
    Column("reason", Text),
    Column("first_seen", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    UniqueConstraint("path_key", "size", "mtime_ns", "sha256"),
)
Index("intake_sources_sha", sources.c.sha256)
content = Table(
    "intake_content",
    metadata,
    Column("sha256", Text, primary_key=True),
    Column("outcome", Text, nullable=False),
    Column("confirmed_at", Text, nullable=False),
)
meta = Table(
    "intake_meta",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
rejects_table = Table(
    "intake_rejects",
    metadata,
    Column("id", Text, primary_key=True),
    Column("rejected_at", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("entry_id", Int),
    Column("size", Int, nullable=False),
    Column("origin", Text, nullable=False),
)

# Homes made before issue 27 ran these steps as the equivalent SQL scripts.
STEPS = [
    db.create_tables(metadata, [sources, content]),
    # Step 2 (issue #20): keyed fingerprints (which scheme, and a check value of the key)
    # and the encrypted rejects' records (the bytes and the original name are sealed in
    # the rejects store, archive/intake/rejects.py).
    db.create_tables(metadata, [meta, rejects_table]),
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

    def __init__(self, conn: Any, fingerprints: Fingerprints | None = None) -> None:
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
        if dialect(conn) == "sqlite":
            conn.execute(text("PRAGMA synchronous=NORMAL"))
        return cls(conn, fingerprints)

    def _key_rows(self, fp: Fingerprints) -> int:
        """Convert plain SHA-256 rows to keyed ones once (one transaction); refuse a
        journal keyed under another key."""
        sqlite = dialect(self.conn) == "sqlite"
        with self._lock:
            if sqlite:  # the unkeyed values must not survive in freed space
                self.conn.execute(text("PRAGMA secure_delete = ON"))
            self.conn.begin_write()
            try:
                rows = dict(
                    (r["name"], r["value"])
                    for r in self.conn.execute(select(meta.c.name, meta.c.value))
                )
                if rows.get("fingerprints") == KEYED_SCHEME:
                    self.conn.commit()
                    if rows.get("check") != fp.check_value():
                        from archive.intake.settings import IntakeError

                        raise IntakeError(
                            "the intake journal was keyed with another keyring; open the "
                            "watcher with the archive's own keyring (ARCHIVE_HOME's keys/)."
                        )
                    return 0
                n = 0
                rows_to_key = self.conn.execute(
                    select(sources.c.id, sources.c.path_key, sources.c.sha256)
                ).fetchall()
                for r in rows_to_key:
                    self.conn.execute(
                        update(sources).where(sources.c.id == r["id"]).values(
                            path_key=fp.of_digest(b"path", bytes.fromhex(r["path_key"])),
                            sha256=fp.of_digest(b"content", bytes.fromhex(r["sha256"])),
                        )
                    )  # fmt: skip
                    n += 1
                for old in self.conn.execute(select(content.c.sha256)).scalars():
                    self.conn.execute(
                        update(content)
                        .where(content.c.sha256 == old)
                        .values(sha256=fp.of_digest(b"content", bytes.fromhex(old)))
                    )
                    n += 1
                for name, value in (("fingerprints", KEYED_SCHEME), ("check", fp.check_value())):
                    self.conn.execute(delete(meta).where(meta.c.name == name))
                    self.conn.execute(insert(meta).values(name=name, value=value))
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            if n and sqlite:
                # ... nor in the write-ahead log: copy it into the database and empty it
                # (best effort while others write; they overwrite it soon enough).
                self.conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            return n

    def close(self) -> None:
        self.conn.close()

    def _row(self, row: Any) -> Entry:
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
            version = {"path_key": key, "size": size, "mtime_ns": mtime_ns, "sha256": sha256}
            self.conn.execute(
                db.dialect_insert(self.conn, sources)
                .values(**version, state="seen", first_seen=now, updated_at=now)
                .on_conflict_do_nothing()
            )
            row = self.conn.execute(
                select(sources).where(*(sources.c[k] == v for k, v in version.items()))
            ).fetchone()
            return self._row(row)

    def get(self, entry_id: int) -> Entry | None:
        with self._lock:
            row = self.conn.execute(select(sources).where(sources.c.id == entry_id)).fetchone()
            return self._row(row) if row else None

    def confirmed(self, sha256: str) -> str | None:
        """The archive's confirmed outcome for these bytes, if it ever confirmed them."""
        with self._lock:
            return self.conn.execute(
                select(content.c.outcome).where(content.c.sha256 == sha256)
            ).scalar()

    def confirm(self, entry_id: int, sha256: str, outcome: str) -> None:
        """The archive said stored/held: content and entry confirmed in one transaction."""
        with self._lock:
            now = _now()
            with self.conn.write():
                self.conn.execute(
                    db.dialect_insert(self.conn, content)
                    .values(sha256=sha256, outcome=outcome, confirmed_at=now)
                    .on_conflict_do_nothing()
                )
                self.conn.execute(
                    update(sources)
                    .where(sources.c.id == entry_id)
                    .values(state="confirmed", outcome=outcome, reason=None, updated_at=now)
                )

    def mark(self, entry_id: int, state: str, reason: str | None = None) -> None:
        with self._lock:
            self.conn.execute(
                update(sources)
                .where(sources.c.id == entry_id)
                .values(state=state, reason=reason, updated_at=_now())
            )

    def attempt(self, entry_id: int) -> int:
        """Count one upload attempt; returns the number so far."""
        with self._lock:
            attempts = self.conn.execute(
                update(sources)
                .where(sources.c.id == entry_id)
                .values(attempts=sources.c.attempts + 1, updated_at=_now())
                .returning(sources.c.attempts)
            ).scalar()
            return int(attempts)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self.conn.execute(
                select(sources.c.state, func.count()).group_by(sources.c.state)
            ).fetchall()
            return {r[0]: r[1] for r in rows}

    # -- rejects (records; the sealed bytes live in archive/intake/rejects.py) --------

    def add_reject(self, reject_id: str, reason: str, entry_id: int | None, size: int,
                   origin: str) -> None:  # fmt: skip
        with self._lock:
            self.conn.execute(
                insert(rejects_table).values(
                    id=reject_id,
                    rejected_at=_now(),
                    reason=reason,
                    entry_id=entry_id,
                    size=size,
                    origin=origin,
                )
            )

    def rejects(self) -> list[dict]:
        with self._lock:
            rows = self.conn.execute(
                select(rejects_table).order_by(rejects_table.c.rejected_at, rejects_table.c.id)
            ).fetchall()
            return [dict(r) for r in rows]

    def reject(self, reject_id: str) -> dict | None:
        with self._lock:
            row = self.conn.execute(
                select(rejects_table).where(rejects_table.c.id == reject_id)
            ).fetchone()
            return dict(row) if row else None

    def drop_reject(self, reject_id: str) -> bool:
        with self._lock:
            cur = self.conn.execute(delete(rejects_table).where(rejects_table.c.id == reject_id))
            return cur.rowcount > 0
