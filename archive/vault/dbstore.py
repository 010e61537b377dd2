"""Encrypted attachments as rows of the archive database, shared by every node
([storage] kind = "postgresql", FORMAT.md section 6).

`DbEncryptedStore` speaks `EncryptedStore`'s API (write, write_stream, read,
read_stream, exists, remove, entries, cleanup_partials) over the table `vault_blob`:
the row's `envelope` is exactly the file an EncryptedStore would write (FORMAT.md
section 2), the keys stay in the keyring. Each write or removal is one statement
committed before it returns (the connection is in autocommit outside transactions):
commit = durable. One connection per thread, opened on first use.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from sqlalchemy import delete, select, update

from archive.vault.envelope import (
    HEADER_LEN,
    Header,
    KeySource,
    _unwrap,
    _wrap,
    decrypt_bytes,
    encrypt_bytes,
    encrypt_stream,
)
from archive.vault.store import CleanupReport, _check_ct, _check_uuid
from archive.vault.tables import BLOB_ROOM, metadata, vault_blob


def _steps() -> list[Any]:
    from archive.db import create_tables  # noqa: PLC0415

    return [create_tables(metadata, [vault_blob])]


class DbEncryptedStore:
    """Encrypted attachments in `vault_blob` (see the module doc)."""

    def __init__(
        self,
        opener: Callable[[], Any],
        keyring: KeySource,
        *,
        connection: Callable[[], Any] | None = None,
    ) -> None:
        """`opener()` opens a new connection; `connection()`, when given, is the calling
        thread's own connection of the process (the plugin's one per Orthanc thread),
        used whenever it is not inside a transaction, so the store adds no connections."""
        self._opener = opener
        self._shared = connection
        self.keyring = keyring
        # Keyed by OS thread id, not threading.local: orthanc-python drops a callback's
        # Python thread state when it returns (see plugins/services.py, Services.db).
        self._own: dict[int, Any] = {}
        self._own_lock = threading.Lock()
        self._ready = False
        self.root = None  # no directory: nothing of this store is in the home
        self._conn()  # fail at start, not at the first instance, if the table is out of reach

    def __str__(self) -> str:
        return "the archive database (vault_blob)"

    # -- connection -----------------------------------------------------------------
    def _conn(self) -> Any:
        if self._shared is not None:
            conn = self._shared()
            if not conn.in_transaction:  # a statement there commits on return
                self._migrate(conn)
                return conn
        ident = threading.get_ident()
        conn = self._own.get(ident)
        if conn is None:
            conn = self._opener()
            with self._own_lock:
                self._own[ident] = conn
        self._migrate(conn)
        return conn

    def _migrate(self, conn: Any) -> None:
        if not self._ready:
            from archive import db  # noqa: PLC0415

            db.migrate(conn, BLOB_ROOM, _steps())
            self._ready = True

    def _run(self, statement: Any, parameters: Any = None) -> Any:
        """One statement, committed on return (outside a transaction). A connection the
        server dropped is reopened by archive.db between transactions; one retry."""
        try:
            return self._conn().execute(statement, parameters)
        except Exception:
            own = self._own.pop(threading.get_ident(), None)
            if own is not None:
                try:
                    own.close()
                except Exception:  # noqa: BLE001,S110
                    pass
            return self._conn().execute(statement, parameters)

    def close(self) -> None:
        with self._own_lock:
            conns, self._own = list(self._own.values()), {}
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001,S110
                pass

    # -- the EncryptedStore API ------------------------------------------------------
    def _upsert(self, uuid: str, content_type: int, envelope: bytes) -> None:
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: PLC0415
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert  # noqa: PLC0415

        make = pg_insert if self._conn().dialect == "postgresql" else sqlite_insert
        stmt = make(vault_blob).values(uuid=uuid, content_type=content_type, envelope=envelope)
        stmt = stmt.on_conflict_do_update(
            index_elements=["uuid", "content_type"], set_={"envelope": stmt.excluded.envelope}
        )
        self._run(stmt)

    def write(
        self,
        uuid: str,
        content_type: int,
        data: bytes | bytearray | memoryview,
        *,
        durable: bool = True,
    ) -> None:
        """Encrypt and store; committed (durable) before it returns, whatever `durable`
        says (a row is either committed or not there)."""
        uuid, content_type = _check_uuid(uuid), _check_ct(content_type)
        self._upsert(uuid, content_type, encrypt_bytes(self.keyring, uuid, content_type, data))

    def write_stream(self, uuid: str, content_type: int, src: BinaryIO) -> int:
        uuid, content_type = _check_uuid(uuid), _check_ct(content_type)
        out = io.BytesIO()
        size = encrypt_stream(self.keyring, uuid, content_type, src, out)
        self._upsert(uuid, content_type, out.getvalue())
        return size

    def envelope(self, uuid: str, content_type: int) -> bytes:
        """The stored envelope (ciphertext) of one attachment."""
        uuid, content_type = _check_uuid(uuid), _check_ct(content_type)
        row = self._run(
            select(vault_blob.c.envelope).where(
                vault_blob.c.uuid == uuid, vault_blob.c.content_type == content_type
            )
        ).fetchone()
        if row is None:
            raise FileNotFoundError(
                f"attachment {uuid} (content type {content_type}) is not in the store"
            )
        return bytes(row[0])

    def read(self, uuid: str, content_type: int) -> bytes:
        """Decrypt and return the attachment; TamperError if it fails authentication."""
        return decrypt_bytes(self.keyring, uuid, content_type, self.envelope(uuid, content_type))

    def read_stream(self, uuid: str, content_type: int, dst: BinaryIO) -> int:
        data = self.read(uuid, content_type)
        dst.write(data)
        return len(data)

    def exists(self, uuid: str, content_type: int) -> bool:
        uuid, content_type = _check_uuid(uuid), _check_ct(content_type)
        return (
            self._run(
                select(vault_blob.c.content_type).where(
                    vault_blob.c.uuid == uuid, vault_blob.c.content_type == content_type
                )
            ).fetchone()
            is not None
        )

    def remove(self, uuid: str, content_type: int) -> None:
        uuid, content_type = _check_uuid(uuid), _check_ct(content_type)
        self._run(
            delete(vault_blob).where(
                vault_blob.c.uuid == uuid, vault_blob.c.content_type == content_type
            )
        )

    def entries(self) -> Iterator[tuple[str, int, None]]:
        """(uuid, content type, None) of every stored attachment, in a stable order."""
        rows = self._run(
            select(vault_blob.c.uuid, vault_blob.c.content_type).order_by(
                vault_blob.c.uuid, vault_blob.c.content_type
            )
        ).fetchall()
        for uuid, content_type in rows:
            yield str(uuid), int(content_type), None

    def count(self) -> int:
        from sqlalchemy import func  # noqa: PLC0415

        return int(self._run(select(func.count()).select_from(vault_blob)).scalar() or 0)

    def header(self, uuid: str, content_type: int) -> Header:
        """The envelope's header (nothing decrypted)."""
        return Header.parse(memoryview(self.envelope(uuid, content_type))[:HEADER_LEN])

    def rewrap(self, keyring: KeySource, uuid: str, content_type: int) -> bool:
        """Re-wrap one attachment's data key under the primary KEK: one UPDATE of its
        header under the row's lock (FORMAT.md section 6: no journal). False when it was
        already under the primary KEK."""
        from dataclasses import replace  # noqa: PLC0415

        conn = self._conn()
        with conn.write():
            row = conn.execute(
                select(vault_blob.c.envelope)
                .where(vault_blob.c.uuid == uuid, vault_blob.c.content_type == content_type)
                .with_for_update()
            ).fetchone()
            if row is None:
                raise FileNotFoundError(f"attachment {uuid} is no longer in the store")
            blob = bytes(row[0])
            old = Header.parse(memoryview(blob)[:HEADER_LEN], uuid, content_type)
            if old.key_id == keyring.primary_kek_id:
                return False
            data_key = _unwrap(keyring, old, uuid, content_type)
            key_id, wrap_nonce, wrapped = _wrap(keyring, data_key, old.salt)
            new = replace(old, key_id=key_id, wrap_nonce=wrap_nonce, wrapped_key=wrapped)
            conn.execute(
                update(vault_blob)
                .where(vault_blob.c.uuid == uuid, vault_blob.c.content_type == content_type)
                .values(envelope=new.to_bytes() + blob[HEADER_LEN:])
            )
        return True

    def paths(self) -> Iterator[Any]:
        return iter(())  # no files: rotation and fsck use entries()/header()/rewrap()

    def cleanup_partials(self, *, older_than: float = 0.0) -> CleanupReport:
        return CleanupReport()  # a row is committed or absent: no partial to clean


def storage_for(
    config: Any, keyring: KeySource, *, connection: Callable[[], Any] | None = None
) -> Any:
    """The storage area as archive.toml's [storage] says (FORMAT.md section 6).
    `connection`: the calling thread's archive connection, reused by a database store."""
    from pathlib import Path  # noqa: PLC0415

    from archive.vault.store import EncryptedStore  # noqa: PLC0415

    kind = config.storage.kind
    if kind == "postgresql":
        from archive import db  # noqa: PLC0415

        return DbEncryptedStore(lambda: db.open_database(config), keyring, connection=connection)
    if kind == "path":
        return EncryptedStore(Path(config.storage.path), keyring)
    return EncryptedStore(config.home.storage_dir, keyring)
