"""The sharing route adapters with a stand-in orthanc (issue 21): decode, call the use
case as the authenticated person, encode its refusal as {"error", "next"} + status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.unit.governance_fakes import adapter, as_

TODAY = datetime.now(UTC).date().isoformat()
NODE = {"aet": "LEEDS", "host": "127.0.0.1", "port": 11112}


@pytest.fixture
def world(monkeypatch, tmp_path):
    fake, services = adapter(
        monkeypatch, tmp_path, "recipient_routes", "share_routes", "share_register_routes"
    )
    made = fake.call("POST", "/teaching/recipients", headers=as_("pers1"), body={
        "organisation": "Leeds School of Radiology", "kind": "uk_radiology_school",
        "contact": "dpo@leeds.example", "data_sharing_agreement": True, "dicom_node": NODE,
    })  # fmt: skip
    assert made.status == 200, made.text
    return fake, services, made.json()["id"]


def _propose(fake, who="board1", rid=1, cases=("NSR-0001",)):
    body = {"cases": list(cases), "recipient_id": rid, "purpose": "radiology_training"}
    return fake.call("POST", "/teaching/shares", headers=as_(who), body=body)


def _decide(fake, pid, who="board1", **extra):
    body = {"meeting_date": TODAY, "minute_reference": "SB/1", "decision_text": "Agreed."}
    return fake.call("POST", f"/teaching/shares/{pid}/decide", headers=as_(who),
                     body={**body, **extra})  # fmt: skip


def test_only_personnel_keep_the_recipients_register(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "recipient_routes")
    body = {"organisation": "X", "kind": "uk_radiology_school", "contact": "c"}
    refused = fake.call("POST", "/teaching/recipients", headers=as_("board1"), body=body)
    assert refused.status == 403
    assert refused.json()["error"] and refused.json()["next"]
    assert services.audited("governance.recipient.add")[-1].outcome == "denied"
    anonymous = fake.call("POST", "/teaching/recipients", body=body)
    assert anonymous.status == 401 and anonymous.json()["next"]


def test_proposal_vote_and_quorum_count_only_members_who_voted_themselves(world):
    fake, services, rid = world
    proposed = _propose(fake, rid=rid)
    assert proposed.status == 200, proposed.text
    pid = proposed.json()["id"]
    # Naming other members as approvers is refused with the reason, never counted.
    named = _decide(fake, pid, "board2", approvers=["board3", "board1"])
    assert named.status == 400 and "own session" in named.json()["error"]
    decided = _decide(fake, pid, "board2")
    assert decided.status == 200, decided.text
    assert decided.json()["quorum_counted"] == 1 and not decided.json()["in_force"]
    # The proposer's own vote is recorded, never counted; a vote twice is a conflict.
    mine = fake.call("POST", f"/teaching/shares/{pid}/vote", headers=as_("board1"))
    assert mine.status == 200 and mine.json()["quorum_counted"] == 1
    again = fake.call("POST", f"/teaching/shares/{pid}/vote", headers=as_("board2"))
    assert again.status == 409 and "already voted" in again.json()["error"]
    # Personnel cannot vote for the Board.
    pers = fake.call("POST", f"/teaching/shares/{pid}/vote", headers=as_("pers1"))
    assert pers.status == 403 and pers.json()["next"]
    third = fake.call("POST", f"/teaching/shares/{pid}/vote", headers=as_("board3"))
    assert third.status == 200 and third.json()["in_force"]
    # Naming voters is refused as such whatever the proposal's state (now approved).
    late = fake.call("POST", f"/teaching/shares/{pid}/vote", headers=as_("board1"),
                     body={"approvers": ["board3"]})  # fmt: skip
    assert late.status == 400 and "own session" in late.json()["error"]
    votes = services.audited("governance.board.vote")
    assert [(e.actor, e.outcome) for e in votes] == [
        ("board1", "success"), ("board2", "denied"), ("pers1", "denied"), ("board3", "success"),
        ("board1", "denied"),
    ]  # fmt: skip


def test_only_board_members_propose_and_checks_come_when_proposed(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "recipient_routes", "share_routes",
                             level="limited-access")  # fmt: skip
    rid = fake.call("POST", "/teaching/recipients", headers=as_("pers1"), body={
        "organisation": "RCR", "kind": "rcr_vca", "contact": "c", "dicom_node": NODE,
    }).json()["id"]  # fmt: skip
    by_personnel = _propose(fake, "pers1", rid)
    assert by_personnel.status == 403
    assert "Board" in by_personnel.json()["next"]
    early = _propose(fake, "board1", rid)  # key-coded cases, no agreement on file
    assert early.status == 400, early.text
    assert "no data-sharing agreement on file" in early.json()["error"]
    assert early.json()["next"]
    assert [e.outcome for e in services.audited("governance.share.propose")] == [
        "denied", "denied",
    ]  # fmt: skip


def test_execution_refused_with_reason_until_approved_and_undertaken(world):
    fake, services, rid = world
    pid = _propose(fake, rid=rid).json()["id"]
    early = fake.call("POST", f"/teaching/shares/{pid}/execute", headers=as_("pers1"))
    assert early.status == 409 and "proposed" in early.json()["error"]
    _decide(fake, pid, "board2")
    fake.call("POST", f"/teaching/shares/{pid}/vote", headers=as_("board3"))
    missing = fake.call("POST", f"/teaching/shares/{pid}/execute", headers=as_("pers1"))
    assert missing.status == 409 and "undertaking" in missing.json()["error"]
    by_board = fake.call("POST", f"/teaching/shares/{pid}/execute", headers=as_("board1"))
    assert by_board.status == 403
    assert [e.outcome for e in services.audited("governance.share.execute")] == ["denied"] * 3


def test_revocation_is_recorded_as_the_authenticated_person(world):
    fake, services, _ = world
    unknown = fake.call("POST", "/teaching/shares/log/99/revoke", headers=as_("pers2"),
                        body={"reason": "withdrawn", "requested_by": "someone else"})  # fmt: skip
    assert unknown.status == 404 and unknown.json()["next"]
    event = services.audited("governance.share.revoke")[-1]
    assert (event.actor, event.outcome) == ("pers2", "denied")
