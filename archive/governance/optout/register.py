"""Patients' objections and consent withdrawals (issue 10).

The register holds no identifier: the de-identification room derives a pseudonym from
the issuer and patient ID with a secret key, and this register stores only a further
SHA-256 of that pseudonym, so even the pseudonym is not kept. Ingest asks `contains()`
and discards an objecting patient's studies.

A withdrawal records which cases were removed, when and at whose request, and
`exposures()` lists every share, export and workstation that already carried those
cases, so deletion requests can be sent.
"""

from __future__ import annotations

import hashlib
import json
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
from archive.governance.pulls import PullInventory

_DOMAIN = b"teaching-archive/optout/v1\x00"


def pseudonym_digest(pseudonym: str) -> str:
    """SHA-256 of the pseudonym under a fixed domain label: what the register stores."""
    if not isinstance(pseudonym, str) or not pseudonym or pseudonym != pseudonym.strip():
        raise InvalidInputError(
            "a pseudonym is the non-empty value computed by de-identification; "
            "recompute it with `archive withdraw --issuer` (the patient ID on its prompt)."
        )
    return hashlib.sha256(_DOMAIN + pseudonym.encode()).hexdigest()


@dataclass(frozen=True)
class Withdrawal:
    id: int
    kind: str
    case_ids: tuple[str, ...]
    requested_by: str
    recorded_by: str
    recorded_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "case_ids": list(self.case_ids),
            "requested_by": self.requested_by,
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at.isoformat(),
        }


class OptOutRegister:
    """Hashed pseudonyms of objecting patients, and the record of their withdrawals."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        ensure_schema(conn)

    def add(self, pseudonym: str, *, added_by: str, now: datetime) -> bool:
        """Register an objection; returns False if it was already registered."""
        digest = pseudonym_digest(pseudonym)
        by = clean_text(added_by, "added_by", max_len=200)
        stamp = ts(now)
        with transaction(self.conn) as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO governance_optout (pseudonym_sha256, added_by, added_at)"
                " VALUES (?, ?, ?)",
                (digest, by, stamp),
            )
        return cur.rowcount == 1

    def contains(self, pseudonym: str) -> bool:
        """Has this patient objected? Checked at ingest before anything is stored."""
        digest = pseudonym_digest(pseudonym)
        row = self.conn.execute(
            "SELECT 1 FROM governance_optout WHERE pseudonym_sha256 = ?", (digest,)
        ).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM governance_optout").fetchone()[0])

    def record_withdrawal(
        self,
        pseudonym: str,
        case_ids: Sequence[str],
        *,
        kind: str = "withdrawal",
        requested_by: str,
        recorded_by: str,
        now: datetime,
    ) -> Withdrawal:
        """Record that these cases were withdrawn (and register the objection), so no
        export or share can carry them again. `case_ids` may be empty when the patient
        objects before any of their studies arrived."""
        if kind not in ("withdrawal", "objection"):
            raise InvalidInputError("kind must be 'withdrawal' or 'objection'.")
        digest = pseudonym_digest(pseudonym)
        ids = clean_case_ids(case_ids) if len(case_ids) else []
        req = clean_text(requested_by, "requested_by", max_len=200)
        by = clean_text(recorded_by, "recorded_by", max_len=200)
        stamp = ts(now)
        with transaction(self.conn) as c:
            c.execute(
                "INSERT OR IGNORE INTO governance_optout (pseudonym_sha256, added_by, added_at)"
                " VALUES (?, ?, ?)",
                (digest, by, stamp),
            )
            cur = c.execute(
                "INSERT INTO governance_withdrawals (pseudonym_sha256, kind, requested_by,"
                " recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?)",
                (digest, kind, req, by, stamp),
            )
            wid = int(cur.lastrowid)
            c.executemany(
                "INSERT INTO governance_withdrawn_cases (withdrawal_id, case_id) VALUES (?, ?)",
                [(wid, cid) for cid in ids],
            )
        return Withdrawal(wid, kind, tuple(ids), req, by, parse_ts(stamp))

    def withdrawals(self) -> list[Withdrawal]:
        out = []
        for r in self.conn.execute("SELECT * FROM governance_withdrawals ORDER BY id").fetchall():
            ids = tuple(
                x[0]
                for x in self.conn.execute(
                    "SELECT case_id FROM governance_withdrawn_cases WHERE withdrawal_id = ?"
                    " ORDER BY rowid",
                    (r["id"],),
                )
            )
            out.append(
                Withdrawal(
                    r["id"],
                    r["kind"],
                    ids,
                    r["requested_by"],
                    r["recorded_by"],
                    parse_ts(r["recorded_at"]),
                )
            )
        return out

    def withdrawn_cases(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT case_id FROM governance_withdrawn_cases")}

    def exposures(self, case_ids: Sequence[str]) -> list[dict[str, object]]:
        """Every share, export and workstation that carried any of these cases: where
        deletion requests must go. Shares list their recipient and contact; exports
        their destination and requester; workstations the cases they still hold."""
        wanted = clean_case_ids(case_ids)
        out: list[dict[str, object]] = []
        # Each workflow answers for its own tables (issue 21): asked, never read here.
        from archive.governance.removals.records import exports_carrying
        from archive.governance.sharing.records import shares_carrying

        out.extend(shares_carrying(self.conn, wanted))
        out.extend(exports_carrying(self.conn, wanted))
        for ws, cases in PullInventory(self.conn).workstations_holding(wanted).items():
            out.append(
                {
                    "kind": "workstation",
                    "reference": ws,
                    "to": ws,
                    "case_ids": cases,
                }
            )
        return out


def withdrawn_among(conn: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    """Which of these cases a patient's withdrawal or objection has removed (asked by
    the removal, sharing and closure workflows before anything leaves)."""
    if not ids:
        return []
    rows = conn.execute(
        "SELECT DISTINCT case_id FROM governance_withdrawn_cases"
        " WHERE case_id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(ids)),),
    )
    return sorted(r[0] for r in rows)
