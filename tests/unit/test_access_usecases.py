"""People as use cases (issue 21): accounts, training, applications and tokens are
authorised from actions.toml, audited once as the person who acted, and refused with
the reason; nobody makes a token in another person's name; the web's training form
goes through the same use case."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from argon2 import PasswordHasher

from archive.access import AccessStore
from archive.access import usecases as people
from archive.access.principal import Principal
from archive.core import Ports, Refusal
from archive.db import connect
from archive.web import WebApp, WebRequest
from tests.unit.test_web import Clock, FakeBackend, _login

POLICIES = Path(__file__).resolve().parents[2] / "policies"
PW = "a-long-enough-password-42"


class Audit:
    def __init__(self) -> None:
        self.events: list = []

    def append(self, event) -> int:
        self.events.append(event)
        return len(self.events)


PAT = Principal("pat", ("personnel",), True)
HOS = Principal("hos", ("head_of_school",), False)
TRN = Principal("trn", ("trainer",), True)


@pytest.fixture
def room(tmp_path: Path) -> people.PeopleRoom:
    conn = connect(tmp_path / "a.db")
    store = AccessStore(conn, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    now = datetime.now(UTC)
    accounts = {"pat": ["personnel"], "trn": ["trainer"], "reg": ["registrar"],
                "hos": ["head_of_school"]}  # fmt: skip
    for name, roles in accounts.items():
        store.add_user(name, PW, roles, now, by="test")
    ports = Ports(db=conn, audit=Audit(), policies_dir=POLICIES, source="test")
    return people.PeopleRoom(ports, store)


def events(room) -> list[tuple[str, str, str]]:
    return [(e.action, e.outcome, e.actor) for e in room.ports.audit.events]


def test_administration_is_authorised_and_audited_as_the_person(room) -> None:
    made = people.add_user(room, PAT, "newbie", PW, ["registrar"])
    assert made.name == "newbie" and made.created_by == "pat"
    refused = people.add_user(room, TRN, "other", PW, ["personnel"])
    assert isinstance(refused, Refusal) and "user.manage" in refused.reason
    assert "Only personnel administer users" in refused.next
    assert room.store.get_user("other") is None
    trained = people.record_training(room, PAT, "reg", date.today())
    assert trained.recorded_by == "pat"
    assert people.record_training(room, TRN, "reg", date.today()).code == "forbidden"
    bad = people.set_roles(room, PAT, "reg", ["wizard"])
    assert bad.code == "invalid" and "unknown role" in bad.reason
    assert events(room) == [
        ("users.add", "success", "pat"),
        ("users.add", "denied", "trn"),
        ("users.train", "success", "pat"),
        ("users.train", "denied", "trn"),
        ("users.roles", "denied", "pat"),
    ]
    assert room.ports.audit.events[1].detail["reason"] == "your role does not allow user.manage"


def test_application_approved_in_the_approvers_own_name(room) -> None:
    assert people.approve_application(room, TRN, "reg", "cardiology").code == "forbidden"
    done = people.approve_application(room, HOS, "reg", "cardiology")
    assert not isinstance(done, Refusal)
    assert room.store.get_user("reg").applications[0].approved_by == "hos"


def test_nobody_makes_a_token_in_another_persons_name(room) -> None:
    stolen = people.create_token(room, PAT, "trn")
    assert isinstance(stolen, Refusal) and "owner" in stolen.reason
    assert room.store.list_tokens("trn") == []
    token_id, plaintext = people.create_token(room, TRN, "trn", 30, "ci")
    assert plaintext.startswith("ta1_") and plaintext not in repr(room.ports.audit.events)
    assert events(room) == [("tokens.create", "denied", "pat"), ("tokens.create", "success", "trn")]


def test_web_training_form_goes_through_the_use_case(tmp_path: Path) -> None:
    backend = FakeBackend(tmp_path / "w.db")
    now = Clock()()
    backend.store.add_user("pers", "pw-pers-long-enough-42", ["personnel"], now, by="t")
    backend.store.add_user("reg", "pw-reg-long-enough-42", ["registrar"], now, by="t")
    backend.store.record_training("reg", now.date(), now, by="t")
    app = WebApp(backend, clock=Clock())
    cookie, csrf = _login(app, "pers")
    page = app.handle(WebRequest("GET", "/users", headers={"cookie": cookie}))
    assert page.status == 200
    body = urlencode({"csrf": csrf, "trained_on": now.date().isoformat()}).encode()
    done = app.handle(WebRequest("POST", "/users/reg/training", headers={"cookie": cookie},
                                 body=body))  # fmt: skip
    assert done.status == 303, done.body
    (event,) = [e for e in backend.events if e.action == "users.train"]
    assert (event.actor, event.outcome, event.source) == ("pers", "success", "web")
    assert backend.store.get_user("reg").training.recorded_by == "pers"
    cookie2, csrf2 = _login(app, "reg")
    refused = app.handle(WebRequest("POST", "/users/reg/training", headers={"cookie": cookie2},
                                    body=urlencode({"csrf": csrf2}).encode()))  # fmt: skip
    assert refused.status == 403
    assert re.search(r"ask school personnel|user\.(manage|training)", refused.body.decode())
