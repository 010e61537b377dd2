"""The audit chain in PostgreSQL, for an archive whose tables are there (FORMAT.md 8).

`PgAuditLog` is an `AuditLog` whose lines are rows of `audit_chain` instead of lines
of audit.jsonl: same records, same hashes, same signatures and checkpoints, same
synchronous and group-commit appends. Appends from every node are ordered by one row
lock, `SELECT ... FROM audit_chain_head WHERE log = 'main' FOR UPDATE`, held for one
short transaction: the archive's only serialised write. Success means COMMITted.

`PgChain` reads the chain back for verification, queries and exports.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select, update

from archive.audit.events import AuditError
from archive.audit.log import (
    FORMAT_VERSION,
    GENESIS,
    HEAD_NAME,
    LOG_NAME,
    AuditLog,
    Head,
    _atomic_write,
    read_head,
    record_hash,
    utc_now,
)
from archive.audit.tables import CHAIN_ROOM, audit_chain, audit_chain_head, metadata

HEAD_ROW = "main"
_thread_lock = threading.RLock()


def _steps() -> list[Any]:
    from archive.db import create_tables  # noqa: PLC0415 - archive.db imports lazily

    return [create_tables(metadata, [audit_chain, audit_chain_head])]


def prepare(conn: Any) -> None:
    """Create the chain's tables (once) and its empty head row."""
    from archive import db  # noqa: PLC0415

    db.migrate(conn, CHAIN_ROOM, _steps())
    if conn.execute(
        select(audit_chain_head.c.seq).where(audit_chain_head.c.log == HEAD_ROW)
    ).fetchone():
        return
    stmt = db_insert(conn)(audit_chain_head).values(
        log=HEAD_ROW,
        seq=0,
        hash=GENESIS,
        checkpoint=None,
        format=FORMAT_VERSION,
        updated=utc_now(),
    )
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["log"]))


def db_insert(conn: Any) -> Callable[..., Any]:
    if conn.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: PLC0415

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert  # noqa: PLC0415

    return sqlite_insert


@dataclass
class ChainRead:
    """The chain as read for verification: lines in seq order, problems of the rows
    themselves, and the head row."""

    lines: list[bytes]
    problems: list[str]
    head: Head | None


class PgChain:
    """Reads the chain's rows; `opener()` gives an archive.db Connection."""

    def __init__(self, opener: Callable[[], Any], local_dir: Path | None = None) -> None:
        self._opener = opener
        self.local_dir = Path(local_dir) if local_dir is not None else None

    def __str__(self) -> str:
        return "the audit chain in the archive database (audit_chain)"

    def read(self) -> ChainRead:
        conn = self._opener()
        try:
            from archive import db  # noqa: PLC0415

            db.migrate(conn, CHAIN_ROOM, _steps())
            rows = conn.execute(
                select(audit_chain.c.seq, audit_chain.c.line).order_by(audit_chain.c.seq)
            ).fetchall()
            head_row = conn.execute(
                select(
                    audit_chain_head.c.seq, audit_chain_head.c.hash, audit_chain_head.c.checkpoint
                ).where(audit_chain_head.c.log == HEAD_ROW)
            ).fetchone()
        finally:
            conn.close()
        lines: list[bytes] = []
        problems: list[str] = []
        for number, (seq, line) in enumerate(rows, start=1):
            raw = str(line).encode()
            lines.append(raw)
            try:
                inner = json.loads(raw).get("seq")
            except (ValueError, AttributeError):
                continue  # reported by the line checks
            if inner != seq:
                problems.append(
                    f"line {number} (row seq {seq}): the row's seq column says {seq} but its "
                    f"record says {inner!r} (row edited)"
                )
        head = None
        if head_row is not None and (int(head_row[0]) > 0 or rows):
            checkpoint = json.loads(head_row[2]) if head_row[2] else None
            head = Head(seq=int(head_row[0]), hash=str(head_row[1]), checkpoint=checkpoint)
        return ChainRead(lines=lines, problems=problems, head=head)

    def data(self) -> bytes:
        """The chain as the bytes of an audit.jsonl (exports, queries)."""
        lines = self.read().lines
        return b"".join(line + b"\n" for line in lines)


