"""How each de-identified study arrived, for the catalogue's intake kind.

Orthanc records every instance the DICOM front forwards as a REST upload (its metadata
"Origin" is RestApi), so the received-instance callback notes here, by de-identified
study UID only, the studies that came by C-STORE; catalogue_sync reads it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from archive import db

SCHEMA = [
    """
    CREATE TABLE ingest_origins (
        study_uid TEXT PRIMARY KEY,
        intake TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    """
]
_known: set[str] = set()  # study UIDs recorded by this process (skip the write)


def ensure_schema(conn: sqlite3.Connection) -> None:
    db.migrate(conn, "ingest_origins", SCHEMA)


def record(conn: sqlite3.Connection, study_uid: str, intake: str) -> None:
    if study_uid in _known:
        return
    ensure_schema(conn)
    conn.execute(
        "INSERT OR IGNORE INTO ingest_origins (study_uid, intake, recorded_at) VALUES (?, ?, ?)",
        (study_uid, intake, datetime.now(UTC).isoformat(timespec="seconds")),
    )
    _known.add(study_uid)


def intake_of(conn: sqlite3.Connection, study_uid: str) -> str | None:
    ensure_schema(conn)
    row = conn.execute(
        "SELECT intake FROM ingest_origins WHERE study_uid = ?", (study_uid,)
    ).fetchone()
    return row[0] if row else None
