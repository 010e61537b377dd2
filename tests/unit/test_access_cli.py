"""`archive users` and `archive tokens` against a real home; every action audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archive.audit import query, verify
from archive.cli.main import app
from archive.paths import HomePaths

PW = "correct horse battery\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> HomePaths:
    (tmp_path / "archive.toml").write_text("")
    paths = HomePaths(tmp_path)
    paths.data_dir.mkdir()
    monkeypatch.setenv("ARCHIVE_OPERATOR", "operator")
    return paths


def run(home: HomePaths, *args: str, stdin: str | None = None):
    return CliRunner().invoke(app, [*args, "--home", str(home.root)], input=stdin)


def test_bootstrap_and_manage_users(home: HomePaths, tmp_path: Path) -> None:
    # Bootstrap: on a home without personnel, the operator makes the first account.
    r = run(home, "users", "add", "boss", "--role", "personnel", "--password-stdin", stdin=PW)
    assert r.exit_code == 0, r.output
    # From then on, only a personnel user acting as themselves administers (issue 21).
    boss_pw = tmp_path / "boss.pw"
    boss_pw.write_text(PW)
    boss = ["--admin", "boss", "--admin-password-file", str(boss_pw)]
    r = run(home, "users", "add", "alice", "--role", "trainer", "--password-stdin", stdin=PW)
    assert r.exit_code == 1 and "boss" not in r.output and "operator" in r.output
    assert "--admin-password-file" in r.output or "could not be authenticated" in r.output
    r = run(
        home,
        "users",
        "add",
        "alice",
        "--role",
        "trainer",
        "--expires",
        "2030-01-01",
        "--password-stdin",
        "--json",
        *boss,
        stdin=PW,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["account_expires"].startswith("2030-01-01")
    assert run(home, "users", "train", "alice", "--date", "2025-01-10", *boss).exit_code == 0
    data = json.loads(run(home, "users", "show", "alice", "--json").output)
    assert data["training"]["trained_on"] == "2025-01-10" and data["roles"] == ["trainer"]
    listed = json.loads(run(home, "users", "list", "--json").output)
    assert [u["name"] for u in listed] == ["alice", "boss"]
    # A trainer is not an administrator, even with her own password.
    alice_pw = tmp_path / "alice.pw"
    alice_pw.write_text(PW)
    alice = ["--admin", "alice", "--admin-password-file", str(alice_pw)]
    r = run(home, "users", "roles", "alice", "--role", "personnel", *alice)
    assert r.exit_code == 1 and "your role does not allow user.manage" in r.output
    assert "Next: Only personnel administer users" in r.output
    pw_file = tmp_path / "pw"
    pw_file.write_text("another long passphrase\n")
    assert (
        run(
            home, "users", "reset-password", "alice", "--password-file", str(pw_file), *boss
        ).exit_code
        == 0
    )
    assert run(home, "users", "disable", "alice", *boss).exit_code == 0
    assert json.loads(run(home, "users", "show", "alice", "--json").output)["disabled"] is True
    assert run(home, "users", "expire", "alice", "--on", "2025-06-01", *boss).exit_code == 0
    r = run(home, "users", "add", "cardio", "--role", "registrar", "--password-stdin", *boss,
            stdin=PW)  # fmt: skip
    assert r.exit_code == 0
    r = run(home, "users", "approve", "cardio", "--approver", "boss", "--speciality", "cardiology")
    assert r.exit_code == 1 and "--approver is no longer accepted" in r.output
    cardio_pw = tmp_path / "cardio.pw"
    cardio_pw.write_text(PW)
    r = run(home, "users", "approve", "cardio", "--speciality", "cardiology",
            "--admin", "cardio", "--admin-password-file", str(cardio_pw))  # fmt: skip
    assert r.exit_code == 1 and "does not allow application.approve" in r.output
    r = run(home, "users", "approve", "cardio", "--speciality", "cardiology", *boss)
    assert r.exit_code == 0, r.output

    assert [e["action"] for e in query(home.audit_dir, user="operator")] == ["users.add"]
    actions = [e["action"] for e in query(home.audit_dir, user="boss") if e["outcome"] == "success"]
    assert actions == [
        "users.add",
        "users.train",
        "users.reset_password",
        "users.disable",
        "users.expire",
        "users.add",
        "users.approve_application",
    ]
    assert [e["outcome"] for e in query(home.audit_dir, action="users.approve_application")] == [
        "denied",  # refused by the action policy, with its reason, as cardio
        "success",
    ]
    refused = query(home.audit_dir, action="users.roles")
    assert [(e["actor"], e["outcome"]) for e in refused] == [("alice", "denied")]
    assert verify(home.audit_dir).ok
    assert "correct horse" not in home.audit_dir.joinpath("audit.jsonl").read_text()


def test_refusals_are_one_line(home: HomePaths) -> None:
    r = run(home, "users", "add", "bob", "--role", "trainer", "--password-stdin", stdin="short\n")
    assert r.exit_code == 1 and r.output.startswith("error: passwords must have")
    r = run(home, "users", "show", "ghost")
    assert r.exit_code == 1 and "no user" in r.output
    r = run(home, "users", "add", "bob", "--role", "trainer")  # no tty, no password source
    assert r.exit_code == 1 and "--password-stdin" in r.output
    r = run(home, "users", "train", "ghost", "--date", "yesterday")
    assert r.exit_code == 1 and "--date" in r.output


def test_tokens_cli(home: HomePaths, tmp_path: Path) -> None:
    run(home, "users", "add", "alice", "--role", "trainer", "--password-stdin", stdin=PW)
    # Issue 21: a token is made by its owner, with her own password.
    r = run(home, "tokens", "create", "alice", "--days", "30")  # no password: refused
    assert r.exit_code == 1 and "alice's --password-file" in r.output
    own = tmp_path / "alice.pw"
    own.write_text(PW)
    r = run(home, "tokens", "create", "alice", "--days", "30", "--password-file", str(own))
    assert r.exit_code == 1 and "training required" in r.output  # a trainer acts trained
    assert run(home, "users", "train", "alice").exit_code == 0  # (bootstrap: the operator)
    r = run(home, "tokens", "create", "alice", "--days", "30", "--label", "ci",
            "--password-file", str(own), "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert created["token"].startswith("ta1_")
    listed = json.loads(run(home, "tokens", "list", "--json").output)
    assert listed[0]["token_id"] == created["token_id"] and "token" not in listed[0]
    assert created["token"] not in run(home, "tokens", "list").output
    assert run(home, "tokens", "revoke", created["token_id"]).exit_code == 0
    assert json.loads(run(home, "tokens", "list", "--json").output)[0]["revoked_at"]
    assert run(home, "tokens", "revoke", "nope").exit_code == 1
    log_text = home.audit_dir.joinpath("audit.jsonl").read_text()
    assert created["token"] not in log_text
    assert [(e["action"], e["outcome"]) for e in query(home.audit_dir, action="tokens")] == [
        ("tokens.create", "denied"),  # untrained: refused with the reason, and audited
        ("tokens.create", "success"),
        ("tokens.revoke", "success"),
    ]


def test_missing_data_dir(tmp_path: Path) -> None:
    (tmp_path / "archive.toml").write_text("")
    r = CliRunner().invoke(app, ["users", "list", "--home", str(tmp_path)])
    assert r.exit_code == 1 and "archive init" in r.output
