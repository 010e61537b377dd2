"""The one authorisation (archive/core): rules from policies/access/actions.toml."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from archive.access.principal import Principal
from archive.core import (
    ActionPolicyError,
    Ports,
    Refusal,
    Refused,
    Resource,
    authorise,
    load_action_policy,
    parse_action_policy,
    perform,
)

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def policy():
    return load_action_policy(POLICIES)


def who(user: str, *roles: str, trained: bool = True) -> Principal:
    return Principal(user, tuple(roles), trained)


def test_role_grants_and_refusal_carries_reason_and_next(policy):
    assert authorise(policy, who("t", "trainer"), "case.edit")
    refusal = authorise(policy, who("r", "registrar"), "case.edit")
    assert isinstance(refusal, Refusal) and not refusal
    assert "case.edit" in refusal.reason and refusal.next


def test_training_needed(policy):
    refusal = authorise(policy, who("t", "trainer", trained=False), "case.view")
    assert refusal.code == "training"


def test_anonymous_and_unknown_action_refused(policy):
    assert authorise(policy, None, "case.view").code == "unauthenticated"
    assert not authorise(policy, who("p", "personnel"), "no.such.action")


def test_not_own_and_states(policy):
    hos = who("h", "head_of_school", trained=False)
    assert authorise(
        policy, hos, "removal.approve", Resource("removal", "1", "pending", requester="x")
    )
    own = authorise(
        policy, hos, "removal.approve", Resource("removal", "1", "pending", requester="h")
    )
    assert not own and "own" in own.reason
    late = authorise(
        policy, hos, "removal.approve", Resource("removal", "1", "approved", requester="x")
    )
    assert late.code == "state"


def test_owner_rule(policy):
    res = Resource("collection", "c1", owner="ann", shared_with=frozenset({"bob"}))
    assert authorise(policy, who("ann", "trainer"), "collection.edit", res)
    assert authorise(policy, who("bob", "trainer"), "collection.edit", res)
    assert not authorise(policy, who("cat", "trainer"), "collection.edit", res)
    assert authorise(policy, who("pat", "personnel"), "collection.edit", res)


def test_policy_with_unknown_role_fails_to_load():
    with pytest.raises(ActionPolicyError):
        parse_action_policy({"version": 1, "roles": ["a"], "actions": {"x": {"roles": ["b"]}}})
    with pytest.raises(ActionPolicyError):
        parse_action_policy(
            {"version": 1, "roles": ["a"], "actions": {"x": {"roles": ["a"], "oops": 1}}}
        )


class _Audit:
    def __init__(self):
        self.events = []

    def append(self, event):
        self.events.append(event)
        return len(self.events)


def _ports(tmp_path):
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    db.execute("CREATE TABLE t (v TEXT)")
    return Ports(db=db, audit=_Audit(), policies_dir=POLICIES, source="test")


def test_perform_acts_once_and_audits_once(tmp_path):
    ports = _ports(tmp_path)

    def act(tx, permit):
        tx.execute("INSERT INTO t VALUES ('x')")
        return "done"

    assert perform(ports, who("t", "trainer"), "case.edit", None, act, target="case:1") == "done"
    assert ports.db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    assert [(e.action, e.outcome) for e in ports.audit.events] == [("case.edit", "success")]


def test_perform_refusal_rolls_back_and_audits_reason(tmp_path):
    ports = _ports(tmp_path)

    def act(tx, permit):
        tx.execute("INSERT INTO t VALUES ('x')")
        raise Refused(Refusal("case.edit", "title has an identifier", "Remove it.", "invalid"))

    out = perform(ports, who("t", "trainer"), "case.edit", None, act)
    assert isinstance(out, Refusal) and out.code == "invalid"
    assert ports.db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    (event,) = ports.audit.events
    assert event.outcome == "denied" and event.detail["reason"] == "title has an identifier"

    out = perform(ports, who("r", "registrar"), "case.edit", None, act)
    assert (
        isinstance(out, Refusal) and ports.db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    )
    assert len(ports.audit.events) == 2
