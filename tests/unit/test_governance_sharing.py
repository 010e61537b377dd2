"""Third-party sharing (issue 9): recipients, Board quorum, undertakings, register."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pyrage
import pytest

from archive.db import connect
from archive.governance.board import BoardVote
from archive.governance.errors import (
    GovernancePolicyError,
    InvalidInputError,
    LevelRefusedError,
    NotAuthorisedError,
    PurposeRefusedError,
    QuorumError,
    RecipientRefusedError,
    StateError,
    UndertakingMissingError,
)
from archive.governance.policy import load_policy
from archive.governance.sharing.recipients import DicomNode
from archive.governance.sharing.records import CSV_COLUMNS, Shares, share_log_csv, share_log_json
from archive.governance.sharing.undertaking import render_undertaking

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
MEETING = date(2025, 3, 1)
LEVELS = {"NSR-0001": "publication", "NSR-0002": "publication", "NSR-0003": "limited-access"}
SHA = "ab" * 32
BOARD = ["board_member"]


@pytest.fixture
def policy():
    return load_policy()


@pytest.fixture
def shares(tmp_path, policy):
    return Shares(connect(tmp_path / "archive.db"), policy)


def _recipient(shares, *, dsa=False, kind="uk_radiology_school", org="Mersey School of Radiology"):
    return shares.recipients.add(
        org,
        kind,
        "Dr Training Lead <lead@example.org>",
        dicom_node=DicomNode("MERSEY_TA", "10.0.0.5", 11112),
        data_sharing_agreement=dsa,
        added_by="personnel.a",
        now=T0,
    )


def _proposal(shares, cases=("NSR-0001", "NSR-0002"), *, dsa=False, proposer="Prof Proposer"):
    r = _recipient(shares, dsa=dsa)
    return shares.propose(
        list(cases), r.id, "radiology_training", BoardVote.of(proposer, BOARD),
        case_levels=LEVELS, now=T0,
    )  # fmt: skip


def _approve(shares, pid, members=("Dr A", "Dr B")):
    """The first member records the decision (their vote); each other votes themselves."""
    first, *others = members
    decision = shares.decide(
        pid,
        meeting_date=MEETING,
        minute_reference="SB/2025/03/4.2",
        decision_text="The Board approves sharing these cases for regional training.",
        by=BoardVote.of(first, BOARD),
        now=T0,
    )
    for member in others:
        decision = shares.vote(pid, by=BoardVote.of(member, BOARD), now=T0)
    return decision


def _undertaking(shares, pid, org="Mersey School of Radiology"):
    return shares.record_signed_undertaking(
        pid,
        SHA,
        "Prof Signatory",
        "Head of School",
        org,
        date(2025, 3, 2),
        "vault:undertakings/7",
        recorded_by="personnel.a",
        now=T0,
    )


# -- recipients ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["commercial", "Commercial", "commercial_vendor", "company"])
def test_commercial_recipient_refused(shares, kind):
    with pytest.raises(RecipientRefusedError, match="never shared with or sold to commercial"):
        _recipient(shares, kind=kind)
    assert shares.recipients.list() == []


@pytest.mark.parametrize("kind", ["university", "", "us_radiology_school"])
def test_unlisted_recipient_kind_refused(shares, kind):
    with pytest.raises(RecipientRefusedError, match="uk_radiology_school"):
        _recipient(shares, kind=kind)


@pytest.mark.parametrize(
    "kind", ["uk_radiology_school", "rcr_vca", "rcr_riti", "trust_teaching_collection"]
)
def test_listed_kinds_accepted(shares, kind):
    r = _recipient(shares, kind=kind)
    assert r.kind == kind and r.methods == ("cstore",)
    assert shares.recipients.get(r.id) == r


def test_recipient_needs_a_route_and_valid_node(shares):
    with pytest.raises(InvalidInputError, match="DICOM node .* or an age public key"):
        shares.recipients.add("X", "rcr_vca", "c", added_by="p", now=T0)
    with pytest.raises(InvalidInputError, match="AE title"):
        DicomNode("WAY_TOO_LONG_AE_TITLE", "h", 104)
    with pytest.raises(InvalidInputError, match="port"):
        DicomNode("AE", "host", 70000)
    with pytest.raises(InvalidInputError, match="not a valid age recipient"):
        shares.recipients.add("X", "rcr_vca", "c", public_key="age1nope", added_by="p", now=T0)


def test_recipient_with_public_key(shares):
    key = str(pyrage.x25519.Identity.generate().to_public())
    r = shares.recipients.add("RCR", "rcr_vca", "c", public_key=key, added_by="p", now=T0)
    assert r.public_key == key and r.methods == ("package",)
    assert r.to_dict()["dicom_node"] is None


# -- proposals and quorum --------------------------------------------------------------
def test_commercial_share_purpose_refused(shares):
    r = _recipient(shares)
    with pytest.raises(PurposeRefusedError, match="never .*commercial"):
        shares.propose(
            ["NSR-0001"],
            r.id,
            "commercial",
            BoardVote.of("Prof P", BOARD),
            case_levels=LEVELS,
            now=T0,
        )
    with pytest.raises(PurposeRefusedError, match="radiology_training"):
        shares.propose(
            ["NSR-0001"], r.id, "fun", BoardVote.of("Prof P", BOARD), case_levels=LEVELS, now=T0
        )


def test_quorum_met_by_two_members_other_than_proposer(shares):
    p = _proposal(shares)
    d = _approve(shares, p.id, members=("Prof Proposer", "Dr A", "Dr B"))
    assert d.outcome == "approved" and d.quorum_counted == 2 and d.quorum_required == 2
    assert [(v.member, v.counted) for v in d.votes] == [
        ("Prof Proposer", False),
        ("Dr A", True),
        ("Dr B", True),
    ]
    assert "not counted" in d.votes[0].note
    assert shares.get(p.id).status == "approved"
    assert d.reference == "Board 2025-03-01 minute SB/2025/03/4.2"


def test_proposer_vote_does_not_count_towards_quorum(shares):
    p = _proposal(shares)
    d = _approve(shares, p.id, members=("prof  proposer", "Dr A"))
    assert d.quorum_counted == 1 and not d.in_force
    assert [(v.member, v.counted) for v in d.votes] == [("prof  proposer", False), ("Dr A", True)]
    assert shares.get(p.id).status == "proposed"
    _undertaking(shares, p.id)
    with pytest.raises(QuorumError, match="1 of 2 members .* voted themselves; 1 more"):
        shares.authorise_share(p.id, LEVELS, now=T0)


def test_same_member_votes_once(shares):
    p = _proposal(shares)
    with pytest.raises(StateError, match="already voted"):
        _approve(shares, p.id, members=("Dr A", "DR A "))
    assert shares.decision_for(p.id).quorum_counted == 1


def test_non_member_cannot_decide_or_vote(shares):
    p = _proposal(shares)
    with pytest.raises(NotAuthorisedError, match="not a School Board member"):
        shares.decide(
            p.id,
            meeting_date=MEETING,
            minute_reference="m",
            decision_text="ok",
            by=BoardVote.of("Dr T", ["tpd"]),
            now=T0,
        )
    assert shares.decision_for(p.id) is None
    _approve(shares, p.id, members=("Dr A",))
    with pytest.raises(NotAuthorisedError, match="not a School Board member"):
        shares.vote(p.id, by=BoardVote.of("Dr T", ["tpd"]), now=T0)
    assert shares.decision_for(p.id).quorum_counted == 1


def test_decision_counts_only_members_who_voted_themselves(shares):
    """Issue 21: recording a decision is one member's vote; nobody else is counted until
    they vote in their own session, and a second recording does not add votes."""
    p = _proposal(shares)
    d = _approve(shares, p.id, members=("Dr A",))
    assert d.quorum_counted == 1 and [v.member for v in d.votes] == ["Dr A"]
    assert shares.get(p.id).status == "proposed"
    with pytest.raises(StateError, match="waits for members' votes"):
        _approve(shares, p.id, members=("Dr B",))
    d = shares.vote(p.id, by=BoardVote.of("Dr B", BOARD), now=T0)
    assert d.in_force and d.quorum_counted == 2
    assert all(v.self_cast for v in d.votes)
    assert shares.get(p.id).status == "approved"


def test_vote_needs_a_recorded_decision(shares):
    p = _proposal(shares)
    with pytest.raises(StateError, match="no Board decision is recorded"):
        shares.vote(p.id, by=BoardVote.of("Dr A", BOARD), now=T0)


def test_only_board_members_propose(shares):
    r = _recipient(shares)
    with pytest.raises(NotAuthorisedError, match="only members propose"):
        shares.propose(["NSR-0001"], r.id, "radiology_training", BoardVote.of("tom", ["trainer"]),
                       case_levels=LEVELS, now=T0)  # fmt: skip
    assert shares.list() == []


def test_proposal_checks_agreement_and_levels_early(shares):
    """Issue 21: refused when proposed, not after the decision and the undertaking."""
    r = _recipient(shares, dsa=False)
    with pytest.raises(LevelRefusedError, match="no data-sharing agreement on file"):
        shares.propose(["NSR-0001", "NSR-0003"], r.id, "radiology_training",
                       BoardVote.of("Prof P", BOARD), case_levels=LEVELS, now=T0)  # fmt: skip
    with pytest.raises(LevelRefusedError, match="no de-identification level"):
        shares.propose(["NSR-0009"], r.id, "radiology_training",
                       BoardVote.of("Prof P", BOARD), case_levels=LEVELS, now=T0)  # fmt: skip
    assert shares.list() == []


def test_quorum_is_policy(tmp_path, policy):
    from dataclasses import replace

    strict = replace(policy, quorum=3)
    shares = Shares(connect(tmp_path / "a.db"), strict)
    p = _proposal(shares)
    assert not _approve(shares, p.id, members=("Dr A", "Dr B")).in_force
    d = shares.vote(p.id, by=BoardVote.of("Dr C", BOARD), now=T0)
    assert d.quorum_counted == 3 and d.in_force


def test_rejection_recorded_and_blocks_share(shares):
    p = _proposal(shares)
    d = shares.decide(
        p.id,
        meeting_date=MEETING,
        minute_reference="m1",
        decision_text="Not now.",
        approved=False,
        by=BoardVote.of("Dr A", BOARD),
        now=T0,
    )
    assert d.outcome == "rejected"
    with pytest.raises(StateError, match="already rejected"):
        _approve(shares, p.id)
    with pytest.raises(StateError, match="no approved School Board decision"):
        shares.authorise_share(p.id, LEVELS, now=T0)


def test_future_meeting_refused(shares):
    p = _proposal(shares)
    with pytest.raises(InvalidInputError, match="future"):
        shares.decide(
            p.id,
            meeting_date=date(2025, 4, 1),
            minute_reference="m",
            decision_text="x",
            by=BoardVote.of("Dr A", BOARD),
            now=T0,
        )


# -- undertakings ----------------------------------------------------------------------
def test_rendered_undertaking_has_every_clause(shares, policy):
    p = _proposal(shares)
    _approve(shares, p.id)
    text = " ".join(shares.render_undertaking(p.id).split())
    assert "will not be sold on for commercial benefit" in text
    assert "remain the property of the Northern School of Radiology" in text
    assert "will not be re-identified" in text
    assert "without the written consent of the School Board" in text
    assert "Mersey School of Radiology" in text and "NSR-0001, NSR-0002" in text
    assert "SB/2025/03/4.2" in text and p.reference in text
    assert "$" not in text


def test_render_undertaking_refuses_unknown_placeholder(shares):
    p = _proposal(shares)
    r = shares.recipients.get(p.recipient_id)
    with pytest.raises(GovernancePolicyError, match="placeholder"):
        render_undertaking("Dear ${nobody}", r, p, "School")


def test_policy_refuses_template_without_a_clause(tmp_path):
    import shutil

    from archive.paths import POLICIES_DIR

    shutil.copytree(POLICIES_DIR / "governance", tmp_path / "governance")
    path = tmp_path / "governance" / "undertaking.md"
    path.write_text(path.read_text().replace("will not be re-identified", "may be linked"))
    with pytest.raises(GovernancePolicyError, match="re-identified"):
        load_policy(tmp_path)


def test_undertaking_for_other_organisation_refused(shares):
    p = _proposal(shares)
    with pytest.raises(NotAuthorisedError, match="signed on the recipient's behalf"):
        _undertaking(shares, p.id, org="Acme Imaging Ltd")
    with pytest.raises(InvalidInputError, match="SHA-256"):
        shares.record_signed_undertaking(
            p.id,
            "nothex",
            "n",
            "r",
            "Mersey School of Radiology",
            date(2025, 3, 2),
            "ref",
            recorded_by="p",
            now=T0,
        )


def test_undertaking_recorded(shares):
    p = _proposal(shares)
    u = _undertaking(shares, p.id, org="mersey school of  radiology")
    assert u.signed_sha256 == SHA and u.stored_ref == "vault:undertakings/7"
    assert u.signed_on == date(2025, 3, 2) and u.signatory_role == "Head of School"
    assert shares.undertaking_for(p.id) == u


# -- authorisation ---------------------------------------------------------------------
def test_share_without_undertaking_refused(shares):
    p = _proposal(shares)
    _approve(shares, p.id)
    with pytest.raises(UndertakingMissingError, match="no signed undertaking"):
        shares.authorise_share(p.id, LEVELS, now=T0)


def test_share_without_decision_refused(shares):
    p = _proposal(shares)
    _undertaking(shares, p.id)
    with pytest.raises(StateError, match="no approved School Board decision"):
        shares.authorise_share(p.id, LEVELS, now=T0)


def test_limited_access_case_to_recipient_without_agreement_refused(shares):
    """Checked again at execution: here the agreement lapsed after the proposal."""
    p = _proposal(shares, cases=("NSR-0001", "NSR-0003"), dsa=True)
    _approve(shares, p.id)
    _undertaking(shares, p.id)
    shares.recipients.set_data_sharing_agreement(p.recipient_id, False)
    with pytest.raises(
        LevelRefusedError, match=r"no data-sharing agreement.*NSR-0003 \(limited-access"
    ):
        shares.authorise_share(p.id, LEVELS, now=T0)
    shares.recipients.set_data_sharing_agreement(p.recipient_id, True)
    ticket = shares.authorise_share(p.id, LEVELS, now=T0)
    assert ticket.case_ids == ("NSR-0001", "NSR-0003")


def test_unknown_level_refused(shares):
    p = _proposal(shares, dsa=True)
    _approve(shares, p.id)
    _undertaking(shares, p.id)
    with pytest.raises(LevelRefusedError, match="NSR-0002"):
        shares.authorise_share(p.id, {"NSR-0001": "publication"}, now=T0)
    with pytest.raises(LevelRefusedError, match="identifiable"):
        shares.authorise_share(p.id, {**LEVELS, "NSR-0002": "identifiable"}, now=T0)


def test_deactivated_recipient_refused(shares):
    p = _proposal(shares)
    _approve(shares, p.id)
    _undertaking(shares, p.id)
    shares.recipients.deactivate(p.recipient_id)
    with pytest.raises(RecipientRefusedError, match="deactivated"):
        shares.authorise_share(p.id, LEVELS, now=T0)


def test_share_ticket_and_register(shares):
    p = _proposal(shares)
    d = _approve(shares, p.id, members=("Prof Proposer", "Dr A", "Dr B"))
    u = _undertaking(shares, p.id)
    ticket = shares.authorise_share(p.id, LEVELS, now=T0)
    assert ticket.decision.id == d.id and ticket.undertaking.id == u.id
    assert ticket.methods == ("cstore",)
    sent = [
        ("NSR-0001", "1.2.826.0.1.1", SHA),
        ("NSR-0002", "1.2.826.0.1.2", "cd" * 32),
        ("NSR-0002", "1.2.826.0.1.3", "ef" * 32),
    ]
    with pytest.raises(InvalidInputError, match="no public key"):
        shares.record_share_execution(p.id, sent, "package", T0, executed_by="op")
    with pytest.raises(NotAuthorisedError, match="NSR-0009 are not in share proposal"):
        shares.record_share_execution(
            p.id, [("NSR-0009", "1.2.3", SHA)], "cstore", T0, executed_by="op"
        )
    sid = shares.record_share_execution(
        p.id, sent, "cstore", T0 + timedelta(hours=1), executed_by="op"
    )
    assert shares.get(p.id).status == "shared"
    # The register matches what was sent, instance by instance.
    received = {(e.case_id, e.sop_instance_uid, e.sha256) for e in shares.share_manifest(sid)}
    assert received == set(sent)
    (entry,) = shares.share_log()
    assert entry["recipient"] == "Mersey School of Radiology"
    assert entry["destination"] == "MERSEY_TA@10.0.0.5:11112"
    assert entry["minute_reference"] == "SB/2025/03/4.2"
    assert entry["approvers"] == ["Dr A", "Dr B"]
    assert entry["undertaking_sha256"] == SHA
    assert entry["case_ids"] == ["NSR-0001", "NSR-0002"] and entry["instance_count"] == 3
    assert entry["status"] == "held by recipient"

    rid = shares.request_removal(
        sid, "deletion", "Patient objection", "personnel.a", now=T0 + timedelta(days=1)
    )
    assert shares.share_log()[0]["status"] == "deletion requested"
    shares.record_confirmation(
        rid, "Dr Lead", date(2025, 3, 5), "email 2025-03-05", now=T0 + timedelta(days=2)
    )
    log = shares.share_log()
    assert log[0]["status"] == "deletion confirmed"
    assert log[0]["requests"][0]["confirmations"][0]["confirmed_by"] == "Dr Lead"

    rows = list(csv.DictReader(io.StringIO(share_log_csv(log))))
    assert len(rows) == 1 and rows[0]["case_ids"] == "NSR-0001;NSR-0002"
    assert rows[0]["approvers"] == "Dr A;Dr B" and rows[0]["instance_count"] == "3"
    assert json.loads(share_log_json(log))[0]["manifest_sha256"] == entry["manifest_sha256"]


def test_revocation_stops_further_shares(shares):
    p = _proposal(shares)
    _approve(shares, p.id)
    _undertaking(shares, p.id)
    sid = shares.record_share_execution(
        p.id, [("NSR-0001", "1.2.3", SHA)], "cstore", T0, executed_by="op"
    )
    shares.request_removal(sid, "revocation", "Board withdrew consent", "chair", now=T0)
    with pytest.raises(StateError, match="revoked"):
        shares.authorise_share(p.id, LEVELS, now=T0)


def test_csv_neutralises_formulas():
    log = [dict.fromkeys(CSV_COLUMNS, "=HYPERLINK(1)")]
    assert "'=HYPERLINK" in share_log_csv(log)


def test_requests_and_confirmations_need_existing_records(shares):
    from archive.governance.errors import NotFoundError

    with pytest.raises(NotFoundError, match="not in the register"):
        shares.request_removal(99, "deletion", "r", "p", now=T0)
    with pytest.raises(NotFoundError, match="does not exist"):
        shares.record_confirmation(99, "x", date(2025, 3, 3), "e", now=T0)
    with pytest.raises(InvalidInputError, match="revocation' or 'deletion"):
        shares.request_removal(1, "shred", "r", "p", now=T0)


def test_migration_keeps_typed_in_approvers_but_never_counts_them(tmp_path, policy):
    """Issue 21: a decision recorded before members voted themselves (names typed in by
    the recorder) keeps its minutes, counts nobody, and its proposal waits for votes."""
    from sqlalchemy import text

    from archive.db import dialect, migrate
    from archive.governance import _store
    from tests.unit.old_schemas import GOVERNANCE_STEPS

    conn = connect(tmp_path / "old.db")
    # The archive before issue 21: on SQLite its own script; on PostgreSQL (where
    # nothing translates SQLite SQL any more) the declared step 1, the same tables.
    old = GOVERNANCE_STEPS[:1] if dialect(conn) == "sqlite" else _store.SCHEMA_STEPS[:1]
    migrate(conn, _store.ROOM, old)
    conn.execute(
        text(
            "INSERT INTO governance_recipients (organisation, kind, contact, public_key,"
            " data_sharing_agreement, added_by, added_at) VALUES ('Mersey', 'uk_radiology_school',"
            " 'c', 'age1x', 1, 'p', '2025-03-01T00:00:00+00:00')"
        )
    )
    conn.execute(
        text(
            "INSERT INTO governance_share_proposals (recipient_id, purpose, proposer, status,"
            " created_at, policy_version) VALUES (1, 'radiology_training', 'Prof P', 'approved',"
            " '2025-03-01T00:00:00+00:00', 'v')"
        )
    )
    conn.execute(text("INSERT INTO governance_share_proposal_cases VALUES (1, 'NSR-0001')"))
    conn.execute(
        text(
            "INSERT INTO governance_board_decisions (subject, proposal_id, outcome, meeting_date,"
            " minute_reference, decision_text, receiving_recipient_id, quorum_required,"
            " quorum_counted, recorded_by, recorded_at, policy_version) VALUES ('share', 1,"
            " 'approved', '2025-03-01', 'm', 't', 1, 2, 2, 'local-operator',"
            " '2025-03-01T00:00:00+00:00', 'v')"
        )
    )
    conn.execute(
        text(
            "INSERT INTO governance_board_votes (decision_id, member, counted, note)"
            " VALUES (1, :member, 1, '')"
        ),
        [{"member": "Dr A"}, {"member": "Dr B"}],
    )
    shares = Shares(conn, policy)  # migrates
    d = shares.decision_for(1)
    assert d.quorum_counted == 0 and not d.in_force
    assert [(v.member, v.self_cast) for v in d.votes] == [("Dr A", False), ("Dr B", False)]
    assert "not self-cast" in d.votes[0].note
    assert shares.get(1).status == "proposed"
    d = shares.vote(1, by=BoardVote.of("Dr A", BOARD), now=T0)
    assert d.quorum_counted == 1 and [v.self_cast for v in d.votes] == [True, False]
    d = shares.vote(1, by=BoardVote.of("Dr C", BOARD), now=T0)
    assert d.in_force and shares.get(1).status == "approved"
