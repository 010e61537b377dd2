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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from archive.governance._store import clean_roles, clean_text, day, parse_ts, person_key, ts
from archive.governance.errors import (
    InvalidInputError,
    NotAuthorisedError,
    NotFoundError,
    StateError,
)
from archive.governance.policy import GovernancePolicy
from archive.governance.tables import board_decisions as decisions
from archive.governance.tables import board_member_votes as votes


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
    conn: Any,
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
        insert(decisions).values(
            subject=subject,
            proposal_id=proposal_id,
            outcome=outcome,
            meeting_date=meeting_date.isoformat(),
            minute_reference=minute_reference,
            decision_text=decision_text,
            receiving_recipient_id=receiving_recipient_id,
            quorum_required=quorum_required,
            quorum_counted=0,
            recorded_by=recorded_by,
            recorded_at=stamp,
            policy_version=policy_version,
        )
    )
    return int(cur.lastrowid)


def load_decision(conn: Any, decision_id: int) -> Decision:
    row = conn.execute(select(decisions).where(decisions.c.id == int(decision_id))).fetchone()
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


def decisions_on(conn: Any, subject: str, proposal_id: int | None = None) -> list[Decision]:
    """The Board decisions on a subject ('share' with its proposal, or 'closure'),
    oldest first."""
    statement = select(decisions.c.id).where(decisions.c.subject == subject)
    if proposal_id is not None:
        statement = statement.where(decisions.c.proposal_id == int(proposal_id))
    ids = conn.execute(statement.order_by(decisions.c.id)).scalars()
    return [load_decision(conn, i) for i in ids]


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
    conn: Any,
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
    # The decision's row, locked until the caller's transaction ends: members voting at
    # once on one decision take turns, so the count written below is never stale.
    conn.execute(select(decisions.c.id).where(decisions.c.id == int(decision_id)).with_for_update())
    v = votes.c
    before = conn.execute(
        select(v.id, v.self_cast).where(v.decision_id == int(decision_id), v.member_key == key)
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
            update(votes)
            .where(v.id == before[0])
            .values(
                member=vote.member, counted=int(counted), self_cast=1, note=note, cast_at=ts(now)
            )
        )
    else:
        conn.execute(
            insert(votes).values(
                decision_id=int(decision_id),
                member=vote.member,
                member_key=key,
                counted=int(counted),
                self_cast=1,
                note=note,
                cast_at=ts(now),
            )
        )
    total = int(
        conn.execute(
            select(func.count()).where(
                v.decision_id == int(decision_id), v.counted == 1, v.self_cast == 1
            )
        ).scalar()
    )
    conn.execute(
        update(decisions).where(decisions.c.id == int(decision_id)).values(quorum_counted=total)
    )
    return total


def load_votes(conn: Any, decision_id: int) -> tuple[CountedVote, ...]:
    return tuple(
        CountedVote(r[0], bool(r[1]), r[2], bool(r[3]), r[4])
        for r in conn.execute(
            select(
                votes.c.member, votes.c.counted, votes.c.note, votes.c.self_cast, votes.c.cast_at
            )
            .where(votes.c.decision_id == int(decision_id))
            .order_by(votes.c.id)
        )
    )


def decision_subject(conn: Any, decision_id: int) -> tuple[str, int | None]:
    row = conn.execute(
        select(decisions.c.subject, decisions.c.proposal_id).where(
            decisions.c.id == int(decision_id)
        )
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
