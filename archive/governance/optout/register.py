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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from archive.db import dialect_insert
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
from archive.governance.tables import optout, withdrawals
from archive.governance.tables import withdrawn_cases as withdrawn

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


def _objection(conn: Any, digest: str, by: str, stamp: str) -> Any:
    """Register an objection once (a second registration inserts nothing)."""
    return (
        dialect_insert(conn, optout)
        .values(pseudonym_sha256=digest, added_by=by, added_at=stamp)
        .on_conflict_do_nothing()
    )


class OptOutRegister:
    """Hashed pseudonyms of objecting patients, and the record of their withdrawals."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        ensure_schema(conn)

    def add(self, pseudonym: str, *, added_by: str, now: datetime) -> bool:
        """Register an objection; returns False if it was already registered."""
        digest = pseudonym_digest(pseudonym)
        by = clean_text(added_by, "added_by", max_len=200)
        stamp = ts(now)
        with transaction(self.conn) as c:
            cur = c.execute(_objection(c, digest, by, stamp))
        return cur.rowcount == 1

    def contains(self, pseudonym: str) -> bool:
        """Has this patient objected? Checked at ingest before anything is stored."""
        digest = pseudonym_digest(pseudonym)
        row = self.conn.execute(
            select(optout.c.pseudonym_sha256).where(optout.c.pseudonym_sha256 == digest)
        ).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(optout)).scalar())

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
            c.execute(_objection(c, digest, by, stamp))
            cur = c.execute(
                insert(withdrawals).values(
                    pseudonym_sha256=digest,
                    kind=kind,
                    requested_by=req,
                    recorded_by=by,
                    recorded_at=stamp,
                )
            )
            wid = int(cur.lastrowid)
            if ids:
                c.execute(
                    insert(withdrawn),
                    [
                        {"withdrawal_id": wid, "case_id": cid, "position": n}
                        for n, cid in enumerate(ids, start=1)
                    ],
                )
        return Withdrawal(wid, kind, tuple(ids), req, by, parse_ts(stamp))

    def withdrawals(self) -> list[Withdrawal]:
        out = []
        for r in self.conn.execute(select(withdrawals).order_by(withdrawals.c.id)).fetchall():
            ids = tuple(
                self.conn.execute(
                    select(withdrawn.c.case_id)
                    .where(withdrawn.c.withdrawal_id == r["id"])
                    .order_by(withdrawn.c.position)
                ).scalars()
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
        return set(self.conn.execute(select(withdrawn.c.case_id)).scalars())

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


def withdrawn_among(conn: Any, ids: Sequence[str]) -> list[str]:
    """Which of these cases a patient's withdrawal or objection has removed (asked by
    the removal, sharing and closure workflows before anything leaves)."""
    if not ids:
        return []
    rows = conn.execute(
        select(withdrawn.c.case_id).distinct().where(withdrawn.c.case_id.in_(list(ids)))
    ).scalars()
    return sorted(rows)
