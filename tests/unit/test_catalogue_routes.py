"""The cases and collections REST adapters under the fake orthanc (issue 21): they decode,
call the catalogue's use cases and encode; refusals carry their reason and next step
with the status of the refusal's code; nobody acts in another's name."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from archive.access import AccessStore
from archive.catalogue import Catalogue
from archive.db import connect
from plugins import cases_routes, collections_routes
from tests.fake_orthanc import FakeOrthanc
from tests.unit.test_catalogue import NOW, study

POLICIES = Path(__file__).resolve().parents[2] / "policies"
PASSWORD = "a-long-enough-password-42"


class Audit:
    def __init__(self) -> None:
        self.events: list = []

    def append(self, event) -> int:
        self.events.append(event)
        return len(self.events)


@dataclass
class Config:
    policies_dir: Path = POLICIES
    school_prefix: str = "NSR"


@dataclass
class Services:
    """What the adapters use of plugins.services.Services."""

    conn: Any
    store: AccessStore
    config: Config = field(default_factory=Config)
    runtime: Any = None
    orthanc: Any = None  # the module the adapters register with (plugins.rest.route)

    def db(self):
        return self.conn

    def access_store(self):
        return self.store

    def record(self, event) -> int:
        return self.runtime.audit.append(event)


@pytest.fixture
def api(tmp_path: Path):
    conn = connect(tmp_path / "archive.db")
    store = AccessStore(conn, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    now = datetime.now(UTC)
    for name, roles in {
        "ann": ["trainer"], "bob": ["trainer"], "reg": ["registrar"], "pat": ["personnel"],
        "untrained": ["trainer"],
    }.items():  # fmt: skip
        store.add_user(name, PASSWORD, roles, now, by="test")
        if name != "untrained":
            store.record_training(name, date.today(), now, by="test")
    catalogue = Catalogue(conn, "NSR", scanner=lambda text: [])
    for n in (1, 2):
        catalogue.upsert_from_study(study(n), f"o{n}", NOW)
    services = Services(conn, store, runtime=type("R", (), {"audit": Audit()})())
    fake = with_filter(FakeOrthanc(), store)
    services.orthanc = fake
    cases_routes.register(fake, services)
    collections_routes.register(fake, services)
    fake.services = services
    return fake


def with_filter(fake: FakeOrthanc, store: AccessStore) -> FakeOrthanc:
    """What the HTTP filter does before a route: authenticate once and hand the
    principal over (plugins/handoff.py); here it lets every request reach the route,
    which then refuses one without a principal (401)."""
    from archive.access import Principal, authenticate_headers
    from plugins import handoff

    def http_filter(uri, method, ip, headers, get) -> bool:
        handoff.clear()
        found = authenticate_headers(store, headers, datetime.now(UTC))
        principal = found if isinstance(found, Principal) else None
        handoff.hand_over(method.name, uri, headers, principal)
        return True

    fake.RegisterIncomingHttpRequestFilter(http_filter)
    return fake


def as_(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_search_show_and_edit_through_the_use_cases(api) -> None:
    found = api.call("GET", "/teaching/cases", headers=as_("reg"), get={"q": ""})
    assert found.status == 200 and found.json()["total"] == 2
    assert "orthanc_study_id" not in found.json()["items"][0]
    edited = api.call("PUT", "/teaching/cases/NSR-2026-00001", headers=as_("ann"),
                      body={"title": "Tension pneumothorax"})  # fmt: skip
    assert edited.status == 200 and edited.json()["edited_by"] == "ann"
    shown = api.call("GET", "/teaching/cases/nsr-2026-00001", headers=as_("reg"))
    assert shown.json()["title"] == "Tension pneumothorax"
    actions = [(e.action, e.actor, e.source) for e in api.services.runtime.audit.events]
    assert actions == [
        ("catalogue.case.search", "reg", "rest"),
        ("catalogue.case.edit", "ann", "rest"),
        ("catalogue.case.view", "reg", "rest"),
    ]


def test_refusals_carry_reason_next_and_status(api) -> None:
    refused = api.call("PUT", "/teaching/cases/NSR-2026-00001", headers=as_("reg"),
                       body={"title": "x"})  # fmt: skip
    assert refused.status == 403
    assert "case.edit" in refused.json()["error"] and "trainer" in refused.json()["next"]
    untrained = api.call("GET", "/teaching/cases", headers=as_("untrained"))
    assert untrained.status == 403 and "training" in untrained.json()["error"]
    missing = api.call("GET", "/teaching/cases/NSR-2026-09999", headers=as_("ann"))
    assert missing.status == 404 and missing.json()["next"]
    bad = api.call("PUT", "/teaching/cases/NSR-2026-00001", headers=as_("ann"),
                   body={"patient_name": "x"})  # fmt: skip
    assert bad.status == 400 and "cannot be edited" in bad.json()["error"]
    bad_filter = api.call("GET", "/teaching/cases", headers=as_("ann"), get={"colour": "x"})
    assert bad_filter.status == 400


def test_nobody_acts_in_another_persons_name(api) -> None:
    """A wrong password for ann is refused (401); nothing is changed in ann's name."""
    forged = api.call("PUT", "/teaching/cases/NSR-2026-00001", headers=as_("ann", "guess"),
                      body={"title": "forged"})  # fmt: skip
    assert forged.status == 401 and forged.json()["next"]
    made = api.call("POST", "/teaching/collections", headers=as_("bob"),
                    body={"title": "Set", "owner": "ann"})  # fmt: skip
    assert made.json()["owner"] == "bob"  # the owner is who acted, never a name in the body
    assert all(e.actor != "ann" for e in api.services.runtime.audit.events)


def test_collection_ownership_over_rest(api) -> None:
    made = api.call("POST", "/teaching/collections", headers=as_("ann"), body={"title": "FRCR"})
    cid = made.json()["collection_id"]
    add = {"cases": ["NSR-2026-00001"]}
    assert api.call("POST", f"/teaching/collections/{cid}/items", headers=as_("ann"),
                    body=add).status == 200  # fmt: skip
    refused = api.call("POST", f"/teaching/collections/{cid}/items", headers=as_("bob"),
                       body={"cases": ["NSR-2026-00002"]})  # fmt: skip
    assert refused.status == 403 and "owner" in refused.json()["error"]
    assert "ask the owner" in refused.json()["next"]
    assert api.call("GET", f"/teaching/collections/{cid}", headers=as_("reg")).json()["size"] == 1
    shared = api.call("PUT", f"/teaching/collections/{cid}/editors", headers=as_("ann"),
                      body={"editors": ["bob"]})  # fmt: skip
    assert shared.json()["editors"] == ["bob"]
    moved = api.call("POST", f"/teaching/collections/{cid}/items", headers=as_("bob"),
                     body={"cases": ["NSR-2026-00002"], "position": 1})  # fmt: skip
    assert [i["case_id"] for i in moved.json()["items"]] == ["NSR-2026-00002", "NSR-2026-00001"]
    assert api.call("DELETE", f"/teaching/collections/{cid}", headers=as_("bob")).status == 403
    renamed = api.call("PUT", f"/teaching/collections/{cid}", headers=as_("pat"),
                       body={"title": "FRCR 2026"})  # fmt: skip
    assert renamed.json()["title"] == "FRCR 2026"  # personnel override, per the policy
    gone = api.call("DELETE", f"/teaching/collections/{cid}", headers=as_("ann"))
    assert gone.status == 200 and gone.json()["deleted"]["collection_id"] == cid
    assert api.call("GET", f"/teaching/collections/{cid}", headers=as_("ann")).status == 404
