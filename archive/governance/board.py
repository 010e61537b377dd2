"""School Board decisions, votes and the quorum rule, shared by share and closure decisions.

This module owns `governance_board_decisions` and `governance_board_member_votes`: the
sharing and closure workflows record and read decisions only through its functions.

People act for themselves (issue 21): a Board decision is recorded by one member from
their own authenticated session, which is that member's vote; every other member casts
their own vote on the decision from their own session (REST, web, or the CLI with
their own credentials). Nobody can name another member as a voter. The decision is in
force once the policy's quorum of distinct members has voted themselves. A member's
vote on their own proposal is recorded, so the minutes stay complete, but never
counted: nobody authorises their own share.

Votes live in `governance_board_member_votes`, one row per (decision, member). Votes
carried over from before issue 21 (approvers typed in by whoever recorded the decision)
are kept with `self_cast = 0` and never count toward a quorum.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from archive.governance._store import clean_roles, clean_text, day, parse_ts, person_key, ts
from archive.governance.errors import (
    InvalidInputError,
    NotAuthorisedError,
    NotFoundError,
    StateError,
)
from archive.governance.policy import GovernancePolicy


@dataclass(frozen=True)
class BoardVote:
    """The authenticated member casting a vote, with the roles their session carries.

    Adapters build it from the session's principal only (never from a typed name)."""

    member: str
    roles: frozenset[str]

    @classmethod
    def of(cls, member: str, roles: Sequence[str]) -> BoardVote:
        return cls(clean_text(member, "board member", max_len=200), clean_roles(roles))

    @classmethod
    def of_principal(cls, principal) -> BoardVote:
        return cls.of(principal.user, list(principal.roles))


@dataclass(frozen=True)
class CountedVote:
    member: str
    counted: bool
    note: str
    self_cast: bool = True
    cast_at: str = ""


@dataclass(frozen=True)
class Decision:
    id: int
    subject: str
    proposal_id: int | None
    outcome: str
    meeting_date: date
    minute_reference: str
    decision_text: str
    votes: tuple[CountedVote, ...]
    quorum_required: int
    quorum_counted: int
    receiving_recipient_id: int | None
    recorded_by: str
    recorded_at: datetime

    @property
    def reference(self) -> str:
        return f"Board {self.meeting_date.isoformat()} minute {self.minute_reference}"

    @property
    def in_force(self) -> bool:
        """A rejection stands as minuted; anything else needs its quorum of members who
        voted themselves."""
        return self.outcome == "rejected" or self.quorum_counted >= self.quorum_required

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "subject": self.subject,
            "proposal_id": self.proposal_id,
            "outcome": self.outcome,
            "meeting_date": self.meeting_date.isoformat(),
            "minute_reference": self.minute_reference,
            "decision_text": self.decision_text,
            "approvers": [
                {
                    "member": v.member,
                    "counted": v.counted,
                    "self_cast": v.self_cast,
                    "note": v.note,
                    "cast_at": v.cast_at,
                }
                for v in self.votes
            ],  # fmt: skip
            "quorum_required": self.quorum_required,
            "quorum_counted": self.quorum_counted,
            "in_force": self.in_force,
            "receiving_recipient_id": self.receiving_recipient_id,
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at.isoformat(),
        }


def insert_decision(
    conn: sqlite3.Connection,
    *,
    subject: str,
    proposal_id: int | None,
    outcome: str,
    meeting_date: date,
    minute_reference: str,
    decision_text: str,
    quorum_required: int,
    receiving_recipient_id: int | None,
    recorded_by: str,
    stamp: str,
    policy_version: str,
) -> int:
    """Write one Board decision (inside the caller's transaction); no vote is counted
    until members cast their own (board.cast_vote)."""
    cur = conn.execute(
        "INSERT INTO governance_board_decisions (subject, proposal_id, outcome, meeting_date,"
        " minute_reference, decision_text, receiving_recipient_id, quorum_required,"
        " quorum_counted, recorded_by, recorded_at, policy_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            subject,
            proposal_id,
            outcome,
            meeting_date.isoformat(),
            minute_reference,
            decision_text,
            receiving_recipient_id,
            quorum_required,
            0,
            recorded_by,
            stamp,
            policy_version,
        ),
    )
    return int(cur.lastrowid)


def load_decision(conn: sqlite3.Connection, decision_id: int) -> Decision:
    row = conn.execute(
        "SELECT * FROM governance_board_decisions WHERE id = ?", (int(decision_id),)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"Board decision {decision_id} does not exist.")
    votes = load_votes(conn, row["id"])
    return Decision(
        id=row["id"],
        subject=row["subject"],
        proposal_id=row["proposal_id"],
        outcome=row["outcome"],
        meeting_date=date.fromisoformat(row["meeting_date"]),
        minute_reference=row["minute_reference"],
        decision_text=row["decision_text"],
        votes=votes,
        quorum_required=row["quorum_required"],
        quorum_counted=row["quorum_counted"],
        receiving_recipient_id=row["receiving_recipient_id"],
        recorded_by=row["recorded_by"],
        recorded_at=parse_ts(row["recorded_at"]),
    )


