"""Share delivery helpers and the home-side CLI (no Orthanc): undertakings stored encrypted
and checked by hash, the package manifest, and the CLI's quorum and refusal paths."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archive import db
from archive.access import AccessStore
from archive.audit import query as audit_query
from archive.cli.main import app
from archive.governance import BoardVote, Recipients, Shares, load_policy
from archive.governance.errors import InvalidInputError
from archive.governance.sharing.delivery import (
    read_signed_undertaking,
    recipient_node_name,
    share_package_manifest,
    store_signed_undertaking,
    undertakings_dir,
)
from archive.governance.sharing.recipients import DicomNode
from archive.serve.home import init_home
from archive.vault import EncryptedStore, Keyring
from archive.vault.keyring import keyring_path
from archive.vault.sealing import KdfParams

NOW = datetime.now(UTC)
FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
SHA = "ab" * 32


@pytest.fixture
def vault(tmp_path: Path) -> EncryptedStore:
    ring = Keyring.create(tmp_path / "keyring.json", "pass phrase for tests", kdf=FAST)
    return EncryptedStore(undertakings_dir(tmp_path / "data"), ring)


def test_signed_undertaking_is_encrypted_and_checked(vault: EncryptedStore) -> None:
    data = b"%PDF signed by Dr A Tutor"
    ref, digest = store_signed_undertaking(vault, 7, data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert ref.startswith("undertakings/undertaking-000007-")
    files = [p for p in vault.root.rglob("*") if p.is_file()]
    assert len(files) == 1 and b"Dr A Tutor" not in files[0].read_bytes()
    assert read_signed_undertaking(vault, ref, digest) == data
    with pytest.raises(InvalidInputError):
        read_signed_undertaking(vault, ref, "0" * 64)
    with pytest.raises(InvalidInputError):
        store_signed_undertaking(vault, 7, b"")


def test_recipient_node_name() -> None:
    assert recipient_node_name(12) == "recipient-12"


def _approved_share(conn, policy) -> tuple[Shares, int]:
    r = Recipients(conn, policy).add(
        "Leeds School of Radiology", "uk_radiology_school", "Dr A",
        dicom_node=DicomNode("LEEDS", "127.0.0.1", 11112), data_sharing_agreement=True,
        added_by="op", now=NOW,
    )  # fmt: skip
    shares = Shares(conn, policy)
    p = shares.propose(
        ["NSR-1"], r.id, "radiology_training", BoardVote.of("b1", ["board_member"]),
        case_levels={"NSR-1": "limited-access"}, now=NOW,
    )  # fmt: skip
    shares.decide(
        p.id, meeting_date=NOW.date(), minute_reference="SB/1", decision_text="ok",
        by=BoardVote.of("b2", ["board_member"]), now=NOW,
    )  # fmt: skip
    shares.vote(p.id, by=BoardVote.of("b3", ["board_member"]), now=NOW)
    shares.record_signed_undertaking(
        p.id, SHA, "Dr A", "TPD", "Leeds School of Radiology", NOW.date(), "undertakings/x",
        recorded_by="op", now=NOW,
    )  # fmt: skip
    return shares, p.id


def test_package_manifest_names_decision_and_undertaking(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "a.db")
    policy = load_policy(Path(__file__).resolve().parents[2] / "policies")
    shares, pid = _approved_share(conn, policy)
    ticket = shares.authorise_share(pid, {"NSR-1": "limited-access"}, now=NOW)
    entries = [("NSR-1", "1.2.3.4", "cd" * 32), ("NSR-1", "1.2.3.5", "ef" * 32)]
    m = share_package_manifest(shares, ticket, entries, now=NOW)
    assert m["approval"]["reference"] == f"SHARE-{pid:06d}"
    assert m["approval"]["approvers"] == ["b2", "b3"]
    assert m["approval"]["undertaking_sha256"] == SHA
    assert m["instance_count"] == 2
    assert "will not be sold on for commercial benefit" in m["terms"]
    with pytest.raises(InvalidInputError):
        share_package_manifest(shares, ticket, [("NSR-9", "1.2.3.6", "ab" * 32)], now=NOW)


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    config = init_home(tmp_path / "home", http_port=18042, dicom_port=14242)
    secret = tmp_path / "pass"
    secret.write_text("pass phrase for tests")
    secret.chmod(0o600)
    Keyring.create(keyring_path(config.home.keys_dir), "pass phrase for tests", kdf=FAST)
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(secret))
    monkeypatch.setenv("ARCHIVE_OPERATOR", "operator1")
    conn = db.connect(config.home.db_path)
    store = AccessStore(conn)
    for name in ("b1", "b2", "b3"):
        store.add_user(name, f"pw-{name}-long-enough-42", ["board_member"], NOW, by="test")
    conn.close()
    return config.home.root


def _run(home: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--home", str(home)])


def test_cli_flow_on_the_home(home: Path, tmp_path: Path) -> None:
    bad = _run(home, "recipients", "add", "Acme", "--kind", "commercial", "--contact", "x",
               "--aet", "ACME", "--host", "10.0.0.1", "--port", "104")  # fmt: skip
    assert bad.exit_code == 1 and "commercial" in bad.output
    half = _run(home, "recipients", "add", "Leeds", "--kind", "uk_radiology_school",
                "--contact", "x", "--aet", "LEEDS")  # fmt: skip
    assert half.exit_code == 1 and "--port" in half.output
    ok = _run(home, "recipients", "add", "Leeds", "--kind", "uk_radiology_school",
              "--contact", "x", "--aet", "LEEDS", "--host", "10.0.0.2", "--port", "104",
              "--json")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    rid = json.loads(ok.output)["id"]
    conn = db.connect(home / "data" / "archive.db")
    nodes = {n.name: n for n in AccessStore(conn).list_dicom_nodes()}
    conn.close()
    node = nodes[f"recipient-{rid}"]
    assert (node.aet, node.may_store, node.may_query) == ("LEEDS", False, False)

    # Issue 21: nobody acts in another's name; these acts need the person's credentials.
    named = _run(home, "shares", "propose", "NSR-1", "--recipient", str(rid),
                 "--purpose", "radiology_training", "--proposer", "b1")  # fmt: skip
    assert named.exit_code == 1 and "--proposer is no longer accepted" in named.output
    today = date.today().isoformat()
    common = ["shares", "decide", "1", "--meeting-date", today, "--minute", "SB/2",
              "--text", "Approved."]  # fmt: skip
    typed = _run(home, *common, "--approver", "b2", "--approver", "b3")
    assert typed.exit_code == 1 and "--approver is no longer accepted" in typed.output
    assert "archive shares vote 1" in typed.output
    anonymous = _run(home, *common, "--as", "b2")  # no password, no terminal
    assert anonymous.exit_code == 1 and "b2's --password-file" in anonymous.output
    assert len(anonymous.output.strip().splitlines()) == 1
    assert audit_query(home / "data" / "audit", action="governance.share.decide") == []


def test_local_acts_authenticate_the_person_not_a_typed_name(tmp_path: Path) -> None:
    """The CLI's local recipe (archive.cli.api.authenticated_person): the filter's own
    check of the person's password; a wrong password or a disabled account is refused
    with one line, and the refusal is audited."""
    import typer

    from archive.cli.api import authenticated_person

    store = AccessStore(db.connect(tmp_path / "a.db"))
    for name in ("b1", "b2"):
        store.add_user(name, f"pw-{name}-long-enough-42", ["board_member"], NOW, by="t")
    store.disable("b2")
    good, wrong, b2 = (tmp_path / n for n in ("good", "wrong", "b2"))
    good.write_text("pw-b1-long-enough-42")
    wrong.write_text("not-the-password-42")
    b2.write_text("pw-b2-long-enough-42")
    events = []
    principal = authenticated_person(tmp_path, store, "b1", good, None, record=events.append)
    assert principal.user == "b1" and "board_member" in principal.roles
    for user, secret in (("b1", wrong), ("b2", b2)):
        with pytest.raises(typer.Exit):
            authenticated_person(tmp_path, store, user, secret, None, record=events.append)
    assert [(e.actor, e.outcome) for e in events] == [("b1", "denied"), ("b2", "denied")]
