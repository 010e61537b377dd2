"""The quarantine release route under the fake orthanc (issue 21): decode, call the
release use case, encode; refusals carry their reason and next step with their status,
and Orthanc is never asked to store anything that was refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from archive.access import AccessStore
from archive.db import connect
from archive.paths import HomePaths
from archive.quarantine import QuarantineStore
from archive.vault import Keyring
from archive.vault.sealing import KdfParams
from plugins import quarantine_routes
from tests.fake_orthanc import FakeOrthanc
from tests.unit.test_catalogue_routes import PASSWORD, Audit, Config, as_, with_filter

FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclass
class Services:
    conn: Any
    store: AccessStore
    home: HomePaths
    runtime: Any
    config: Config
    orthanc: Any = None

    def db(self):
        return self.conn

    def access_store(self):
        return self.store

    def quarantine(self):
        return QuarantineStore(self.home, self.runtime.keyring, self.conn)


@pytest.fixture
def api(tmp_path: Path):
    home = HomePaths(tmp_path)
    home.data_dir.mkdir()
    ring = Keyring.create(tmp_path / "keys" / "keyring.json", "test passphrase 42", kdf=FAST)
    conn = connect(home.db_path)
    store = AccessStore(conn, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    now = datetime.now(UTC)
    for name, roles in {"pat": ["personnel"], "alice": ["personnel"], "trn": ["trainer"]}.items():
        store.add_user(name, PASSWORD, roles, now, by="test")
        store.record_training(name, date.today(), now, by="test")
    runtime = type("R", (), {"audit": Audit(), "keyring": ring})()
    services = Services(conn, store, home, runtime, Config())
    fake = with_filter(FakeOrthanc(), store)
    services.orthanc = fake
    quarantine_routes.register(fake, services)
    fake.services = services
    return fake


def _hold(api, kind: str, by: str) -> str:
    return api.services.quarantine().hold(b"DICM", "held", raw=kind == "deid", intake="rest",
                                          ingested_by=by, kind=kind)  # fmt: skip


def test_release_refusals_say_why_with_their_status(api) -> None:
    pixels = _hold(api, "pixels", "rest:alice")
    uri = f"/teaching/quarantine/{pixels}/release"
    forged = api.call("POST", uri, headers=as_("pat", "not pat's"), body={})
    assert forged.status == 401 and forged.json()["next"]
    trainer = api.call("POST", uri, headers=as_("trn"), body={})
    assert trainer.status == 403 and "quarantine.review" in trainer.json()["error"]
    assert "Only personnel review" in trainer.json()["next"]
    own = api.call("POST", uri, headers=as_("alice"), body={"note": "mine"})
    assert own.status == 403 and "own request" in own.json()["error"]
    header = _hold(api, "deid", "dicom:PACS")
    held = api.call("POST", f"/teaching/quarantine/{header}/release", headers=as_("pat"))
    assert held.status == 409 and "header problem" in held.json()["error"]
    missing = api.call("POST", "/teaching/quarantine/q-none/release", headers=as_("pat"))
    assert missing.status == 404
    # every refusal was audited as the person who asked, and nothing reached Orthanc
    # (the fake fails any RestApiPost the test did not provide)
    events = api.services.runtime.audit.events
    assert [(e.action, e.outcome) for e in events] == [("quarantine.release", "denied")] * 4
    assert [e.actor for e in events] == ["trn", "alice", "pat", "pat"]
    assert api.errors == []
