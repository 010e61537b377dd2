"""`archive cases` and `archive collections`: JSON output, audit trail, role checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archive.audit import query
from archive.catalogue import Catalogue
from archive.cli.main import app
from archive.db import connect
from archive.paths import HomePaths
from tests.unit.test_catalogue import NHS, NOW, study

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HomePaths:
    (tmp_path / "archive.toml").write_text("")
    paths = HomePaths(tmp_path)
    paths.data_dir.mkdir(mode=0o700)
    cat = Catalogue(connect(paths.db_path), "NSR")
    for n in (1, 2, 3):
        cat.upsert_from_study(study(n, modality="CT" if n < 3 else "MR"), f"o{n}", NOW)
    monkeypatch.setenv("ARCHIVE_HOME", str(tmp_path))
    monkeypatch.setenv("ARCHIVE_OPERATOR", "opsadmin")
    return paths


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def run_json(*args: str) -> object:
    code, out = run(*args, "--json")
    assert code == 0, out
    return json.loads(out)


def test_edit_show_search_and_audit(home: HomePaths) -> None:
    _access(home, {"opsadmin": ("personnel",)})
    code, out = run(
        "cases", "edit", "NSR-2026-00002", "--title", "Subtle pneumothorax",
        "--keywords", "pneumothorax, line", "--difficulty", "advanced", *_pw(home, "opsadmin"),
    )  # fmt: skip
    assert code == 0, out
    shown = run_json("cases", "show", "NSR-2026-00002")
    assert shown["title"] == "Subtle pneumothorax" and shown["edited_by"] == "opsadmin"
    assert "patient_pseudonym" not in shown
    page = run_json("cases", "search", "pneumothorax")
    assert page["total"] == 1 and page["items"][0]["case_id"] == "NSR-2026-00002"
    listed = run_json("cases", "list", "--modality", "MR")
    assert [c["case_id"] for c in listed["items"]] == ["NSR-2026-00003"]
    events = query(home.audit_dir, case="NSR-2026-00002")
    assert [(e["action"], e["outcome"], e["actor"], e["roles"]) for e in events] == [
        ("catalogue.case.edit", "success", "opsadmin", ["personnel"])
    ]
    assert events[0]["detail"] == {"fields": "difficulty,keywords,title"}
    log_text = "".join(p.read_text() for p in home.audit_dir.iterdir() if p.is_file())
    assert "pneumothorax" not in log_text.lower()


def test_identifier_in_history_refused_by_cli(home: HomePaths) -> None:
    _access(home, {"opsadmin": ("personnel",)})
    code, out = run("cases", "edit", "NSR-2026-00001", "--clinical-history", f"NHS {NHS}",
                    *_pw(home, "opsadmin"))  # fmt: skip
    assert code == 1
    assert "clinical_history" in out and NHS not in out and "Traceback" not in out
    assert run_json("cases", "show", "NSR-2026-00001")["clinical_history"] == ""
    events = query(home.audit_dir, case="NSR-2026-00001")
    assert [(e["action"], e["outcome"]) for e in events] == [("catalogue.case.edit", "denied")]


def test_annotate(home: HomePaths) -> None:
    _access(home, {"trn1": ("trainer",)})
    me = _pw(home, "trn1")
    assert run("cases", "annotate", "NSR-2026-00001", "keywords", "fracture", *me)[0] == 0
    case = run_json("cases", "annotate", "NSR-2026-00001", "teaching-points", "Check the apex.",
                    *me)  # fmt: skip
    assert case["keywords"] == ["fracture"] and case["teaching_points"] == "Check the apex."
    code, out = run("cases", "annotate", "NSR-2026-00001", "patient", "x")
    assert code == 1 and "unknown field" in out


def _access(home: HomePaths, roles: dict[str, tuple[str, ...]]) -> None:
    """Real named, trained users in the home's access tables (the access room, not a
    stand-in)."""
    from datetime import UTC, datetime

    from archive.access import AccessStore
    from archive.db import connect

    conn = connect(home.db_path)
    try:
        store = AccessStore(conn)
        for user, user_roles in roles.items():
            now = datetime.now(UTC)
            store.add_user(user, f"pw-{user}-long-enough-42", list(user_roles), now, by="test")
            store.record_training(user, now.date(), now, by="test")  # actions.toml: training
    finally:
        conn.close()


def _pw(home: HomePaths, user: str) -> list[str]:
    secret = home.root / f"{user}.pw"
    secret.write_text(f"pw-{user}-long-enough-42")
    return ["--as", user, "--password-file", str(secret)]


def test_registrar_can_search_but_not_edit(
    home: HomePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    _access(home, {"reg1": ("registrar",), "trn1": ("trainer",)})
    assert run_json("cases", "search", "")["total"] == 3
    code, out = run("cases", "edit", "NSR-2026-00001", "--title", "X", *_pw(home, "reg1"))
    assert code == 1 and "your role does not allow case.edit" in out
    assert "Next: Only trainers and personnel edit" in out
    assert run_json("cases", "show", "NSR-2026-00001")["title"] == ""
    code, out = run("cases", "edit", "NSR-2026-00001", "--title", "Y", *_pw(home, "trn1"))
    assert code == 0, out
    events = query(home.audit_dir, case="NSR-2026-00001")
    assert [(e["actor"], e["roles"], e["outcome"]) for e in events] == [
        ("reg1", ["registrar"], "denied"),  # the refusal is audited too, with its reason
        ("trn1", ["trainer"], "success"),
    ]


def test_nobody_edits_in_another_persons_name(
    home: HomePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: --as-user (no password) is refused; a wrong password is refused; no edit."""
    _access(home, {"trn1": ("trainer",)})
    code, out = run("cases", "edit", "NSR-2026-00001", "--title", "X", "--as-user", "trn1")
    assert code == 1 and "--as-user is no longer accepted" in out
    code, _ = run("collections", "create", "Set", "--as-user", "trn1")
    assert code == 1
    wrong = home.root / "wrong.pw"
    wrong.write_text("not trn1's password, surely")
    code, out = run("cases", "annotate", "NSR-2026-00001", "keywords", "x", "--as", "trn1",
                    "--password-file", str(wrong))  # fmt: skip
    assert code == 1 and "trn1 could not be authenticated" in out
    assert run_json("cases", "show", "NSR-2026-00001")["keywords"] == []
    assert query(home.audit_dir, case="NSR-2026-00001") == []


