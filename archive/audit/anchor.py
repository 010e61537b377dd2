"""The audit log's anchors outside its lines: the database row and the pinned public key.

See FORMAT.md sections 2 and 5. The database anchor is one row of the audit room's
table `audit_anchor` in the archive database (SQLite or PostgreSQL, `archive.db`); the
pin is HOME/keys/audit_public_key, written from the keyring, never from the log.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from archive.audit.events import AuditError
from archive.audit.tables import ANCHOR_ROOM, audit_anchor, metadata

PIN_NAME = "audit_public_key"
ANCHOR_ROW = "main"


def schema_steps() -> list[Any]:
    """The audit room's steps: step 1 creates `audit_anchor` (tables.py)."""
    from archive.db import create_tables  # noqa: PLC0415 - archive.db loads lazily

    return [create_tables(metadata, [audit_anchor])]


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    format: int


class DbAnchor:
    """The anchor row, read and written through a connection opened on first use.

    Writers call `write` under the log's flock. On SQLite a command may append while its
    own connection holds the database's write lock (a room that audits inside its
    transaction): then the row cannot be written before that transaction ends, so the
    write is retried by a helper thread once the lock is free (and at exit). Updates are
    monotone (a row never goes back to a lower seq), so the retry needs no flock."""

    BUSY_SECONDS = 0.2

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._opener = opener
        self._conn: Any = None
        self._lock = threading.Lock()
        self._pending: tuple[int, str, int] | None = None
        self._retry: threading.Thread | None = None
        self.keep_open = False  # a long-lived writer (group commit) keeps its connection

    def _done(self) -> None:
        """Close the connection after use unless kept open: a command's process must not
        hold the database (and so the data volume) open after its append."""
        if not self.keep_open:
            self.close()

    def _open(self) -> Any:
        if self._conn is None:
            self._conn = self._opener()
        return self._conn

    def _fail(self, doing: str, exc: Exception) -> AuditError:
        self.close()
        return AuditError(
            f"cannot {doing} the audit log's anchor in the archive database "
            f"({type(exc).__name__}); check the database (archive fsck), then retry."
        )

    def _set_up(self, conn: Any) -> bool:
        """True if the audit room's table was ever created in this database."""
        from archive.db import DatabaseError, schema_steps  # noqa: PLC0415

        applied = select(schema_steps.c.step).where(
            schema_steps.c.room == ANCHOR_ROOM, schema_steps.c.step == 1
        )
        try:
            row = conn.execute(applied).fetchone()
        except DatabaseError:  # no schema_steps table: nothing set up yet
            return False
        return row is not None

    def read(self) -> Anchor | None:
        """The row, or None if the audit room was never set up in this database.

        Raises AuditError when it was set up but the row or the table is gone."""
        with self._lock:
            try:
                conn = self._open()
                if not self._set_up(conn):
                    self._done()
                    return None
                row = conn.execute(
                    select(audit_anchor.c.seq, audit_anchor.c.hash, audit_anchor.c.format).where(
                        audit_anchor.c.log == ANCHOR_ROW
                    )
                ).fetchone()
                self._done()
            except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg errors alike
                raise AuditError(
                    "the audit log's anchor table is gone from the archive database although "
                    f"it was created there ({type(exc).__name__}): the database was edited; "
                    "restore it and data/audit together from one backup."
                ) from None
        if row is None:
            raise AuditError(
                "the audit log's anchor row is missing from the archive database although its "
                "table was created: it was deleted; restore the database and data/audit "
                "together from one backup."
            )
        return Anchor(seq=int(row[0]), hash=str(row[1]), format=int(row[2]))

    def write(self, seq: int, digest: str, fmt: int) -> None:
        with self._lock:
            if self._try_write(seq, digest, fmt, busy=self.BUSY_SECONDS):
                return
            self._pending = (seq, digest, fmt)
            if self._retry is None or not self._retry.is_alive():
                self._retry = threading.Thread(
                    target=self._run_retry, name="audit-anchor", daemon=True
                )
                self._retry.start()
                atexit.register(self.finish)

    def _try_write(self, seq: int, digest: str, fmt: int, busy: float) -> bool:
        """Write the row; False when the database is locked by another writer."""
        from archive import db  # noqa: PLC0415 - loaded on first use

        try:
            conn = self._open()
            sqlite = db.dialect(conn) == "sqlite"
            if sqlite:
                conn.execute(text(f"PRAGMA busy_timeout={int(busy * 1000)}"))
            db.migrate(conn, ANCHOR_ROOM, schema_steps())
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            conn.execute(_upsert(conn, seq, digest, fmt, now))
            if sqlite:
                conn.execute(text("PRAGMA busy_timeout=30000"))
            self._done()
            return True
        except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg errors alike
            if "locked" in str(exc) or "busy" in str(exc):
                self._done()
                return False
            raise self._fail("update", exc) from None

    def _run_retry(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with self._lock:
                if self._pending is None:
                    return
                try:
                    if self._try_write(*self._pending, busy=0.5):
                        self._pending = None
                        return
                except AuditError as exc:
                    print(f"teaching-archive: {exc}", file=sys.stderr)
                    return
        print(
            "teaching-archive: the audit log's database anchor could not be updated (the "
            "database stayed locked); archive audit verify will report the lag.",
            file=sys.stderr,
        )

    def finish(self) -> None:
        """Write a deferred row now (waits for the database): at exit and before reads."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                try:
                    self._try_write(*pending, busy=30)
                except AuditError as exc:
                    print(f"teaching-archive: {exc}", file=sys.stderr)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001,S110 - closing a broken connection
                pass


def _upsert(conn: Any, seq: int, digest: str, fmt: int, now: str) -> Any:
    """The row written, never moved back to a lower seq (monotone: see DbAnchor)."""
    from archive import db  # noqa: PLC0415

    stmt = db.dialect_insert(conn, audit_anchor).values(
        log=ANCHOR_ROW, seq=seq, hash=digest, format=fmt, updated=now
    )
    return stmt.on_conflict_do_update(
        index_elements=[audit_anchor.c.log],
        set_={
            "seq": stmt.excluded.seq,
            "hash": stmt.excluded.hash,
            "format": stmt.excluded.format,
            "updated": stmt.excluded.updated,
        },
        where=stmt.excluded.seq >= audit_anchor.c.seq,
    )


def pin_path(keys_dir: Path) -> Path:
    return Path(keys_dir) / PIN_NAME


def read_pin(keys_dir: Path) -> list[bytes]:
    """The pinned audit public keys (oldest first); [] when nothing is pinned."""
    path = pin_path(keys_dir)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path} is unreadable ({type(exc).__name__}); restore it.") from None
    keys = []
    for line in text.split():
        try:
            raw = bytes.fromhex(line)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise AuditError(
                f"{path} holds something that is not a hex Ed25519 public key; restore it, "
                "or rewrite it from the keyring with archive audit verify --keyring."
            )
        keys.append(raw)
    return keys


def pin_public_key(keys_dir: Path, raw: bytes) -> bool:
    """Pin `raw` (the keyring's audit public key) if nothing is pinned yet; True if written.

    Raises AuditError when a pin exists without this key: the keyring was swapped or the
    pin edited, and nothing may be written or trusted until a person looks."""
    known = read_pin(keys_dir)
    if raw in known:
        return False
    path = pin_path(keys_dir)
    if known:
        raise AuditError(
            f"the keyring's audit key {raw.hex()[:16]}... is not the key pinned in {path}: "
            "the keyring is not this archive's, or the pin was edited. Check both; nothing "
            "is written to the audit log until they agree."
        )
    try:
        Path(keys_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (raw.hex() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise AuditError(f"cannot write {path} ({exc.strerror}).") from None
    return True
