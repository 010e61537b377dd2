"""Stand-ins shared by the governance route adapter tests: services, people, cases."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from archive.access.principal import Principal
from archive.db import connect
from archive.paths import POLICIES_DIR
from tests.fake_orthanc import FakeOrthanc

PEOPLE = {
    "board1": ("board_member",),
    "board2": ("board_member",),
    "board3": ("board_member",),
    "pers1": ("personnel",),
    "pers2": ("personnel",),
    "hos": ("head_of_school",),
    "tpd1": ("tpd",),
    "reg1": ("registrar",),
}


class FakeServices:
    """What a governance adapter uses of plugins.services.Services."""

    def __init__(self, tmp_path) -> None:
        self.conn = connect(tmp_path / "archive.db")
        self.events: list = []
        self.nodes: list = []
        self.config = SimpleNamespace(policies_dir=POLICIES_DIR, school_prefix="NSR")
        self.home = SimpleNamespace(data_dir=tmp_path / "data")

    def db(self):
        return self.conn

    def record(self, event) -> int:
        self.events.append(event)
        return len(self.events)

    def access_store(self):
        return SimpleNamespace(add_dicom_node=lambda *a: self.nodes.append(a),
                               list_dicom_nodes=lambda: [])  # fmt: skip

    def audited(self, action: str) -> list:
        return [e for e in self.events if e.action == action]


class Cases:
    """The catalogue's answer about cases: every named case is released at `level`."""

    def __init__(self, level: str = "publication") -> None:
        self.level = level

    def get(self, case_id):
        return SimpleNamespace(case_id=case_id, status="available", level=self.level,
                               orthanc_study_id=f"study-{case_id}")  # fmt: skip


def adapter(monkeypatch, tmp_path, *modules: str, level: str = "publication"):
    """A FakeOrthanc with the named adapters registered; a request's person is the
    X-Test-User header (what the HTTP filter would have authenticated)."""
    fake = FakeOrthanc()
    monkeypatch.setitem(sys.modules, "orthanc", fake)  # plugins.rest imports it (for now)
    import importlib

    from plugins import governance_http as gh

    monkeypatch.setattr(gh, "catalogue", lambda services: Cases(level))

    def who(services, request):
        from plugins.rest import HttpError

        user = (request.get("headers") or {}).get("x-test-user")
        if user not in PEOPLE:
            raise HttpError(401, "authentication required: the credentials were refused.")
        return Principal(user, PEOPLE[user], trained=True)

    monkeypatch.setattr(gh, "who", who)
    services = FakeServices(tmp_path)
    for name in modules:
        importlib.import_module(f"plugins.{name}").register(fake, services)
    return fake, services


def as_(user: str) -> dict[str, str]:
    return {"X-Test-User": user}
