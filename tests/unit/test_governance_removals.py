"""Removal requests (issue 8): purposes, levels, written approval, expiry, downloads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from archive.db import connect
from archive.errors import ArchiveError
from archive.governance.errors import (
    DownloadLimitError,
    ExpiredError,
    GovernanceError,
    InvalidInputError,
    LevelRefusedError,
    NotAuthorisedError,
    NotFoundError,
    PurposeRefusedError,
    StateError,
)
from archive.governance.policy import load_policy
from archive.governance.removals.records import RemovalRequests

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LEVELS = {"NSR-0001": "publication", "NSR-0002": "publication", "NSR-0003": "limited-access"}
SHA = "ab" * 32


@pytest.fixture
def policy():
    return load_policy()


@pytest.fixture
def reg(tmp_path, policy):
    return RemovalRequests(connect(tmp_path / "archive.db"), policy)


def _request(reg, cases=("NSR-0001",), purpose="teaching_materials", requester="Dr Trainer"):
    return reg.create(
        list(cases),
        purpose,
        "Regional teaching day slides",
        requester,
        ["trainer"],
        case_levels=LEVELS,
        now=T0,
    )


def _approve(reg, rid, **kw):
    args = dict(
        approver="Dr Head",
        approver_roles=["head_of_school"],
        text="Approved for the regional teaching day only.",
        now=T0 + timedelta(hours=1),
    )
    args.update(kw)
    return reg.approve(rid, **args)


def test_errors_are_archive_errors():
    assert issubclass(PurposeRefusedError, GovernanceError)
    assert issubclass(GovernanceError, ArchiveError)


def test_create_records_pending_request(reg):
    req = _request(reg, cases=("NSR-0001", "NSR-0003", "NSR-0001"))
    assert req.status == "pending"
    assert req.case_ids == ("NSR-0001", "NSR-0003")
    assert req.case_levels == {"NSR-0001": "publication", "NSR-0003": "limited-access"}
    assert req.requester == "Dr Trainer"
    assert req.policy_version == reg.policy.version
    assert reg.get(req.id) == req
    assert [r.id for r in reg.list()] == [req.id]
    assert reg.list(status="approved") == []


@pytest.mark.parametrize(
    "purpose", ["commercial", "Commercial_Sale", "sale", "commercial licensing", "marketing"]
)
def test_commercial_purpose_refused_outright(reg, purpose):
    with pytest.raises(PurposeRefusedError, match="never removed or sold for commercial"):
        _request(reg, purpose=purpose)
    assert reg.list() == []


@pytest.mark.parametrize("purpose", ["holiday_album", "research", "", "   "])
def test_unknown_purpose_refused(reg, purpose):
    with pytest.raises(PurposeRefusedError, match="teaching_materials"):
        _request(reg, purpose=purpose)


@pytest.mark.parametrize(
    "purpose", ["publication_journal", "publication_book_chapter", "publication_elearning"]
)
def test_publication_with_limited_access_case_refused(reg, purpose):
    with pytest.raises(LevelRefusedError, match=r"NSR-0003 \(limited-access\)"):
        _request(reg, cases=("NSR-0001", "NSR-0003"), purpose=purpose)
    assert reg.list() == []


def test_publication_with_publication_cases_accepted(reg):
    req = _request(reg, cases=("NSR-0001", "NSR-0002"), purpose="publication_journal")
    assert req.purpose == "publication_journal"


def test_teaching_materials_may_carry_limited_access(reg):
    assert _request(reg, cases=("NSR-0003",)).status == "pending"


def test_case_without_known_level_refused(reg):
    with pytest.raises(LevelRefusedError, match="NSR-9999"):
        _request(reg, cases=("NSR-9999",))


def test_unknown_level_refused_fail_closed(reg):
    with pytest.raises(LevelRefusedError, match="identifiable"):
        reg.create(
            ["X"],
            "teaching_materials",
            "d",
            "r",
            ["trainer"],
            case_levels={"X": "identifiable"},
            now=T0,
        )


def test_requester_needs_a_role(reg):
    with pytest.raises(NotAuthorisedError, match="none of the roles"):
        reg.create(["NSR-0001"], "teaching_materials", "d", "r", [], case_levels=LEVELS, now=T0)


def test_naive_datetime_refused(reg):
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        reg.create(
            ["NSR-0001"],
            "teaching_materials",
            "d",
            "r",
            ["trainer"],
            case_levels=LEVELS,
            now=datetime(2025, 1, 1),
        )


def test_empty_case_list_refused(reg):
    with pytest.raises(InvalidInputError, match="at least one case"):
        _request(reg, cases=())


def test_approval_by_tpd_is_written_record(reg):
    req = _request(reg, cases=("NSR-0001", "NSR-0002"))
    expires = T0 + timedelta(days=7)
    a = _approve(
        reg,
        req.id,
        approver="Dr Tpd",
        approver_roles=["trainer", "tpd"],
        expires_at=expires,
        max_downloads=2,
    )
    assert (a.approver, a.approver_role) == ("Dr Tpd", "tpd")
    assert a.approved_at == T0 + timedelta(hours=1)
    assert a.text == "Approved for the regional teaching day only."
    assert a.case_ids == ("NSR-0001", "NSR-0002")
    assert a.expires_at == expires and a.max_downloads == 2 and a.downloads_used == 0
    assert a.reference == f"REMOVAL-{req.id:06d}"
    stored = reg.get(req.id)
    assert stored.status == "approved" and stored.approval == a
    assert stored.to_dict()["approval"]["approver_role"] == "tpd"


def test_approval_defaults_from_policy(reg, policy):
    req = _request(reg)
    a = _approve(reg, req.id)
    assert a.expires_at == T0 + timedelta(hours=1, days=policy.default_expiry_days)
    assert a.max_downloads == policy.default_max_downloads


def test_self_approval_refused(reg):
    req = reg.create(
        ["NSR-0001"], "teaching_materials", "d", "Dr Tpd", ["tpd"], case_levels=LEVELS, now=T0
    )
    with pytest.raises(NotAuthorisedError, match="made removal request .* cannot decide it"):
        _approve(reg, req.id, approver="  dr   TPD ", approver_roles=["tpd"])
    with pytest.raises(NotAuthorisedError, match="cannot decide it"):
        reg.refuse(req.id, "Dr Tpd", ["tpd"], "no", now=T0)
    assert reg.get(req.id).status == "pending"


@pytest.mark.parametrize("roles", [["trainer"], ["personnel"], ["board_member"], []])
def test_approver_without_role_refused(reg, roles):
    req = _request(reg)
    with pytest.raises(NotAuthorisedError, match="only the Head of School or a TPD"):
        _approve(reg, req.id, approver_roles=roles)
    assert reg.get(req.id).status == "pending"


def test_refusal_records_reason_and_is_final(reg):
    req = _request(reg)
    r = reg.refuse(req.id, "Dr Head", ["head_of_school"], "Destination not secure.", now=T0)
    assert r.reason == "Destination not secure." and r.approver_role == "head_of_school"
    assert reg.get(req.id).status == "refused"
    with pytest.raises(StateError, match="already refused"):
        _approve(reg, req.id)
    with pytest.raises(StateError, match="was refused"):
        reg.authorise_export(req.id, T0 + timedelta(hours=2))


def test_refusal_needs_reason(reg):
    req = _request(reg)
    with pytest.raises(InvalidInputError, match="reason is required"):
        reg.refuse(req.id, "Dr Head", ["head_of_school"], "  ", now=T0)


def test_second_approval_refused(reg):
    req = _request(reg)
    _approve(reg, req.id)
    with pytest.raises(StateError, match="already approved"):
        _approve(reg, req.id, approver="Dr Tpd", approver_roles=["tpd"])


def test_approval_limits(reg, policy):
    req = _request(reg)
    now = T0 + timedelta(hours=1)
    with pytest.raises(InvalidInputError, match="after the approval time"):
        _approve(reg, req.id, expires_at=now)
    with pytest.raises(InvalidInputError, match="at most"):
        _approve(reg, req.id, expires_at=now + timedelta(days=policy.max_expiry_days + 1))
    with pytest.raises(InvalidInputError, match="max_downloads"):
        _approve(reg, req.id, max_downloads=0)
    with pytest.raises(InvalidInputError, match="max_downloads"):
        _approve(reg, req.id, max_downloads=policy.max_downloads_limit + 1)
    with pytest.raises(InvalidInputError, match="approval text"):
        _approve(reg, req.id, text="")
    assert reg.get(req.id).status == "pending"


def test_export_refused_while_pending(reg):
    req = _request(reg)
    with pytest.raises(StateError, match="still pending.*written approval"):
        reg.authorise_export(req.id, T0)


def test_unknown_request(reg):
    with pytest.raises(NotFoundError, match="does not exist"):
        reg.authorise_export(42, T0)


def test_download_limit_enforced(reg):
    req = _request(reg)
    _approve(reg, req.id, max_downloads=2)
    t1 = reg.authorise_export(req.id, T0 + timedelta(hours=2))
    assert (t1.download_number, t1.downloads_remaining) == (1, 1)
    assert reg.get(req.id).status == "exported"
    t2 = reg.authorise_export(req.id, T0 + timedelta(hours=3))
    assert (t2.download_number, t2.downloads_remaining) == (2, 0)
    with pytest.raises(DownloadLimitError, match="allowed 2 download"):
        reg.authorise_export(req.id, T0 + timedelta(hours=4))
    assert [d["download_number"] for d in reg.downloads(req.id)] == [1, 2]
    assert reg.get(req.id).approval.downloads_used == 2


def test_expiry_enforced(reg):
    req = _request(reg)
    _approve(reg, req.id, expires_at=T0 + timedelta(days=1), max_downloads=3)
    reg.authorise_export(req.id, T0 + timedelta(hours=23))
    assert reg.get(req.id).status_at(T0 + timedelta(days=1)) == "expired"
    with pytest.raises(ExpiredError, match="expired at"):
        reg.authorise_export(req.id, T0 + timedelta(days=1))
    assert reg.get(req.id).status == "expired"
    with pytest.raises(ExpiredError):
        reg.authorise_export(req.id, T0 + timedelta(hours=23))  # recorded expiry is final
    assert reg.get(req.id).approval.downloads_used == 1


def test_downloads_are_atomic_across_connections(tmp_path, policy):
    path = tmp_path / "archive.db"
    reg = RemovalRequests(connect(path), policy)
    req = _request(reg)
    _approve(reg, req.id, max_downloads=3)
    results: list[str] = []

    def worker():
        mine = RemovalRequests(connect(path), policy)
        try:
            mine.authorise_export(req.id, T0 + timedelta(hours=2))
            results.append("ok")
        except DownloadLimitError:
            results.append("limit")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["limit"] * 5 + ["ok"] * 3
    assert reg.get(req.id).approval.downloads_used == 3


def test_export_rechecks_levels_when_given(reg):
    req = _request(reg, cases=("NSR-0001",), purpose="publication_book_chapter")
    _approve(reg, req.id)
    with pytest.raises(LevelRefusedError, match="publication"):
        reg.authorise_export(
            req.id, T0 + timedelta(hours=2), case_levels={"NSR-0001": "limited-access"}
        )
    assert reg.get(req.id).approval.downloads_used == 0
    ticket = reg.authorise_export(req.id, T0 + timedelta(hours=2), case_levels=LEVELS)
    assert ticket.case_ids == ("NSR-0001",)


def test_export_manifest(reg, policy):
    req = _request(reg, cases=("NSR-0001", "NSR-0002"))
    _approve(reg, req.id)
    ticket = reg.authorise_export(req.id, T0 + timedelta(hours=2))
    entries = [
        ("NSR-0002", "1.2.826.0.1.3680043.2.1.2", "cd" * 32),
        ("NSR-0001", "1.2.826.0.1.3680043.2.1.1", SHA),
    ]
    m = reg.export_manifest(entries, ticket, now=T0 + timedelta(hours=2))
    assert m["approval"]["reference"] == ticket.approval_reference
    assert m["approval"]["approver"] == "Dr Head"
    assert [c["case_id"] for c in m["cases"]] == ["NSR-0001", "NSR-0002"]
    assert m["instance_count"] == 2 and m["case_count"] == 2
    assert "property of the Northern School of Radiology" in " ".join(m["terms"].split())
    assert "educational use only" in " ".join(m["terms"].split())
    assert ticket.approval_reference in m["terms"]
    assert "${" not in m["terms"]
    same = reg.export_manifest(list(reversed(entries)), ticket.approval)
    assert same["manifest_sha256"] == m["manifest_sha256"]
    other = reg.export_manifest([entries[0]], ticket)
    assert other["manifest_sha256"] != m["manifest_sha256"]


def test_export_manifest_refuses_uncovered_case_and_bad_entries(reg):
    req = _request(reg)
    a = _approve(reg, req.id)
    with pytest.raises(NotAuthorisedError, match="NSR-0002 are not covered"):
        reg.export_manifest([("NSR-0002", "1.2.3", SHA)], a)
    with pytest.raises(InvalidInputError, match="64 hexadecimal"):
        reg.export_manifest([("NSR-0001", "1.2.3", "xyz")], a)
    with pytest.raises(InvalidInputError, match="SOP instance UID"):
        reg.export_manifest([("NSR-0001", "1.2.03", SHA)], a)
    with pytest.raises(InvalidInputError, match="empty"):
        reg.export_manifest([], a)
    with pytest.raises(InvalidInputError, match="twice"):
        reg.export_manifest([("NSR-0001", "1.2.3", SHA), ("NSR-0001", "1.2.3", "cd" * 32)], a)
