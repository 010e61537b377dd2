"""Closure as use cases (issue 21): one plan for the CLI and the web; a Board decision
counts only members who voted themselves; each step is the signed-in person's."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archive import db
from archive.access import AccessStore, load_route_policy
from archive.access.principal import Principal
from archive.catalogue import Catalogue
from archive.cli.main import app as cli
from archive.core import Ports, Refusal
from archive.governance import load_policy
from archive.governance.closure import usecases as closure
from archive.paths import POLICIES_DIR
from archive.serve.home import init_home
from archive.vault import Keyring
from archive.vault.keyring import keyring_path
from archive.vault.ledger import InstanceLedger
from archive.vault.sealing import KdfParams
from archive.vault.volume import GOCRYPTFS_CONF
from archive.web import WebApp, WebRequest
from tests.unit.test_web import _login

NOW = datetime.now(UTC)
FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)


class Backend:
    """The web app's backend on a real home (what plugins/web.py gives it in Orthanc)."""

    def __init__(self, config) -> None:
        self.conn = db.connect(config.home.db_path)
        self.store = AccessStore(self.conn)
        self.route_policy = load_route_policy(POLICIES_DIR)
        self.policies_dir = POLICIES_DIR
        self.governance_policy = load_policy(POLICIES_DIR)
        self.home = config.home
        self.volume_kind = config.volume.kind
        self.events: list = []

    def db(self):
        return self.conn

    def access_store(self):
        return self.store

    def record(self, event) -> int:
        self.events.append(event)
        return len(self.events)

    def catalogue(self, principal):
        return Catalogue(self.conn, "NSR")


@pytest.fixture
def config(tmp_path: Path, monkeypatch):
    config = init_home(tmp_path / "home", http_port=18043, dicom_port=14243)
    secret = tmp_path / "pass"
    secret.write_text("pass phrase for tests")
    secret.chmod(0o600)
    Keyring.create(keyring_path(config.home.keys_dir), "pass phrase for tests", kdf=FAST)
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(secret))
    monkeypatch.setenv("ARCHIVE_OPERATOR", "operator1")
    config.home.volume_dir.mkdir(parents=True, exist_ok=True)
    (config.home.volume_dir / GOCRYPTFS_CONF).write_text("{}")  # an encrypted volume
    conn = db.connect(config.home.db_path)
    Catalogue(conn, "NSR")
    InstanceLedger(conn)
    store = AccessStore(conn)
    for name, role in (("b1", "board_member"), ("b2", "board_member"), ("p1", "personnel")):
        store.add_user(name, f"pw-{name}-long-enough-42", [role], NOW, by="test")
    conn.close()
    return config


def test_cli_and_web_print_the_same_closure_plan(config):
    shown = CliRunner().invoke(cli, ["close", "plan", "--json", "--home", str(config.home.root)])
    assert shown.exit_code == 0, shown.output
    from_cli = json.loads(shown.output)
    assert len(from_cli["volumes"]) == 1  # the gocryptfs volume is to be destroyed
    web = WebApp(Backend(config))
    cookie, _ = _login(web, "b1")
    page = web.handle(WebRequest("GET", "/closure", headers={"cookie": cookie}))
    assert page.status == 200, page.body
    text = html.unescape(re.search(r"<pre>(.*?)</pre>", page.body.decode(), re.S).group(1))
    assert "Volumes to destroy: 1" in text
    text_cli = CliRunner().invoke(cli, ["close", "plan", "--home", str(config.home.root)])
    assert text_cli.output.startswith(text)  # the CLI adds the backup locations after it


def _ports(config, events: list) -> Ports:
    class Audit:
        def append(self, event):
            events.append(event)
            return len(events)

    return Ports(db=db.connect(config.home.db_path), audit=Audit(),
                 policies_dir=POLICIES_DIR, source="test",
                 extra={"governance": load_policy(POLICIES_DIR)})  # fmt: skip


