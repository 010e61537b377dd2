"""School Board votes and the quorum rule, shared by share and closure decisions.

The quorum is policy (default 2 board members). A member's vote on their own proposal
is recorded, so the minutes stay complete, but never counted: nobody authorises their
own share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from archive.governance._store import clean_roles, clean_text, person_key
from archive.governance.errors import NotAuthorisedError, QuorumError
from archive.governance.policy import GovernancePolicy


@dataclass(frozen=True)
class BoardVote:
    """One approver named in the minutes, with the roles the archive knows them by."""

    member: str
    roles: frozenset[str]

    @classmethod
    def of(cls, member: str, roles: Sequence[str]) -> BoardVote:
        return cls(clean_text(member, "board member", max_len=200), clean_roles(roles))


def votes_from_register(store, names: Sequence[str]) -> list[BoardVote]:
    """Approvers named in the minutes, with the roles the access store knows them by: an
    unknown or disabled account has none, so the quorum rule refuses it. One recipe for
    the CLI, the REST routes and the web interface."""
    votes = []
    for name in names:
        user = store.get_user(name.strip())
        roles = () if user is None or user.disabled else user.roles
        votes.append(BoardVote.of(name, list(roles)))
    return votes


@dataclass(frozen=True)
class CountedVote:
    member: str
    counted: bool
    note: str


def count_votes(
    policy: GovernancePolicy,
    votes: Sequence[BoardVote],
    *,
    proposer: str | None,
    require_quorum: bool = True,
) -> list[CountedVote]:
    """Check each approver is a board member, de-duplicate, exclude the proposer, and
    (if asked) refuse when fewer than the policy's quorum remain."""
    if not votes:
        raise QuorumError("a Board decision must name its approvers.")
    seen: dict[str, CountedVote] = {}
    for vote in votes:
        if not isinstance(vote, BoardVote):
            raise TypeError("votes must be BoardVote values")
        if not vote.roles & policy.board_roles:
            raise NotAuthorisedError(
                f"{vote.member} is not a School Board member (role "
                f"{', '.join(sorted(policy.board_roles))}); only members approve Board decisions."
            )
        key = person_key(vote.member)
        if key in seen:
            continue
        if proposer is not None and key == person_key(proposer):
            seen[key] = CountedVote(vote.member, False, "proposer: recorded, not counted")
        else:
            seen[key] = CountedVote(vote.member, True, "")
    counted = [v for v in seen.values() if v.counted]
    if require_quorum and len(counted) < policy.quorum:
        excluded = [v.member for v in seen.values() if not v.counted]
        note = f" ({', '.join(excluded)} proposed it and does not count)" if excluded else ""
        raise QuorumError(
            f"the Board's quorum is {policy.quorum} members other than the proposer; "
            f"only {len(counted)} counted{note}. Record the decision once enough members approve."
        )
    return list(seen.values())