def test_editing_fails_closed_without_access_room(
    home: HomePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "archive.access", None)
    code, out = run("cases", "edit", "NSR-2026-00001", "--title", "X", "--as", "trn1")
    assert code == 1 and "cannot authenticate the editor" in out


def test_collections_commands(home: HomePaths) -> None:
    _access(home, {"trn1": ("trainer",)})
    me = _pw(home, "trn1")
    created = run_json("collections", "create", "FRCR chest", "--description", "Exam set", *me)
    cid = created["collection_id"]
    assert created["owner"] == "trn1"
    run_json("collections", "add", cid, "NSR-2026-00001", "NSR-2026-00002", "NSR-2026-00003",
             *me)  # fmt: skip
    run_json("collections", "reorder", cid, "NSR-2026-00003", *me)
    moved = run_json("collections", "reorder", cid, "NSR-2026-00001", "--position", "3", *me)
    assert [i["case_id"] for i in moved["items"]] == [
        "NSR-2026-00003",
        "NSR-2026-00002",
        "NSR-2026-00001",
    ]
    removed = run_json("collections", "remove", cid, "NSR-2026-00002", *me)
    assert [i["case_id"] for i in removed["items"]] == ["NSR-2026-00003", "NSR-2026-00001"]
    assert run_json("collections", "list")[0]["size"] == 2
    assert run_json("cases", "list", "--collection", cid)["total"] == 2
    code, out = run("collections", "show", "NSR-COL-0404")
    assert code == 1 and "no collection" in out
    actions = [e["action"] for e in query(home.audit_dir, case=cid)]
    assert actions == [
        "catalogue.collection.create",
        "catalogue.collection.add",
        "catalogue.collection.reorder",
        "catalogue.collection.reorder",
        "catalogue.collection.remove",
    ]


def test_every_command_has_help() -> None:
    for group, commands in {
        "cases": ("list", "search", "show", "edit", "annotate"),
        "collections": ("create", "list", "show", "add", "remove", "reorder", "share", "delete"),
    }.items():
        for command in commands:
            code, out = run(group, command, "--help")
            assert code == 0 and "Usage" in out, (group, command)


def test_collection_ownership_from_the_cli(home: HomePaths) -> None:
    """Issue 21: the owner edits, another trainer is refused with the reason, a shared
    editor may edit, personnel may override; nobody acts without their own password."""
    _access(home, {"ann": ("trainer",), "bob": ("trainer",), "pat": ("personnel",)})
    cid = run_json("collections", "create", "Neuro", *_pw(home, "ann"))["collection_id"]
    code, out = run("collections", "add", cid, "NSR-2026-00001", *_pw(home, "bob"))
    assert code == 1 and f"only the owner of collection {cid} may change it" in out
    assert "Next: Only the collection's owner" in out
    code, out = run("collections", "add", cid, "NSR-2026-00001", "--as", "ann")
    assert code == 1 and "ann's --password-file" in out  # no password, no act in ann's name
    code, out = run("collections", "share", cid, "bob", *_pw(home, "bob"))
    assert code == 1 and "owner" in out
    assert run_json("collections", "share", cid, "bob", *_pw(home, "ann"))["editors"] == ["bob"]
    added = run_json("collections", "add", cid, "NSR-2026-00001", *_pw(home, "bob"))
    assert added["size"] == 1
    code, out = run("collections", "delete", cid, *_pw(home, "bob"))
    assert code == 1 and "deletes it" in out
    assert run_json("collections", "delete", cid, *_pw(home, "pat"))["deleted"]["title"] == "Neuro"
    events = [(e["action"], e["outcome"], e["actor"]) for e in query(home.audit_dir, case=cid)]
    assert events == [
        ("catalogue.collection.create", "success", "ann"),
        ("catalogue.collection.add", "denied", "bob"),
        ("catalogue.collection.share", "denied", "bob"),
        ("catalogue.collection.share", "success", "ann"),
        ("catalogue.collection.add", "success", "bob"),
        ("catalogue.collection.delete", "denied", "bob"),
        ("catalogue.collection.delete", "success", "pat"),
    ]
