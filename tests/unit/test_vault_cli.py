"""`archive keys ...` and `archive volume status` through the real typer app."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archive.cli.main import app
from archive.serve.home import init_home
from archive.vault import EncryptedStore, Keyring

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    init_home(root)
    secret = tmp_path / "pass"
    secret.write_text("correct horse battery\n")
    os.chmod(secret, 0o600)
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(secret))
    return root


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_keys_lifecycle(home: Path, tmp_path: Path) -> None:
    code, out = _run("keys", "init", "--home", str(home), "--json")
    assert code == 0, out
    first = json.loads(out)["primary_kek_id"]
    code, out = _run("keys", "init", "--home", str(home))
    assert code == 1 and "already exists" in out

    ring = Keyring.open(home / "keys" / "keyring.json", "correct horse battery")
    store = EncryptedStore(home / "data" / "storage", ring)
    for i in range(5):
        store.write(f"{i:04d}abcd-0000", 1, b"payload %d" % i)

    code, out = _run("keys", "status", "--home", str(home), "--json")
    status = json.loads(out)
    assert code == 0 and status["keks"] == [
        {"id": first, "created": status["keks"][0]["created"], "files": 5}
    ]
    assert "correct horse" not in out

    code, out = _run("keys", "rotate", "--home", str(home), "--json")
    report = json.loads(out)
    assert code == 0 and report["rewrapped"] == 5 and report["retired"] == [first]
    code, out = _run("keys", "verify", "--home", str(home), "--json")
    assert code == 0 and json.loads(out)["ok"] is True

    recovery = tmp_path / "recovery"
    recovery.write_text("a different recovery phrase\n")
    os.chmod(recovery, 0o600)
    code, out = _run(
        "keys",
        "backup",
        "--home",
        str(home),
        "--to",
        str(tmp_path / "b.json"),
        "--recovery-passphrase-file",
        str(recovery),
        "--json",
    )
    assert code == 0 and json.loads(out)["covers_current"] is True, out
    code, out = _run(
        "keys",
        "verify",
        "--home",
        str(home),
        "--backup",
        str(tmp_path / "b.json"),
        "--recovery-passphrase-file",
        str(recovery),
    )
    assert code == 0 and "OK" in out

    reopened = Keyring.open(home / "keys" / "keyring.json", "correct horse battery")
    again = EncryptedStore(store.root, reopened)
    for i in range(5):
        assert again.read(f"{i:04d}abcd-0000", 1) == b"payload %d" % i


def test_keys_errors_are_one_line(home: Path, tmp_path: Path, monkeypatch) -> None:
    code, out = _run("keys", "status", "--home", str(home))
    assert code == 1 and out.startswith("error: ") and "archive keys init" in out
    assert "Traceback" not in out
    _run("keys", "init", "--home", str(home))
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    os.chmod(wrong, 0o600)
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(wrong))
    code, out = _run("keys", "status", "--home", str(home))
    assert code == 1 and "Wrong passphrase" in out and len(out.strip().splitlines()) == 1


def test_volume_status_plain(home: Path) -> None:
    code, out = _run("volume", "status", "--home", str(home), "--json")
    data = json.loads(out)
    assert code == 0 and data["kind"] == "none" and data["encrypted"] is False


def test_volume_mount_and_unmount_are_audited_inside_the_volume(home: Path) -> None:
    from archive.audit import query, verify
    from archive.vault import volume as vol

    if not vol.fuse_usable():
        pytest.skip("FUSE cannot mount on this machine")
    assert _run("keys", "init", "--home", str(home))[0] == 0
    code, out = _run("volume", "create", "--home", str(home))
    assert code == 0, out
    code, out = _run("volume", "mount", "--home", str(home))
    assert code == 0, out
    try:
        audit_dir = home / "data" / "audit"
        assert [r["action"] for r in query(audit_dir, action="volume")] == ["volume.mount"]
    finally:
        code, out = _run("volume", "unmount", "--home", str(home))
    assert code == 0, out
    assert not (home / "data" / "audit" / "audit.jsonl").exists()  # lives in the volume
    assert _run("volume", "mount", "--home", str(home))[0] == 0
    try:
        actions = [r["action"] for r in query(home / "data" / "audit", action="volume")]
        assert actions == ["volume.mount", "volume.unmount", "volume.mount"]
        assert verify(home / "data" / "audit").ok
    finally:
        _run("volume", "unmount", "--home", str(home))
