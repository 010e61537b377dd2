"""The closure route adapter with a stand-in orthanc (issue 21): transfer and withdrawal
are asked of actions.toml (closure.transfer, withdrawal.carry_out) and refused with
their reason; nothing is sent without a Board decision in force."""

from __future__ import annotations

from tests.unit.governance_fakes import adapter, as_


def test_transfer_refused_without_a_decision_in_force(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "closure_routes")
    services.conn.execute(
        "CREATE TABLE IF NOT EXISTS catalogue_cases (case_id TEXT, orthanc_study_id TEXT,"
        " status TEXT)"
    )
    board = fake.call("POST", "/teaching/closure/transfer", headers=as_("board1"))
    assert board.status == 403 and board.json()["next"]
    early = fake.call("POST", "/teaching/closure/transfer", headers=as_("pers1"))
    assert early.status == 409, early.text
    assert "no School Board decision" in early.json()["error"]
    assert "vote" in early.json()["next"]
    assert [(e.actor, e.outcome) for e in services.audited("closure.transfer")] == [
        ("board1", "denied"), ("pers1", "denied"),
    ]  # fmt: skip


def test_withdrawal_only_by_whom_actions_allow(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "withdrawal_routes")
    refused = fake.call("POST", "/teaching/closure/withdrawals", headers=as_("board1"),
                        body={"cases": ["NSR-0001"]})  # fmt: skip
    assert refused.status == 403 and refused.json()["next"]
    anonymous = fake.call("POST", "/teaching/closure/withdrawals", body={"cases": ["X"]})
    assert anonymous.status == 401
    assert services.audited("withdrawal.remove")[-1].actor == "board1"
