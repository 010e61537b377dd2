"""Suite workstations: where each one is, kept beside the DICOM node that lets it query.

The access room holds the DICOM node (AE title, host, port, may_query) that Orthanc turns
into a modality; governance keeps the location, because closure and withdrawals need to
know which physical machine in the suite holds pulled cases.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from archive.db import migrate
from archive.governance._store import clean_text, transaction, ts
from archive.governance.errors import InvalidInputError, NotFoundError

ROOM = "governance_workstations"
STEPS = [
    """
    CREATE TABLE governance_workstations (
      name TEXT PRIMARY KEY,
      location TEXT NOT NULL,
      added_by TEXT NOT NULL,
      added_at TEXT NOT NULL
    );
    """
]


@dataclass(frozen=True)
class WorkstationPlace:
    name: str
    location: str
    added_by: str
    added_at: str


class Workstations:
    """The location register of suite workstations (one row per registered workstation)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn, ROOM, STEPS)

    def add(self, name: str, location: str, by: str, now: datetime) -> WorkstationPlace:
        ws = clean_text(name, "workstation name", max_len=64)
        where = clean_text(location, "location", max_len=200)
        who = clean_text(by, "added_by", max_len=200)
        try:
            with transaction(self.conn) as c:
                c.execute(
                    "INSERT INTO governance_workstations (name, location, added_by, added_at)"
                    " VALUES (?, ?, ?, ?)",
                    (ws, where, who, ts(now)),
                )
        except sqlite3.IntegrityError:
            raise InvalidInputError(
                f"a workstation named {ws} is already registered; remove it first."
            ) from None
        return self.get(ws)

    def get(self, name: str) -> WorkstationPlace:
        row = self.conn.execute(
            "SELECT * FROM governance_workstations WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no workstation named {name!r}; list them with `archive workstations list`."
            )
        return WorkstationPlace(row["name"], row["location"], row["added_by"], row["added_at"])

    def exists(self, name: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM governance_workstations WHERE name = ?", (name,)
            ).fetchone()
            is not None
        )

    def all(self) -> dict[str, WorkstationPlace]:
        rows = self.conn.execute("SELECT * FROM governance_workstations ORDER BY name")
        return {
            r["name"]: WorkstationPlace(r["name"], r["location"], r["added_by"], r["added_at"])
            for r in rows
        }

    def remove(self, name: str) -> None:
        with transaction(self.conn) as c:
            if c.execute("DELETE FROM governance_workstations WHERE name = ?", (name,)).rowcount:
                return
        raise NotFoundError(f"no workstation named {name!r}.")
