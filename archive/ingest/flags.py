"""Pixel flags per de-identified series: facial features possible, photograph consent.

Recorded at ingest (and at a quarantine release) so the catalogue can show them and
refuse publication-level promotion until a reviewer has decided each flag explicitly.
Keyed by de-identified UIDs only; a flag never carries a patient value.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from archive import db

SCHEMA = [
    """
    CREATE TABLE ingest_flags (
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        flag TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT,
        decision_note TEXT,
        PRIMARY KEY (study_uid, series_uid, flag)
    );
    CREATE INDEX ingest_flags_study ON ingest_flags (study_uid);
    """
]


def ensure_schema(conn: sqlite3.Connection) -> None:
    db.migrate(conn, "ingest", SCHEMA)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_flags(
    conn: sqlite3.Connection, study_uid: str, series_uid: str, flags: list[str]
) -> None:
    """Remember each flag once per series (later instances of the series add nothing)."""
    if not flags:
        return
    ensure_schema(conn)
    conn.executemany(
        "INSERT OR IGNORE INTO ingest_flags (study_uid, series_uid, flag, recorded_at)"
        " VALUES (?, ?, ?, ?)",
        [(study_uid, series_uid or "", flag, _now()) for flag in dict.fromkeys(flags)],
    )


def flags_for_study(conn: sqlite3.Connection, study_uid: str) -> list[str]:
    """Flags of a study no reviewer has decided yet (sorted, each once).

    The catalogue shows these and refuses publication-level promotion while any remain.
    """
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT DISTINCT flag FROM ingest_flags WHERE study_uid = ? AND decided_by IS NULL"
        " ORDER BY flag",
        (study_uid,),
    )
    return [row[0] for row in rows]


def all_flags_for_study(conn: sqlite3.Connection, study_uid: str) -> list[dict[str, str | None]]:
    """Every flag of a study with its decision, for display."""
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT series_uid, flag, recorded_at, decided_by, decided_at, decision_note"
        " FROM ingest_flags WHERE study_uid = ? ORDER BY series_uid, flag",
        (study_uid,),
    )
    return [dict(row) for row in rows]


def decide_flag(
    conn: sqlite3.Connection, study_uid: str, flag: str, reviewer: str, note: str
) -> int:
    """A reviewer's explicit decision on a flag for the whole study; returns rows decided."""
    ensure_schema(conn)
    if not reviewer or not note:
        raise ValueError("a flag decision needs a reviewer name and a note saying why")
    cursor = conn.execute(
        "UPDATE ingest_flags SET decided_by = ?, decided_at = ?, decision_note = ?"
        " WHERE study_uid = ? AND flag = ? AND decided_by IS NULL",
        (reviewer, _now(), note, study_uid, flag),
    )
    return cursor.rowcount
