"""Opt-out register, withdrawals and exposures (issue 10)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest

from archive.db import connect
from archive.governance.board import BoardVote
from archive.governance.errors import InvalidInputError, WithdrawnCaseError
from archive.governance.optout.register import OptOutRegister, pseudonym_digest
from archive.governance.policy import load_policy
from archive.governance.pulls import PullInventory
from archive.governance.removals.records import RemovalRequests
from archive.governance.sharing.recipients import DicomNode
from archive.governance.sharing.records import Shares

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
SHA = "ab" * 32
PSEUDO_A = "9f2c1e0b7a44d3c2b1a0f9e8d7c6b5a4"
PSEUDO_B = "0000aaaa1111bbbb2222cccc3333dddd"


@pytest.fixture
def conn(tmp_path):
    return connect(tmp_path / "archive.db")


@pytest.fixture
def register(conn):
    return OptOutRegister(conn)


def test_contains_after_add(register):
    assert not register.contains(PSEUDO_A)
    assert register.add(PSEUDO_A, added_by="personnel.a", now=T0) is True
    assert register.contains(PSEUDO_A)
    assert not register.contains(PSEUDO_B)
    assert register.add(PSEUDO_A, added_by="personnel.b", now=T0) is False
    assert len(register) == 1


def test_only_a_hash_of_the_pseudonym_is_stored(conn, register):
    register.add(PSEUDO_A, added_by="p", now=T0)
    register.record_withdrawal(PSEUDO_B, ["NSR-1"], requested_by="patient", recorded_by="p", now=T0)
    dump = "\n".join(conn.iterdump())
    assert PSEUDO_A not in dump and PSEUDO_B not in dump
    assert pseudonym_digest(PSEUDO_A) in dump
    assert pseudonym_digest(PSEUDO_A) != hashlib.sha256(PSEUDO_A.encode()).hexdigest()


@pytest.mark.parametrize("bad", ["", " x", None])
def test_bad_pseudonym_refused(register, bad):
    with pytest.raises(InvalidInputError, match="pseudonym"):
        register.contains(bad)


def test_withdrawal_marks_cases_and_registers_objection(register):
    w = register.record_withdrawal(
        PSEUDO_A,
        ["NSR-0001", "NSR-0002"],
        requested_by="patient via PALS",
        recorded_by="personnel.a",
        now=T0,
    )
    assert w.case_ids == ("NSR-0001", "NSR-0002") and w.kind == "withdrawal"
    assert register.contains(PSEUDO_A)
    assert register.withdrawn_cases() == {"NSR-0001", "NSR-0002"}
    assert register.withdrawals() == [w]
    obj = register.record_withdrawal(
        PSEUDO_B, [], kind="objection", requested_by="patient", recorded_by="p", now=T0
    )
    assert obj.case_ids == () and register.contains(PSEUDO_B)
    assert register.withdrawn_cases() == {"NSR-0001", "NSR-0002"}


def test_withdrawn_cases_cannot_leave(conn, register):
    policy = load_policy()
    removals = RemovalRequests(conn, policy)
    levels = {"NSR-0001": "publication", "NSR-0002": "publication"}
    req = removals.create(
        ["NSR-0001", "NSR-0002"],
        "teaching_materials",
        "d",
        "Dr T",
        ["trainer"],
        case_levels=levels,
        now=T0,
    )
    removals.approve(req.id, "Dr Head", ["head_of_school"], "ok", now=T0)
    register.record_withdrawal(
        PSEUDO_A, ["NSR-0002"], requested_by="patient", recorded_by="p", now=T0
    )
    with pytest.raises(WithdrawnCaseError, match="NSR-0002 were withdrawn"):
        removals.authorise_export(req.id, T0 + timedelta(hours=1))
    with pytest.raises(WithdrawnCaseError):
        removals.create(
            ["NSR-0002"], "teaching_materials", "d", "Dr T", ["trainer"], case_levels=levels, now=T0
        )
    shares = Shares(conn, policy)
    r = shares.recipients.add(
        "RCR", "rcr_vca", "c", dicom_node=DicomNode("RCR", "h", 104), added_by="p", now=T0
    )
    with pytest.raises(WithdrawnCaseError):
        shares.propose(
            ["NSR-0002"], r.id, "rcr_validated_case_archive",
            BoardVote.of("Prof P", ["board_member"]), case_levels={"NSR-0002": "publication"},
            now=T0,
        )  # fmt: skip


def test_exposures_lists_shares_exports_and_workstations(conn, register):
    policy = load_policy()
    levels = {"NSR-0001": "publication", "NSR-0002": "publication", "NSR-0003": "publication"}
    # an export that was downloaded, one approved but never downloaded
    removals = RemovalRequests(conn, policy)
    r1 = removals.create(
        ["NSR-0001", "NSR-0003"],
        "teaching_materials",
        "Lecture slides",
        "Dr T",
        ["trainer"],
        case_levels=levels,
        now=T0,
    )
    removals.approve(r1.id, "Dr Head", ["head_of_school"], "ok", now=T0)
    removals.authorise_export(r1.id, T0 + timedelta(minutes=5))
    r2 = removals.create(
        ["NSR-0001"], "teaching_materials", "Other", "Dr T", ["trainer"], case_levels=levels, now=T0
    )
    removals.approve(r2.id, "Dr Head", ["head_of_school"], "ok", now=T0)
    # a share that carried NSR-0001 and one that did not
    shares = Shares(conn, policy)
    rec = shares.recipients.add(
        "Mersey School",
        "uk_radiology_school",
        "lead@example.org",
        dicom_node=DicomNode("MERSEY", "h", 104),
        added_by="p",
        now=T0,
    )
    for cases in (["NSR-0001", "NSR-0002"], ["NSR-0002"]):
        p = shares.propose(
            cases, rec.id, "radiology_training", BoardVote.of("Prof P", ["board_member"]),
            case_levels=dict.fromkeys(cases, "publication"), now=T0,
        )  # fmt: skip
        shares.decide(
            p.id,
            meeting_date=date(2025, 3, 1),
            minute_reference="m",
            decision_text="ok",
            by=BoardVote.of("A", ["board_member"]),
            now=T0,
        )
        shares.vote(p.id, by=BoardVote.of("B", ["board_member"]), now=T0)
        shares.record_signed_undertaking(
            p.id, SHA, "n", "r", "Mersey School", date(2025, 3, 2), "ref", recorded_by="p", now=T0
        )
        shares.record_share_execution(
            p.id,
            [(c, f"1.2.3.{i}.{p.id}", SHA) for i, c in enumerate(cases, 1)],
            "cstore",
            T0,
            executed_by="op",
        )
    pulls = PullInventory(conn)
    pulls.record_pull("NSR-0001", "MACLAB-03", "dr.a", T0)
    pulls.record_pull("NSR-0002", "MACLAB-04", "dr.a", T0)

    found = register.exposures(["NSR-0001"])
    kinds = [(e["kind"], e["reference"]) for e in found]
    assert kinds == [
        ("share", "share 1"),
        ("export", f"REMOVAL-{r1.id:06d}"),
        ("workstation", "MACLAB-03"),
    ]
    assert found[0]["to"] == "Mersey School" and found[0]["contact"] == "lead@example.org"
    assert found[0]["case_ids"] == ["NSR-0001"]
    assert found[1]["to"] == "Lecture slides" and found[1]["case_ids"] == ["NSR-0001"]
    assert [e["reference"] for e in register.exposures(["NSR-0404"])] == []
    both = register.exposures(["NSR-0002"])
    assert [e["reference"] for e in both] == ["share 1", "share 2", "MACLAB-04"]


def test_withdrawal_between_request_and_approval_blocks_approval(conn, register):
    removals = RemovalRequests(conn, load_policy())
    req = removals.create(
        ["NSR-0005"],
        "teaching_materials",
        "d",
        "Dr T",
        ["trainer"],
        case_levels={"NSR-0005": "limited-access"},
        now=T0,
    )
    register.record_withdrawal(
        PSEUDO_A, ["NSR-0005"], requested_by="patient", recorded_by="p", now=T0
    )
    with pytest.raises(WithdrawnCaseError, match="since this request was made"):
        removals.approve(req.id, "Dr Head", ["head_of_school"], "ok", now=T0)
    assert removals.get(req.id).status == "pending"


def test_withdrawal_after_authorisation_blocks_share_execution(conn, register):
    shares = Shares(conn, load_policy())
    rec = shares.recipients.add(
        "RCR", "rcr_riti", "c", dicom_node=DicomNode("RCR", "h", 104), added_by="p", now=T0
    )
    p = shares.propose(
        ["NSR-0007"], rec.id, "rcr_riti", BoardVote.of("Prof P", ["board_member"]),
        case_levels={"NSR-0007": "publication"}, now=T0,
    )  # fmt: skip
    shares.decide(
        p.id,
        meeting_date=date(2025, 3, 1),
        minute_reference="m",
        decision_text="ok",
        by=BoardVote.of("A", ["board_member"]),
        now=T0,
    )
    shares.vote(p.id, by=BoardVote.of("B", ["board_member"]), now=T0)
    shares.record_signed_undertaking(
        p.id, SHA, "n", "r", "RCR", date(2025, 3, 2), "ref", recorded_by="p", now=T0
    )
    shares.authorise_share(p.id, {"NSR-0007": "publication"}, now=T0)
    register.record_withdrawal(
        PSEUDO_A, ["NSR-0007"], requested_by="patient", recorded_by="p", now=T0
    )
    with pytest.raises(WithdrawnCaseError, match="NSR-0007"):
        shares.record_share_execution(
            p.id, [("NSR-0007", "1.2.3", SHA)], "cstore", T0, executed_by="op"
        )
    assert shares.share_log() == []
