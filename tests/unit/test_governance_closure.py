"""Closure (issue 10): plan, Board decision, transfer/receipt, the wipe gate, certificate."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from archive.db import connect
from archive.governance import tables
from archive.governance.board import BoardVote
from archive.governance.closure.certificate import (
    Media,
    Person,
    SanitizationStep,
    Tool,
    Verification,
    WipeCertificate,
    default_steps,
    sign_certificate,
)
from archive.governance.closure.records import ClosureInputs, ClosureRecords, closure_plan
from archive.governance.errors import (
    CertificateError,
    InvalidInputError,
    NotAuthorisedError,
    RecipientRefusedError,
    StateError,
    WipeRefusedError,
)
from archive.governance.policy import load_policy
from archive.governance.pulls import PullInventory
from archive.governance.sharing.recipients import DicomNode

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
MEETING = date(2025, 5, 30)
SENT = [
    ("NSR-0001", "1.2.826.0.1.1", "aa" * 32),
    ("NSR-0001", "1.2.826.0.1.2", "bb" * 32),
    ("NSR-0002", "1.2.826.0.1.3", "cc" * 32),
]
MEMBERS = [BoardVote.of(n, ["board_member"]) for n in ("Chair", "Member B")]


@pytest.fixture
def conn(tmp_path):
    return connect(tmp_path / "archive.db")


@pytest.fixture
def closure(conn):
    return ClosureRecords(conn, load_policy())


def _trust(closure, kind="trust_teaching_collection"):
    return closure.recipients.add(
        "Royal Infirmary Teaching Collection",
        kind,
        "pacs.manager@example.nhs.uk",
        dicom_node=DicomNode("RI_TEACH", "10.1.1.1", 104),
        added_by="p",
        now=T0,
    )


def _in_force(closure, decision):
    """Every other member votes for it themselves (issue 21)."""
    for member in MEMBERS[1:]:
        decision = closure.vote(decision.id, by=member, now=T0)
    return decision


def _decide_transfer(closure):
    r = _trust(closure)
    return _in_force(
        closure,
        closure.record_decision(
            "transfer",
            meeting_date=MEETING,
            minute_reference="SB/2025/05/9",
            by=MEMBERS[0],
            decision_text="Transfer to the Royal Infirmary collection.",
            receiving_recipient_id=r.id,
            now=T0,
        ),
    )


def _decide_destroy(closure):
    return _in_force(
        closure,
        closure.record_decision(
            "destroy",
            meeting_date=MEETING,
            minute_reference="SB/2025/05/10",
            by=MEMBERS[0],
            decision_text="No collection can take it; destroy.",
            now=T0,
        ),
    )


def _receipt(closure, transfer, **kw):
    args = dict(
        manifest_sha256=transfer.manifest_sha256,
        received_by="PACS manager",
        organisation="Royal Infirmary Teaching Collection",
        received_on=date(2025, 6, 2),
        signed_document_sha256="dd" * 32,
        stored_ref="vault:receipts/1",
        recorded_by="personnel.a",
        now=T0 + timedelta(hours=1),
    )
    args.update(kw)
    return closure.record_receipt(transfer.id, **args)


def _confirm_two(closure, now=T0 + timedelta(hours=2)):
    closure.confirm_wipe("Alice Personnel", ["personnel"], now=now)
    closure.confirm_wipe("Bob Personnel", ["personnel", "tpd"], now=now)


# -- plan --------------------------------------------------------------------------------
def test_plan_lists_inventory_and_steps():
    plan = closure_plan(
        ClosureInputs(
            case_count=120,
            instance_count=5400,
            bytes_total=3 * 2**30,
            workstation_inventory={"MACLAB-02": ["NSR-2", "NSR-1"], "MACLAB-09": []},
            open_shares=[{"share_id": 4, "recipient": "RCR"}],
            open_exports=[{"request": "REMOVAL-000003"}],
            keys=[{"id": "kek-1", "kind": "kek"}, {"id": "backup-1", "kind": "backup"}],
            volumes=[{"kind": "gocryptfs", "path": "HOME/volume"}],
        )
    )
    assert plan.workstations == {"MACLAB-02": ["NSR-1", "NSR-2"]}
    d = plan.to_dict()
    assert d["cases"] == 120 and d["bytes"] == 3 * 2**30 and len(d["keys"]) == 2
    text = plan.render_text()
    assert "120 cases, 5400 instances" in text and "3.00 GiB" in text
    assert "MACLAB-02: 2 case(s)" in text and "Open shares: 1" in text
    assert any("Wipe and attest 1 workstation" in a for a in plan.actions)
    assert any("destroy 2 key(s)" in a for a in plan.actions)
    assert plan.actions[0].startswith("Record the School Board's decision")


def test_plan_refuses_bad_counts():
    with pytest.raises(InvalidInputError, match="case_count"):
        closure_plan(ClosureInputs(case_count=-1, instance_count=0, bytes_total=0))


# -- decision ------------------------------------------------------------------------------
def test_transfer_only_to_trust_teaching_collection(closure):
    r = _trust(closure, kind="uk_radiology_school")
    with pytest.raises(RecipientRefusedError, match="only be transferred to an active"):
        closure.record_decision(
            "transfer",
            meeting_date=MEETING,
            minute_reference="m",
            by=MEMBERS[0],
            decision_text="x",
            receiving_recipient_id=r.id,
            now=T0,
        )
    with pytest.raises(InvalidInputError, match="must name the receiving"):
        closure.record_decision(
            "transfer",
            meeting_date=MEETING,
            minute_reference="m",
            by=MEMBERS[0],
            decision_text="x",
            now=T0,
        )
    with pytest.raises(InvalidInputError, match="outcome"):
        closure.record_decision(
            "sell",
            meeting_date=MEETING,
            minute_reference="m",
            by=MEMBERS[0],
            decision_text="x",
            now=T0,
        )


def test_closure_decision_needs_quorum_of_own_votes(closure):
    """Issue 21: in force only once enough members voted themselves, each once."""
    d = closure.record_decision(
        "destroy",
        meeting_date=MEETING,
        minute_reference="m",
        by=MEMBERS[0],
        decision_text="x",
        now=T0,
    )
    assert d.quorum_counted == 1 and closure.current_decision() is None
    with pytest.raises(StateError, match="already voted"):
        closure.vote(d.id, by=BoardVote.of("chair", ["board_member"]), now=T0)
    with pytest.raises(NotAuthorisedError, match="not a School Board member"):
        closure.vote(d.id, by=BoardVote.of("Tom", ["personnel"]), now=T0)
    with pytest.raises(WipeRefusedError, match="no School Board decision"):
        closure.check_wipe_allowed(T0)
    d = closure.vote(d.id, by=MEMBERS[1], now=T0)
    assert d.quorum_counted == 2 and closure.current_decision().id == d.id


# -- transfer and receipt --------------------------------------------------------------------
def test_transfer_needs_transfer_decision(closure):
    with pytest.raises(StateError, match="no School Board decision"):
        closure.record_transfer(SENT, "cstore", executed_by="op", now=T0)
    _decide_destroy(closure)
    with pytest.raises(StateError, match="decided to destroy"):
        closure.record_transfer(SENT, "cstore", executed_by="op", now=T0)


def test_receipt_must_match_manifest(closure):
    _decide_transfer(closure)
    t = closure.record_transfer(SENT, "cstore", executed_by="op", now=T0)
    assert t.instance_count == 3
    assert {
        (e.case_id, e.sop_instance_uid, e.sha256) for e in closure.transfer_manifest(t.id)
    } == set(SENT)
    with pytest.raises(StateError, match="does not match transfer"):
        _receipt(closure, t, manifest_sha256="ee" * 32)
    with pytest.raises(StateError, match="does not match"):
        _receipt(closure, t, manifest_sha256=None, received_manifest=SENT[:2])
    with pytest.raises(NotAuthorisedError, match="Board named"):
        _receipt(closure, t, organisation="Someone Else")
    r = _receipt(closure, t, manifest_sha256=None, received_manifest=list(reversed(SENT)))
    assert r.manifest_sha256 == t.manifest_sha256 and r.transfer_id == t.id


# -- the wipe gate -----------------------------------------------------------------------------
def test_wipe_refused_without_anything(closure):
    with pytest.raises(WipeRefusedError, match="no School Board decision.*2 different staff"):
        closure.check_wipe_allowed(T0)


def test_wipe_refused_without_receipt(closure):
    _decide_transfer(closure)
    closure.record_transfer(SENT, "cstore", executed_by="op", now=T0)
    _confirm_two(closure)
    with pytest.raises(WipeRefusedError, match="no receipt from the receiving collection"):
        closure.check_wipe_allowed(T0 + timedelta(hours=3))
    with pytest.raises(WipeRefusedError):
        closure.authorise_wipe(T0 + timedelta(hours=3))
    assert closure.latest_authorisation() is None


def test_wipe_refused_with_one_person(closure):
    _decide_destroy(closure)
    closure.confirm_wipe("Alice Personnel", ["personnel"], now=T0)
    closure.confirm_wipe("alice  personnel", ["personnel"], now=T0 + timedelta(minutes=1))
    with pytest.raises(WipeRefusedError, match=r"1 did \(Alice Personnel\)"):
        closure.check_wipe_allowed(T0 + timedelta(minutes=2))


def test_non_personnel_cannot_confirm(closure):
    _decide_destroy(closure)
    with pytest.raises(NotAuthorisedError, match="only school staff"):
        closure.confirm_wipe("Dr Trainer", ["trainer", "board_member"], now=T0)


def test_confirmation_needs_a_decision(closure):
    with pytest.raises(StateError, match="no School Board decision"):
        closure.confirm_wipe("Alice", ["personnel"], now=T0)


def test_stale_confirmations_do_not_count(closure):
    _decide_destroy(closure)
    _confirm_two(closure, now=T0)
    hours = closure.policy.wipe_confirmation_valid_hours
    closure.check_wipe_allowed(T0 + timedelta(hours=hours - 1))
    with pytest.raises(WipeRefusedError, match="0 did"):
        closure.check_wipe_allowed(T0 + timedelta(hours=hours + 1))


def test_confirmations_belong_to_their_decision(closure):
    _decide_destroy(closure)
    _confirm_two(closure)
    _decide_transfer(closure)  # a new decision supersedes; earlier confirmations lapse
    with pytest.raises(WipeRefusedError, match="no receipt.*0 did"):
        closure.check_wipe_allowed(T0 + timedelta(hours=3))


def test_wipe_allowed_after_receipt_and_two_people(closure):
    _decide_transfer(closure)
    t = closure.record_transfer(SENT, "cstore", executed_by="op", now=T0)
    _receipt(closure, t)
    _confirm_two(closure)
    assert closure.check_wipe_allowed(T0 + timedelta(hours=3)) is None
    auth = closure.authorise_wipe(T0 + timedelta(hours=3))
    assert auth.confirmers == ("Alice Personnel", "Bob Personnel")


def test_wipe_allowed_after_destroy_decision_and_two_people(closure):
    _decide_destroy(closure)
    _confirm_two(closure)
    closure.check_wipe_allowed(T0 + timedelta(hours=3))


# -- certificate ---------------------------------------------------------------------------------
def _certificate(attestations=(), **kw):
    args = dict(
        certificate_id="NSR-WIPE-2025-001",
        performed_by=Person("Alice Personnel", "Suite manager", "Northern School of Radiology"),
        media=(
            Media("keyring (key-encryption keys)", "archive home keys/", "kek-1"),
            Media("gocryptfs volume", "archive home volume/", "vol-7f3a"),
        ),
        steps=default_steps(keys_destroyed=2, files_deleted=5400, volume="gocryptfs.conf"),
        tool=Tool("teaching-archive close wipe", "0.1.0"),
        verification=Verification(
            "Quick Sampling",
            "passed",
            "no key unwraps 64 sampled files; no DICM magic under home; canary absent",
        ),
        sanitized_at=T0 + timedelta(hours=4),
        validated_by=Person("Bob Personnel", "Deputy manager", "Northern School of Radiology"),
        decision_reference="Board 2025-05-30 minute SB/2025/05/9",
        workstation_attestations=tuple(attestations),
    )
    args.update(kw)
    return WipeCertificate(**args)


def test_certificate_fields_json_and_text():
    cert = _certificate()
    d = json.loads(cert.to_json_bytes())
    assert d["steps"][0] == {
        "method_type": "Purge",
        "method_used": "Cryptographic Erase",
        "details": d["steps"][0]["details"],
    }
    assert d["steps"][1]["method_type"] == "Clear"
    assert d["tool"] == {"name": "teaching-archive close wipe", "version": "0.1.0"}
    assert d["verification"]["result"] == "passed"
    assert d["performed_by"]["name"] == "Alice Personnel"
    assert d["media"][1]["identifier"] == "vol-7f3a"
    assert d["sanitized_at"].startswith("2025-06-02T13:00")
    text = cert.render_text()
    for needle in (
        "CERTIFICATE OF SANITIZATION",
        "Method type Purge",
        "Cryptographic Erase",
        "method type Clear",
        "Tool used (and version):      teaching-archive close wipe 0.1.0",
        "Verification result:          PASSED",
        "VALIDATION",
        "Bob Personnel",
        "Serial / identifier: kek-1",
    ):
        assert needle.lower() in text.lower()


def test_certificate_must_purge_by_crypto_erase_first():
    clear_only = (
        SanitizationStep("Clear", "Overwrite", "one pass"),
        SanitizationStep("Clear", "Delete", "rm"),
    )
    with pytest.raises(CertificateError, match="Purge by Cryptographic Erase"):
        _certificate(steps=clear_only)
    purge_only = (SanitizationStep("Purge", "Cryptographic Erase", "keys gone"),)
    with pytest.raises(CertificateError, match="then a Clear"):
        _certificate(steps=purge_only)
    with pytest.raises(CertificateError, match="method type"):
        SanitizationStep("Shred", "x", "y")
    with pytest.raises(CertificateError, match="media"):
        _certificate(media=())


def test_signing_hook_and_refusals():
    key = Ed25519PrivateKey.generate()
    signed = sign_certificate(_certificate(), key.sign)
    key.public_key().verify(signed.signature, signed.payload)  # raises if wrong
    assert json.loads(signed.to_json())["sha256"] == signed.sha256
    with pytest.raises(CertificateError, match="verification did not pass"):
        sign_certificate(
            _certificate(verification=Verification("Full", "failed", "DICM found")), key.sign
        )
    same = Person("alice personnel", "x", "y")
    with pytest.raises(CertificateError, match="must not be the person who performed"):
        sign_certificate(_certificate(validated_by=same), key.sign)

    def broken(_: bytes) -> bytes:
        raise RuntimeError("vault locked")

    with pytest.raises(CertificateError, match="unlock the audit key"):
        sign_certificate(_certificate(), broken)


def test_certificate_final_only_after_workstation_attestations(conn, closure):
    pulls = PullInventory(conn)
    pulls.record_pull("NSR-0001", "MACLAB-01", "dr.a", T0 - timedelta(days=3))
    pulls.record_pull("NSR-0002", "MACLAB-02", "dr.a", T0 - timedelta(days=2))
    key = Ed25519PrivateKey.generate()
    with pytest.raises(CertificateError, match="no wipe was authorised"):
        closure.finalise_certificate(_certificate(), key.sign, pulls=pulls, now=T0)
    _decide_destroy(closure)
    _confirm_two(closure)
    closure.authorise_wipe(T0 + timedelta(hours=3))
    pulls.attest_wipe(
        "MACLAB-01",
        "IT tech",
        "FileVault key erase + reinstall",
        wiped_at=T0 + timedelta(hours=4),
        now=T0 + timedelta(hours=5),
    )
    with pytest.raises(CertificateError, match="not attested wiped: MACLAB-02"):
        closure.finalise_certificate(
            _certificate(), key.sign, pulls=pulls, now=T0 + timedelta(hours=5)
        )
    pulls.attest_wipe(
        "MACLAB-02",
        "IT tech",
        "FileVault key erase + reinstall",
        wiped_at=T0 + timedelta(hours=4),
        now=T0 + timedelta(hours=5),
    )
    with pytest.raises(
        CertificateError, match="omits the wipe attestation of MACLAB-01, MACLAB-02"
    ):
        closure.finalise_certificate(
            _certificate(), key.sign, pulls=pulls, now=T0 + timedelta(hours=5)
        )
    att = [a.to_dict() for a in pulls.latest_attestations().values()]
    cert = _certificate(att)
    signed = closure.finalise_certificate(cert, key.sign, pulls=pulls, now=T0 + timedelta(hours=6))
    key.public_key().verify(signed.signature, signed.payload)
    assert "MACLAB-02: wiped" in signed.text
    row = conn.execute(select(tables.wipe_certificates.c.certificate_sha256)).fetchone()
    assert row[0] == signed.sha256


def test_certificate_rejects_unrecorded_attestation(conn, closure):
    pulls = PullInventory(conn)
    _decide_destroy(closure)
    _confirm_two(closure)
    closure.authorise_wipe(T0 + timedelta(hours=3))
    fake = ({"workstation": "MACLAB-77", "wiped_at": "x", "attested_by": "y", "method": "z"},)
    with pytest.raises(CertificateError, match="not on record for MACLAB-77"):
        closure.finalise_certificate(_certificate(fake), lambda b: b"sig", pulls=pulls, now=T0)


def test_policy_requires_two_confirmations(tmp_path):
    import shutil

    from archive.governance.errors import GovernancePolicyError
    from archive.paths import POLICIES_DIR

    shutil.copytree(POLICIES_DIR / "governance", tmp_path / "governance")
    path = tmp_path / "governance" / "governance.toml"
    path.write_text(
        path.read_text().replace(
            "wipe_confirmations_required = 2", "wipe_confirmations_required = 1"
        )
    )
    with pytest.raises(GovernancePolicyError, match="two people"):
        load_policy(tmp_path)
