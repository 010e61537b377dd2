"""The archive's own database: one SQLite file, each room owning its own tables.

Rooms call `migrate(conn, room, steps)` with an ordered list of SQL scripts; a step runs
once and is recorded in `schema_steps`, so upgrading an old home is automatic.
Connections use WAL and a busy timeout because the CLI and the Orthanc plugin write to
the same file from different processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


def connect(path: Path | str) -> sqlite3.Connection:
    """Open the archive database with the settings every room relies on."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection, room: str, steps: Sequence[str]) -> None:
    """Apply this room's schema steps that have not run yet, each in one transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_steps ("
        " room TEXT NOT NULL, step INTEGER NOT NULL, PRIMARY KEY (room, step))"
    )
    done = {row[0] for row in conn.execute("SELECT step FROM schema_steps WHERE room = ?", (room,))}
    for number, script in enumerate(steps, start=1):
        if number in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute(
                "SELECT 1 FROM schema_steps WHERE room = ? AND step = ?", (room, number)
            ).fetchone():
                conn.execute("COMMIT")
                continue
            for statement in _split(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_steps (room, step) VALUES (?, ?)", (room, number))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _split(script: str) -> list[str]:
    """Split a schema script on statement boundaries (triggers kept whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
