"""The change watch: notices any write to the access tables, by any process or node."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from archive.config import ArchiveConfig
from archive.errors import ArchiveError


class ChangeWatch:
    """Notices any write to the access tables by any connection, process or node, cheaply.

    A background thread polls a version every `interval` seconds on its own connection
    and bumps `generation` when it changes; readers only compare an int (no I/O, no
    lock). A change is noticed within `interval`. On SQLite the version is `PRAGMA
    data_version` (any commit to archive.db by another connection); on PostgreSQL it is
    `access_change_counter`, bumped by statement triggers on every access_ table (schema
    step 2), so a user added or disabled on one node is seen by every node.

    `target`: the archive's configuration, or the path of a SQLite archive.db.
    """

    def __init__(self, target: str | Path | ArchiveConfig, interval: float = 0.25) -> None:
        from sqlalchemy import select, text

        from archive.access.tables import change_counter
        from archive.db import connect, dialect, open_database

        self.generation = 0
        self.interval = interval
        if isinstance(target, ArchiveConfig):
            self._conn = open_database(target)
        else:
            self._conn = connect(target)
        self._probe = (
            select(change_counter.c.version).where(change_counter.c.id == 1)
            if dialect(self._conn) == "postgresql"
            else text("PRAGMA data_version")  # this connection's view of other writers
        )
        self._version = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-change-watch", daemon=True)
        self._thread.start()

    def _read(self) -> int:
        return int(self._conn.execute(self._probe).scalar())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                version = self._read()
            except (sqlite3.Error, ArchiveError):
                version = -1  # unknown (e.g. PostgreSQL unreachable): treat as changed
            if version != self._version or version == -1:
                self._version = version
                self.generation += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        if not self._thread.is_alive():
            self._conn.close()