def decisions_on(
    conn: sqlite3.Connection, subject: str, proposal_id: int | None = None
) -> list[Decision]:
    """The Board decisions on a subject ('share' with its proposal, or 'closure'),
    oldest first."""
    if proposal_id is None:
        rows = conn.execute(
            "SELECT id FROM governance_board_decisions WHERE subject = ? ORDER BY id", (subject,)
        )
    else:
        rows = conn.execute(
            "SELECT id FROM governance_board_decisions WHERE subject = ? AND proposal_id = ?"
            " ORDER BY id",
            (subject, int(proposal_id)),
        )
    return [load_decision(conn, r[0]) for r in rows.fetchall()]


def check_meeting(meeting_date: date, minute_reference: str, now: datetime) -> tuple[str, str]:
    when = day(meeting_date, "meeting_date")
    if meeting_date > now.date():
        raise InvalidInputError(
            "the meeting date is in the future; record a Board decision after the meeting."
        )
    return when, clean_text(minute_reference, "minute reference", max_len=100)


def check_member(policy: GovernancePolicy, vote: BoardVote, action: str = "share.vote") -> None:
    """Only a School Board member votes: whoever holds `action` (share.vote or
    closure.vote) in policies/access/actions.toml."""
    if not isinstance(vote, BoardVote):
        raise TypeError("a vote must be a BoardVote")
    if not vote.roles & policy.holders(action):
        raise NotAuthorisedError(
            f"{vote.member} is not a School Board member ({action} in "
            "policies/access/actions.toml); only members vote on Board decisions."
        )


def cast_vote(
    conn: sqlite3.Connection,
    policy: GovernancePolicy,
    decision_id: int,
    vote: BoardVote,
    *,
    proposer: str | None,
    now,
    action: str = "share.vote",
) -> int:
    """Record `vote` on a decision (inside the caller's transaction) and return how many
    self-cast votes now count. One vote per member and decision; the proposer's vote is
    recorded but not counted."""
    check_member(policy, vote, action)
    key = person_key(vote.member)
    before = conn.execute(
        "SELECT id, self_cast FROM governance_board_member_votes"
        " WHERE decision_id = ? AND member_key = ?",
        (int(decision_id), key),
    ).fetchone()
    if before is not None and before[1]:
        raise StateError(
            f"{vote.member} has already voted on Board decision {decision_id}; "
            "each member votes once."
        )
    counted = proposer is None or key != person_key(proposer)
    note = "" if counted else "proposer: recorded, not counted"
    if before is not None:  # named by a recorder before issue 21: now their own vote
        conn.execute(
            "UPDATE governance_board_member_votes SET member = ?, counted = ?, self_cast = 1,"
            " note = ?, cast_at = ? WHERE id = ?",
            (vote.member, int(counted), note, ts(now), before[0]),
        )
    else:
        conn.execute(
            "INSERT INTO governance_board_member_votes (decision_id, member, member_key,"
            " counted, self_cast, note, cast_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
            (int(decision_id), vote.member, key, int(counted), note, ts(now)),
        )
    total = int(
        conn.execute(
            "SELECT count(*) FROM governance_board_member_votes"
            " WHERE decision_id = ? AND counted = 1 AND self_cast = 1",
            (int(decision_id),),
        ).fetchone()[0]
    )
    conn.execute(
        "UPDATE governance_board_decisions SET quorum_counted = ? WHERE id = ?",
        (total, int(decision_id)),
    )
    return total


def load_votes(conn: sqlite3.Connection, decision_id: int) -> tuple[CountedVote, ...]:
    return tuple(
        CountedVote(r[0], bool(r[1]), r[2], bool(r[3]), r[4])
        for r in conn.execute(
            "SELECT member, counted, note, self_cast, cast_at FROM governance_board_member_votes"
            " WHERE decision_id = ? ORDER BY id",
            (int(decision_id),),
        )
    )


def decision_subject(conn: sqlite3.Connection, decision_id: int) -> tuple[str, int | None]:
    row = conn.execute(
        "SELECT subject, proposal_id FROM governance_board_decisions WHERE id = ?",
        (int(decision_id),),
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"Board decision {decision_id} does not exist; see `archive shares list` or "
            "`archive close plan` for the open decisions."
        )
    return row[0], row[1]


def quorum_note(policy: GovernancePolicy, counted: int) -> str:
    """What is still missing, for messages."""
    missing = max(0, policy.quorum - counted)
    more = f"; {missing} more must cast their own vote (REST, web or CLI)." if missing else "."
    return f"{counted} of {policy.quorum} members (other than the proposer) voted themselves" + more
