"""The archive's services for one home, opened once: config, keyring, audit, database.

Both the Orthanc plugin and the CLI open a Runtime, so the rules (fail closed without
a keyring, audit signed with the keyring's key) are the same on every path.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from archive import db
from archive.audit import AuditEvent, AuditLog, audit_log_for
from archive.config import ArchiveConfig, load_config
from archive.vault import Keyring
from archive.vault.errors import KeyringMissingError
from archive.vault.keyring import keyring_path
from archive.vault.passphrase import obtain_passphrase

PASSPHRASE_FD_ENV = "ARCHIVE_KEYRING_PASSPHRASE_FD"  # noqa: S105 - a variable name


def passphrase_from_fd() -> str | None:
    """`archive serve` may hand the passphrase to Orthanc through an inherited pipe."""
    raw = os.environ.pop(PASSPHRASE_FD_ENV, "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8")
    return text[:-1] if text.endswith("\n") else text


def open_keyring(config: ArchiveConfig, *, prompt: bool) -> Keyring:
    path = keyring_path(config.home.keys_dir)
    if not path.exists():
        raise KeyringMissingError(
            f"No keyring at {path}. Create one with: archive keys init --home {config.home.root}"
        )
    passphrase = passphrase_from_fd() or obtain_passphrase(config, prompt=prompt)
    return Keyring.open(path, passphrase)


@dataclass
class Runtime:
    """Opened services of one archive home."""

    config: ArchiveConfig
    keyring: Keyring
    _connections: dict[int, sqlite3.Connection] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, home: Path | str | ArchiveConfig, *, prompt: bool = False) -> Runtime:
        config = home if isinstance(home, ArchiveConfig) else load_config(home)
        return cls(config=config, keyring=open_keyring(config, prompt=prompt))

    @cached_property
    def audit(self) -> AuditLog:
        return audit_log_for(self.config.home, signer=self.keyring.audit_signing_key)

    def db(self) -> sqlite3.Connection:
        """One connection per OS thread: Orthanc calls back from many threads.
        SQLite in the home, or PostgreSQL with [database] kind = "postgresql".

        Keyed by thread id rather than threading.local, because orthanc-python drops a
        callback's Python thread state when it returns (a new sqlite connect per
        instance otherwise: measured ~2 ms of every ingest).
        """
        ident = threading.get_ident()
        conn = self._connections.get(ident)
        if conn is None:
            conn = db.open_database(self.config)
            with self._lock:
                self._connections[ident] = conn
        return conn

    def record(self, event: AuditEvent) -> int:
        return self.audit.append(event)
