"""The catalogue's use cases (issue 21): authorised from actions.toml, audited once,
refusals with their reason; collections have owners who may share editing."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.access.principal import Principal
from archive.catalogue import Catalogue
from archive.catalogue import usecases as uc
from archive.core import Ports, Refusal
from archive.db import connect
from tests.unit.test_catalogue import NHS, NOW, fake_scan, study

POLICIES = Path(__file__).resolve().parents[2] / "policies"


class Audit:
    def __init__(self) -> None:
        self.events: list = []

    def append(self, event) -> int:
        self.events.append(event)
        return len(self.events)


def who(user: str, *roles: str, trained: bool = True) -> Principal:
    return Principal(user, tuple(roles), trained)


ANN = who("ann", "trainer")  # owns the collection
BOB = who("bob", "trainer")  # another trainer
PAT = who("pat", "personnel")
REG = who("reg", "registrar")


@pytest.fixture
def room(tmp_path: Path) -> uc.CatalogueRoom:
    conn = connect(tmp_path / "archive.db")
    catalogue = Catalogue(conn, "NSR", scanner=fake_scan)
    for n in (1, 2, 3):
        catalogue.upsert_from_study(study(n), f"o{n}", NOW)
    catalogue.set_status("NSR-2026-00003", "quarantined")
    ports = Ports(db=conn, audit=Audit(), policies_dir=POLICIES, source="test")
    return uc.CatalogueRoom(ports, "NSR", scanner=fake_scan)


def records(room) -> list[tuple[str, str, str]]:
    return [(e.action, e.outcome, e.actor) for e in room.ports.audit.events]


def test_edit_is_authorised_audited_once_and_refusals_say_why(room) -> None:
    done = uc.edit_case(room, ANN, "nsr-2026-00001", {"title": "Apical pneumothorax"})
    assert done.case.title == "Apical pneumothorax" and done.case.edited_by == "ann"
    refused = uc.edit_case(room, REG, "NSR-2026-00001", {"title": "X"})
    assert isinstance(refused, Refusal) and "case.edit" in refused.reason and refused.next
    bad = uc.edit_case(room, ANN, "NSR-2026-00001", {"clinical_history": f"NHS {NHS}"})
    assert bad.code == "invalid" and "clinical_history" in bad.reason and NHS not in bad.reason
    missing = uc.annotate_case(room, ANN, "NSR-2026-09999", "keywords", "x")
    assert missing.code == "not_found"
    assert records(room) == [
        ("catalogue.case.edit", "success", "ann"),
        ("catalogue.case.edit", "denied", "reg"),
        ("catalogue.case.edit", "denied", "ann"),
        ("catalogue.case.edit", "denied", "ann"),
    ]
    assert room.ports.audit.events[0].detail == {"fields": "title"}
    assert room.catalogue().get("NSR-2026-00001").clinical_history == ""


def test_untrained_and_anonymous_refused(room) -> None:
    assert uc.view_case(room, who("t", "trainer", trained=False), "NSR-2026-00001").code == (
        "training"
    )
    assert uc.search_cases(room, None).code == "unauthenticated"


def test_only_editors_see_cases_that_are_not_available(room) -> None:
    assert uc.view_case(room, REG, "NSR-2026-00003").code == "not_found"
    assert uc.view_case(room, ANN, "NSR-2026-00003").case.status == "quarantined"
    assert uc.search_cases(room, REG).page.total == 2
    assert uc.search_cases(room, PAT).page.total == 3


def test_collection_owner_edits_and_others_are_refused_with_reason(room) -> None:
    made = uc.create_collection(room, ANN, "FRCR chest")
    cid = made.collection.collection_id
    assert made.collection.owner == "ann"
    assert uc.add_to_collection(room, ANN, cid, ["NSR-2026-00001"]).collection.size == 1
    refused = uc.add_to_collection(room, BOB, cid, ["NSR-2026-00002"])
    assert isinstance(refused, Refusal) and "owner" in refused.reason
    assert "ask the owner" in refused.next
    assert uc.edit_collection(room, BOB, cid, title="Mine now").code == "forbidden"
    assert uc.delete_collection(room, BOB, cid).code == "forbidden"
    # everyone who may view the catalogue reads it
    assert [i.case_id for i in uc.view_collection(room, REG, cid).collection.items] == [
        "NSR-2026-00001"
    ]
    assert uc.create_collection(room, REG, "x").code == "forbidden"
    assert room.catalogue().get_collection(cid).title == "FRCR chest"


def test_shared_editor_may_edit_but_not_share_or_delete(room) -> None:
    cid = uc.create_collection(room, ANN, "Neuro").collection.collection_id
    assert uc.share_collection(room, BOB, cid, ["bob"]).code == "forbidden"
    shared = uc.share_collection(room, ANN, cid, ["bob"])
    assert shared.collection.editors == ["bob"]
    assert uc.add_to_collection(room, BOB, cid, ["NSR-2026-00002"]).collection.size == 1
    assert uc.share_collection(room, BOB, cid, ["bob", "cat"]).code == "forbidden"
    assert uc.delete_collection(room, BOB, cid).code == "forbidden"
    uc.share_collection(room, ANN, cid, [])
    assert uc.remove_from_collection(room, BOB, cid, ["NSR-2026-00002"]).code == "forbidden"


def test_personnel_override_per_policy(room) -> None:
    cid = uc.create_collection(room, ANN, "Exam").collection.collection_id
    assert uc.edit_collection(room, PAT, cid, title="Exam 2026").collection.title == "Exam 2026"
    gone = uc.delete_collection(room, PAT, cid)
    assert gone.collection.collection_id == cid
    assert uc.view_collection(room, PAT, cid).code == "not_found"
    audited = [(a, o) for a, o, _ in records(room)]
    assert ("catalogue.collection.delete", "success") in audited
    target = [e.target for e in room.ports.audit.events if e.action.endswith("create")]
    assert target == [cid]


def test_existing_collections_keep_their_creator_as_owner(room, tmp_path: Path) -> None:
    """Made before owners mattered (by the old catalogue, no editors table yet): the
    recorded creator owns it."""
    old = room.catalogue().create_collection("Legacy", "", "ann")
    assert uc.edit_collection(room, ANN, old.collection_id, title="Legacy 2")
    assert uc.edit_collection(room, BOB, old.collection_id, title="x").code == "forbidden"
