"""Which cases sit on which suite workstation, and the attested wipes that clear them.

Every pull is recorded here so closure knows which drives hold copies, and a withdrawal
knows where a patient's cases went. A workstation's wipe attestation (who, when, how)
clears the pulls made before it; pulls after it count again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from archive.governance._store import (
    clean_case_ids,
    clean_text,
    ensure_schema,
    parse_ts,
    transaction,
    ts,
)
from archive.governance.errors import InvalidInputError


@dataclass(frozen=True)
class WipeAttestation:
    id: int
    workstation: str
    attested_by: str
    wiped_at: datetime
    method: str
    notes: str

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "workstation": self.workstation,
            "attested_by": self.attested_by,
            "wiped_at": self.wiped_at.isoformat(),
            "method": self.method,
            "notes": self.notes,
        }


_HELD = """
SELECT p.workstation, p.case_id, MAX(p.pulled_at) AS last_pulled
FROM governance_pulls p
WHERE p.pulled_at > COALESCE(
  (SELECT MAX(w.wiped_at) FROM governance_workstation_wipes w
   WHERE w.workstation = p.workstation), '')
GROUP BY p.workstation, p.case_id
ORDER BY p.workstation, p.case_id
"""


class PullInventory:
    """The pull log and the per-workstation inventory derived from it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        ensure_schema(conn)

    def record_pull(self, case_id: str, workstation: str, user: str, now: datetime) -> int:
        """Record that `user` pulled `case_id` to `workstation` at `now`."""
        cid = clean_text(case_id, "case id", max_len=128)
        ws = clean_text(workstation, "workstation", max_len=64)
        who = clean_text(user, "user", max_len=200)
        stamp = ts(now)
        with transaction(self.conn) as c:
            cur = c.execute(
                "INSERT INTO governance_pulls (case_id, workstation, user, pulled_at)"
                " VALUES (?, ?, ?, ?)",
                (cid, ws, who, stamp),
            )
        return int(cur.lastrowid)

    def inventory(self) -> dict[str, list[str]]:
        """{workstation: [case ids it holds]} for pulls not cleared by a later wipe."""
        out: dict[str, list[str]] = {}
        for row in self.conn.execute(_HELD):
            out.setdefault(row[0], []).append(row[1])
        return out

    def cases_on_workstation(self, workstation: str) -> list[str]:
        return self.inventory().get(workstation, [])

    def workstations_holding(self, case_ids: Sequence[str]) -> dict[str, list[str]]:
        """For a withdrawal: which workstations still hold any of these cases."""
        wanted = set(clean_case_ids(case_ids))
        out: dict[str, list[str]] = {}
        for ws, cases in self.inventory().items():
            hit = [c for c in cases if c in wanted]
            if hit:
                out[ws] = hit
        return out

    def pulls(self, case_id: str | None = None) -> list[dict[str, object]]:
        """The raw pull log (oldest first), optionally for one case."""
        sql = "SELECT id, case_id, workstation, user, pulled_at FROM governance_pulls"
        args: tuple[str, ...] = ()
        if case_id is not None:
            sql += " WHERE case_id = ?"
            args = (case_id,)
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def attest_wipe(
        self,
        workstation: str,
        attested_by: str,
        method: str,
        *,
        wiped_at: datetime,
        now: datetime,
        notes: str = "",
    ) -> WipeAttestation:
        """Record that a workstation's drive was wiped: who attests, when, and how."""
        ws = clean_text(workstation, "workstation", max_len=64)
        who = clean_text(attested_by, "attested_by", max_len=200)
        how = clean_text(method, "wipe method", max_len=500)
        when = ts(wiped_at, "wiped_at")
        stamp = ts(now)
        if wiped_at > now:
            raise InvalidInputError("wiped_at is in the future; attest a wipe once it is done.")
        with transaction(self.conn) as c:
            cur = c.execute(
                "INSERT INTO governance_workstation_wipes (workstation, attested_by, wiped_at,"
                " method, notes, recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                (ws, who, when, how, notes.strip(), stamp),
            )
        return WipeAttestation(int(cur.lastrowid), ws, who, parse_ts(when), how, notes.strip())

    def attestations(self) -> list[WipeAttestation]:
        rows = self.conn.execute("SELECT * FROM governance_workstation_wipes ORDER BY id")
        return [
            WipeAttestation(
                r["id"],
                r["workstation"],
                r["attested_by"],
                parse_ts(r["wiped_at"]),
                r["method"],
                r["notes"],
            )
            for r in rows
        ]

    def workstations_needing_wipe(self) -> list[str]:
        """Workstations that received pulls and hold them still (no later attestation):
        the closure certificate is not final while this list is non-empty."""
        return sorted(self.inventory())

    def latest_attestations(self) -> dict[str, WipeAttestation]:
        """The most recent attestation of each workstation."""
        latest: dict[str, WipeAttestation] = {}
        for a in self.attestations():
            if a.workstation not in latest or a.wiped_at >= latest[a.workstation].wiped_at:
                latest[a.workstation] = a
        return latest
