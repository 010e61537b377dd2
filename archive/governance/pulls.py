"""Which cases sit on which suite workstation, and the attested wipes that clear them.

Every pull is recorded here so closure knows which drives hold copies, and a withdrawal
knows where a patient's cases went. A workstation's wipe attestation (who, when, how)
clears the pulls made before it; pulls after it count again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from archive.governance._store import (
    clean_case_ids,
    clean_text,
    ensure_schema,
    parse_ts,
    transaction,
    ts,
)
from archive.governance.errors import InvalidInputError
from archive.governance.tables import pulls as pulls_table
from archive.governance.tables import workstation_wipes as wipes


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


_p, _w = pulls_table.alias("p"), wipes.alias("w")
# Pulls made after the workstation's last attested wipe, one row per (workstation, case).
_HELD = (
    select(_p.c.workstation, _p.c.case_id, func.max(_p.c.pulled_at).label("last_pulled"))
    .where(
        _p.c.pulled_at
        > func.coalesce(
            select(func.max(_w.c.wiped_at))
            .where(_w.c.workstation == _p.c.workstation)
            .scalar_subquery(),
            "",
        )
    )
    .group_by(_p.c.workstation, _p.c.case_id)
    .order_by(_p.c.workstation, _p.c.case_id)
)


class PullInventory:
    """The pull log and the per-workstation inventory derived from it."""

    def __init__(self, conn: Any) -> None:
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
                insert(pulls_table).values(case_id=cid, workstation=ws, user=who, pulled_at=stamp)
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
        p = pulls_table.c
        statement = select(p.id, p.case_id, p.workstation, p.user, p.pulled_at).order_by(p.id)
        if case_id is not None:
            statement = statement.where(p.case_id == case_id)
        return [dict(r) for r in self.conn.execute(statement)]

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
                insert(wipes).values(
                    workstation=ws,
                    attested_by=who,
                    wiped_at=when,
                    method=how,
                    notes=notes.strip(),
                    recorded_at=stamp,
                )
            )
        return WipeAttestation(int(cur.lastrowid), ws, who, parse_ts(when), how, notes.strip())

    def attestations(self) -> list[WipeAttestation]:
        rows = self.conn.execute(select(wipes).order_by(wipes.c.id))
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