def _person(user: str, role: str) -> Principal:
    return Principal(user, (role,), trained=True)


def test_a_closure_decision_counts_only_members_who_voted_themselves(config):
    events: list = []
    ports = _ports(config, events)
    b1, b2, p1 = _person("b1", "board_member"), _person("b2", "board_member"), _person(
        "p1", "personnel")  # fmt: skip
    decision = closure.decide(ports, b1, "destroy", meeting_date=NOW.date(),
                              minute_reference="SB/9", decision_text="Destroy.",
                              receiving_recipient_id=None)  # fmt: skip
    assert decision.quorum_counted == 1 and not decision.in_force
    refused = closure.vote(ports, p1, decision.id)  # personnel are not the Board
    assert isinstance(refused, Refusal) and refused.code == "forbidden" and refused.next
    twice = closure.vote(ports, b1, decision.id)
    assert isinstance(twice, Refusal) and "already voted" in twice.reason
    assert twice.code == "state"
    voted = closure.vote(ports, b2, decision.id)
    assert voted.quorum_counted == 2 and voted.in_force
    audited = [(e.action, e.actor, e.outcome) for e in events]
    assert audited == [
        ("closure.decision", "b1", "success"),
        ("governance.board.vote", "p1", "denied"),
        ("governance.board.vote", "b1", "denied"),
        ("governance.board.vote", "b2", "success"),
    ]


def test_wipe_confirmation_and_attestation_are_the_signed_in_persons(config):
    events: list = []
    ports = _ports(config, events)
    decision = closure.decide(
        ports, _person("b1", "board_member"), "destroy", meeting_date=NOW.date(),
        minute_reference="SB/9", decision_text="Destroy.", receiving_recipient_id=None,
    )  # fmt: skip
    early = closure.confirm_wipe(ports, _person("p1", "personnel"))
    assert isinstance(early, Refusal) and early.code == "state"  # not in force yet
    closure.vote(ports, _person("b2", "board_member"), decision.id)
    refused = closure.confirm_wipe(ports, _person("b2", "board_member"))
    assert isinstance(refused, Refusal) and refused.code == "forbidden"
    done = closure.confirm_wipe(ports, _person("p1", "personnel"))
    assert done.user == "p1"
    attested = closure.attest_workstation(ports, _person("p1", "personnel"), "imac-1", "nwipe")
    assert attested.attested_by == "p1"
    assert [e.actor for e in events if e.action == "closure.workstation_wiped"] == ["p1"]


def test_a_board_member_votes_on_closure_from_the_web_for_themselves(config):
    from urllib.parse import urlencode

    backend = Backend(config)
    ports = _ports(config, [])
    decision = closure.decide(ports, _person("b1", "board_member"), "destroy",
                              meeting_date=NOW.date(), minute_reference="SB/9",
                              decision_text="Destroy.", receiving_recipient_id=None)  # fmt: skip
    web = WebApp(backend)
    cookie, csrf = _login(web, "b2")
    page = web.handle(WebRequest("GET", "/closure", headers={"cookie": cookie}))
    assert f'action="/teaching/ui/closure/{decision.id}/vote"' in page.body.decode()
    form = urlencode({"csrf": csrf, "member": "b1"}).encode()  # a typed name changes nothing
    voted = web.handle(WebRequest("POST", f"/closure/{decision.id}/vote",
                                  headers={"cookie": cookie}, body=form))  # fmt: skip
    assert voted.status == 303, voted.body
    again = web.handle(WebRequest("POST", f"/closure/{decision.id}/vote",
                                  headers={"cookie": cookie}, body=form))  # fmt: skip
    assert again.status == 409 and b"already voted" in again.body
    votes = [(e.actor, e.outcome) for e in backend.events if e.action == "governance.board.vote"]
    assert votes == [("b2", "success"), ("b2", "denied")]
    shown = web.handle(WebRequest("GET", "/closure", headers={"cookie": cookie})).body.decode()
    assert "b1, b2 (2 of 2)" in shown
