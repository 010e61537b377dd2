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
    r = run(home, "users", "add", "boss", "--role", "personnel", "--password-stdin", stdin=PW)
    assert r.exit_code == 0, r.output
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
        stdin=PW,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["account_expires"].startswith("2030-01-01")
    assert run(home, "users", "train", "alice", "--date", "2025-01-10").exit_code == 0
    data = json.loads(run(home, "users", "show", "alice", "--json").output)
    assert data["training"]["trained_on"] == "2025-01-10" and data["roles"] == ["trainer"]
    listed = json.loads(run(home, "users", "list", "--json").output)
    assert [u["name"] for u in listed] == ["alice", "boss"]
    pw_file = tmp_path / "pw"
    pw_file.write_text("another long passphrase\n")
    assert (
        run(home, "users", "reset-password", "alice", "--password-file", str(pw_file)).exit_code
        == 0
    )
    assert run(home, "users", "disable", "alice").exit_code == 0
    assert json.loads(run(home, "users", "show", "alice", "--json").output)["disabled"] is True
    assert run(home, "users", "expire", "alice", "--on", "2025-06-01").exit_code == 0
    r = run(home, "users", "add", "cardio", "--role", "registrar", "--password-stdin", stdin=PW)
    assert r.exit_code == 0
    r = run(home, "users", "approve", "cardio", "--approver", "alice", "--speciality", "cardiology")
    assert r.exit_code == 1 and "only personnel" in r.output
    r = run(home, "users", "approve", "cardio", "--approver", "boss", "--speciality", "cardiology")
    assert r.exit_code == 0, r.output

    actions = [e["action"] for e in query(home.audit_dir, user="operator")]
    assert actions == [
        "users.add",
        "users.add",
        "users.train",
        "users.reset_password",
        "users.disable",
        "users.expire",
        "users.add",
        "users.approve_application",
        "users.approve_application",
    ]
    assert [e["outcome"] for e in query(home.audit_dir, action="users.approve_application")] == [
        "failure",
        "success",
    ]
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


def test_tokens_cli(home: HomePaths) -> None:
    run(home, "users", "add", "alice", "--role", "trainer", "--password-stdin", stdin=PW)
    r = run(home, "tokens", "create", "alice", "--days", "30", "--label", "ci", "--json")
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
    assert [e["action"] for e in query(home.audit_dir, action="tokens")] == [
        "tokens.create",
        "tokens.revoke",
    ]


def test_missing_data_dir(tmp_path: Path) -> None:
    (tmp_path / "archive.toml").write_text("")
    r = CliRunner().invoke(app, ["users", "list", "--home", str(tmp_path)])
    assert r.exit_code == 1 and "archive init" in r.output
