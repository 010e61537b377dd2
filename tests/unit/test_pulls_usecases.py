"""Pulls as use cases (issue 21) and their REST adapter under the fake orthanc: who may
pull is actions.toml's pull.create; nothing is sent unless every case and the
workstation check out; each case's pull is recorded and audited as the person."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from archive.access.principal import Principal
from archive.catalogue import Catalogue
from archive.core import Ports, Refusal
from archive.db import connect
from archive.governance import PullInventory
from archive.pulls import usecases as up
from plugins import pulls_routes
from tests.fake_orthanc import FakeOrthanc
from tests.unit.test_catalogue import NOW, study
from tests.unit.test_catalogue_routes import Services, api, as_, with_filter  # noqa: F401

POLICIES = Path(__file__).resolve().parents[2] / "policies"


class Audit:
    def __init__(self) -> None:
        self.events: list = []

    def append(self, event) -> int:
        self.events.append(event)
        return len(self.events)


@dataclass(frozen=True)
class Node:
    aet: str = "WS01"


def make_room(conn, audit, sent: list) -> up.PullRoom:
    catalogue = Catalogue(conn, "NSR", scanner=lambda text: [])
    ports = Ports(db=conn, audit=audit, policies_dir=POLICIES, source="test")

    def send(case, node):
        sent.append((case.case_id, node.aet))
        return up.Sent(3)

    return up.PullRoom(ports, catalogue, lambda name: Node() if name == "ws-01" else None, send)


@pytest.fixture
def room(tmp_path: Path):
    conn = connect(tmp_path / "archive.db")
    catalogue = Catalogue(conn, "NSR", scanner=lambda text: [])
    for n in (1, 2):
        catalogue.upsert_from_study(study(n), f"o{n}", NOW)
    catalogue.set_status("NSR-2026-00002", "quarantined")
    sent: list = []
    made = make_room(conn, Audit(), sent)
    made.sent = sent
    return made


TRN = Principal("trn", ("trainer",), True)


def test_pull_sends_records_and_audits_as_the_person(room) -> None:
    done = up.pull_cases(room, TRN, "ws-01", ["NSR-2026-00001"])
    assert done.to_dict()["pulled"][0]["instances"] == 3 and room.sent == [
        ("NSR-2026-00001", "WS01")
    ]
    assert PullInventory(room.ports.db).inventory() == {"ws-01": ["NSR-2026-00001"]}
    (event,) = room.ports.audit.events
    assert (event.action, event.outcome, event.actor) == ("governance.pull", "success", "trn")


def test_pull_refusals_say_why_and_send_nothing(room) -> None:
    untrained = up.pull_cases(room, Principal("u", ("registrar",), False), "ws-01",
                              ["NSR-2026-00001"])  # fmt: skip
    assert untrained.code == "training" and untrained.next
    board = up.pull_cases(room, Principal("b", ("board_member",), True), "ws-01",
                          ["NSR-2026-00001"])  # fmt: skip
    assert board.code == "forbidden" and "pull.create" in board.reason
    unreleased = up.pull_cases(room, TRN, "ws-01", ["NSR-2026-00001", "NSR-2026-00002"])
    assert unreleased.code == "not_found" and "NSR-2026-00002" in unreleased.reason
    unknown_ws = up.pull_cases(room, TRN, "pacs", ["NSR-2026-00001"])
    assert isinstance(unknown_ws, Refusal) and unknown_ws.code == "not_found"
    assert room.sent == [] and PullInventory(room.ports.db).inventory() == {}
    assert {e.outcome for e in room.ports.audit.events} == {"denied"}


def test_pull_route_refusal_and_inventory(api, monkeypatch) -> None:  # noqa: F811
    services = api.services
    fake = with_filter(FakeOrthanc(), services.store)
    services.orthanc = fake
    sent: list = []
    monkeypatch.setattr(
        pulls_routes, "pull_room",
        lambda s, source="rest": make_room(s.conn, s.runtime.audit, sent),
    )  # fmt: skip
    pulls_routes.register(fake, services)
    body = {"cases": ["NSR-2026-00001"], "workstation": "ws-01"}
    ok = fake.call("POST", "/teaching/pulls", headers=as_("reg"), body=body)
    assert ok.status == 200 and ok.json()["pulled"][0]["case_id"] == "NSR-2026-00001"
    gone = fake.call("POST", "/teaching/pulls", headers=as_("reg"),
                     body={"cases": ["NSR-2026-00001"], "workstation": "nowhere"})  # fmt: skip
    assert gone.status == 404 and "not a registered suite workstation" in gone.json()["error"]
    untrained = fake.call("POST", "/teaching/pulls", headers=as_("untrained"), body=body)
    assert untrained.status == 403 and "training" in untrained.json()["error"]
    listed = fake.call("GET", "/teaching/pulls", headers=as_("pat"))
    assert listed.json()["inventory"] == {"ws-01": ["NSR-2026-00001"]}
    assert fake.call("GET", "/teaching/pulls", headers=as_("ann", "wrong")).status == 401
    assert sent == [("NSR-2026-00001", "WS01")]