class PgAuditLog(AuditLog):
    """An AuditLog whose chain is in the archive database (see the module doc).

    `directory` is the home's HOME/data/audit: only its head.json (this node's last
    committed seq and hash, a tripwire) and, once, the file chain to migrate are used."""

    def __init__(
        self,
        directory: Path | str,
        opener: Callable[[], Any],
        signer: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 100,
        durable: bool = True,
        *,
        checkpoint_minutes: float = 0.0,
    ) -> None:
        self._opener = opener
        self._conn: Any = None
        super().__init__(
            directory,
            signer=signer,
            checkpoint_every=checkpoint_every,
            durable=durable,
            anchor=None,
            checkpoint_minutes=checkpoint_minutes,
        )

    # -- storage ----------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            try:
                conn = self._opener()
                prepare(conn)
            except AuditError:
                raise
            except Exception as exc:  # noqa: BLE001 - ArchiveError, driver errors alike
                raise AuditError(
                    f"cannot reach the audit chain in the archive database ({exc}); check "
                    "that PostgreSQL runs and [database] in archive.toml, then retry."
                ) from None
            self._conn = conn
            self._migrate_file_chain(conn)
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001,S110 - a broken connection
                pass
            try:
                conn.close()
            except Exception:  # noqa: BLE001,S110
                pass

    def _locked(self) -> Any:
        return _thread_lock  # across nodes, the head row's lock orders appends

    def _publish_public_key(self, raw: bytes) -> None:
        """No key file next to the chain: verification trusts the pin (FORMAT.md 8)."""

    def _head_row(self, conn: Any, lock: bool) -> Head:
        stmt = select(
            audit_chain_head.c.seq, audit_chain_head.c.hash, audit_chain_head.c.checkpoint
        ).where(audit_chain_head.c.log == HEAD_ROW)
        if lock:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).fetchone()
        if row is None:
            raise AuditError(
                "the audit chain's head row is missing from the archive database although "
                "its table exists: it was deleted; run archive audit verify and restore the "
                "database from a backup."
            )
        checkpoint = json.loads(row[2]) if row[2] else None
        return Head(seq=int(row[0]), hash=str(row[1]), checkpoint=checkpoint)

    def _checked_tail(self, conn: Any, head: Head) -> tuple[int, str, bool]:
        """(seq, hash, last is v1) after checking the last row against the head row."""
        last = conn.execute(
            select(audit_chain.c.seq, audit_chain.c.line)
            .order_by(audit_chain.c.seq.desc())
            .limit(1)
        ).fetchone()
        if last is None:
            if head.seq:
                raise AuditError(
                    f"the audit chain is empty but its head row records seq {head.seq}: "
                    "records were removed. Nothing more is appended until this is "
                    "investigated (archive audit verify)."
                )
            return 0, GENESIS, False
        try:
            record = json.loads(last[1])
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("hash") != record_hash(record):
            raise AuditError(
                "the last record of the audit chain fails its hash check; run archive audit verify."
            )
        if int(last[0]) != head.seq or record.get("seq") != head.seq or record["hash"] != head.hash:
            raise AuditError(
                f"the audit chain ends at seq {last[0]} but its head row records seq "
                f"{head.seq}: records were removed or rewritten. Nothing more is appended "
                "until this is investigated (archive audit verify)."
            )
        return head.seq, head.hash, "v" not in record

    def _tail_and_format(self) -> tuple[int, str, bool]:
        conn = self._connection()
        try:
            with conn.write():
                tail = self._checked_tail(conn, self._head_row(conn, lock=True))
            self._known = (None, tail[0], tail[1])  # type: ignore[assignment]
            return tail
        except AuditError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._drop_connection()
            raise self._db_error("read", exc) from None

    def _uncovered(self) -> bool:
        with _thread_lock:
            try:
                conn = self._connection()
                head = self._head_row(conn, lock=False)
            except Exception:  # noqa: BLE001 - the next write reports it
                self._drop_connection()
                return False
        if head.seq == 0:
            return False
        return not head.checkpoint or head.checkpoint.get("seq") != head.seq

    @staticmethod
    def _db_error(doing: str, exc: Exception) -> AuditError:
        return AuditError(
            f"cannot {doing} the audit chain in the archive database ({type(exc).__name__}: "
            f"{exc}); check PostgreSQL, then retry."
        )

    def _write_batch(
        self,
        batch: list[tuple[str, dict[str, Any]]],
        checkpoint_key: Ed25519PrivateKey | None = None,
        reason: str = "request",
    ) -> list[int]:
        """One transaction: lock the head row, check the tail, insert the chained rows,
        move the head, COMMIT (FORMAT.md 8)."""
        conn = self._connection()
        try:
            conn.begin_write()
            head = self._head_row(conn, lock=True)
            seq, prev, old_format = self._checked_tail(conn, head)
            chained = self._chain(batch, seq, prev, old_format, checkpoint_key, reason)
            lines, seqs, checkpoint, signed_checkpoint, last_seq, last_hash = chained
            if lines:
                conn.execute(
                    insert(audit_chain),
                    [{"seq": seq + i, "line": line} for i, line in enumerate(lines, start=1)],
                )
            conn.execute(
                update(audit_chain_head)
                .where(audit_chain_head.c.log == HEAD_ROW)
                .values(
                    seq=last_seq,
                    hash=last_hash,
                    checkpoint=json.dumps(checkpoint, sort_keys=True)
                    if checkpoint
                    else (json.dumps(head.checkpoint, sort_keys=True) if head.checkpoint else None),
                    format=FORMAT_VERSION,
                    updated=utc_now(),
                )
            )
            conn.commit()
        except AuditError:
            self._drop_connection()
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors: not committed
            self._drop_connection()
            raise self._db_error("append to", exc) from None
        if signed_checkpoint:
            import time  # noqa: PLC0415

            self._last_checkpoint = time.monotonic()
        self._known = (None, last_seq, last_hash)  # type: ignore[assignment]
        self._note_local_head(last_seq, last_hash)
        return seqs

    def _note_local_head(self, seq: int, digest: str) -> None:
        """This node's head.json: the last seq/hash it committed (a tripwire, not fsynced)."""
        try:
            _atomic_write(
                self.directory / HEAD_NAME,
                json.dumps({"format": FORMAT_VERSION, "seq": seq, "hash": digest}).encode(),
                durable=False,
            )
        except OSError:
            pass  # the chain is committed; the tripwire is best effort

    def _migrate_file_chain(self, conn: Any) -> None:
        """Copy a home's file chain into an empty table once (FORMAT.md 8, Migration)."""
        path = self.directory / LOG_NAME
        if not path.is_file() or path.stat().st_size == 0:
            return
        if conn.execute(select(func.count()).select_from(audit_chain)).scalar():
            return
        lines = path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        records = []
        prev = GENESIS
        for number, raw in enumerate(lines, start=1):
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if (
                not isinstance(record, dict)
                or record.get("seq") != number
                or record.get("prev") != prev
                or record.get("hash") != record_hash(record)
            ):
                raise AuditError(
                    f"the home's audit log {path} does not verify at line {number}; it is "
                    "not moved into the database. Run archive audit verify first."
                )
            prev = record["hash"]
            records.append({"seq": number, "line": raw.decode()})
        head = read_head(self.directory)
        checkpoint = head.checkpoint if head else None
        with conn.write():
            current = self._head_row(conn, lock=True)
            if current.seq:
                return  # another node migrated meanwhile
            conn.execute(insert(audit_chain), records)
            conn.execute(
                update(audit_chain_head)
                .where(audit_chain_head.c.log == HEAD_ROW)
                .values(
                    seq=len(records),
                    hash=prev,
                    checkpoint=json.dumps(checkpoint, sort_keys=True) if checkpoint else None,
                    updated=utc_now(),
                )
            )

    def close(self) -> None:
        super().close()
        with _thread_lock:
            self._drop_connection()
