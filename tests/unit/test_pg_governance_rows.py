"""Concurrency per row in governance on PostgreSQL (issue 27): two Board members voting
at the same moment on one decision take turns on the decision's row, so the quorum
count written last includes both votes (no global writer lock does it any more)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from archive.governance import Shares
from archive.governance.board import BoardVote, cast_vote, load_decision
from tests.unit.test_governance_sharing import BOARD, T0, _proposal

WAIT = 120  # generous for a loaded machine; the conditions end the waits early


def _waiting_on_a_lock(conn, pid: int) -> bool:
    rows = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
    return pid in {r[0] for r in rows.fetchall()}


def test_two_members_voting_at_once_are_both_counted(pg):
    from archive.governance.policy import load_policy

    policy = load_policy()
    shares = Shares(pg.connect("votes"), policy)
    p = _proposal(shares)
    decision = shares.decide(
        p.id,
        meeting_date=T0.date(),
        minute_reference="SB/2025/03/4.2",
        decision_text="The Board approves sharing these cases for regional training.",
        by=BoardVote.of("Dr Chair", BOARD),
        now=T0,
    )
    first, second = pg.connect("votes"), pg.connect("votes")
    second_pid = second.execute(select(func.pg_backend_pid())).fetchone()[0]
    done = threading.Event()
    errors: list[BaseException] = []

    def vote_b() -> None:
        try:
            with second.write():
                cast_vote(second, policy, decision.id, BoardVote.of("Dr B", BOARD),
                          proposer="Prof Proposer", now=T0)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        done.set()

    with first.write():
        counted = cast_vote(first, policy, decision.id, BoardVote.of("Dr A", BOARD),
                            proposer="Prof Proposer", now=T0)  # fmt: skip
        assert counted == 2  # the chair and Dr A
        thread = threading.Thread(target=vote_b)
        thread.start()
        deadline = time.monotonic() + WAIT
        while not _waiting_on_a_lock(first, second_pid):
            assert not done.is_set(), "a vote on the same decision did not wait for the first"
            assert time.monotonic() < deadline, "the second vote never queued on the decision"
            time.sleep(0.05)
    assert done.wait(WAIT)
    thread.join()
    assert errors == []
    assert load_decision(first, decision.id).quorum_counted == 3  # nobody's vote was lost
