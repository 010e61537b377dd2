"""A real archive's audit log, tampered with while it is stopped: `archive audit verify`
and `archive fsck` fail, each with a line that says what was found (issue #20, finding 4).

Records come from the running archive (Orthanc + plugin, group commit, signed with the
keyring's key), including denied ones (a wrong password); each case starts again from a
copy of the stopped home's audit directory and database."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive.audit.log import HEAD_NAME, LOG_NAME, PUBLIC_KEY_NAME, public_key_bytes
from tests.harness import RunningArchive, add_user, client, new_archive
from tests.unit.test_audit_anchor import _rechain, _records, _rewrite_head, _write_records


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunningArchive, Path]:
    root = tmp_path_factory.mktemp("audit-tamper")
    archive = new_archive(root / "home")
    add_user(archive, "tina", ["trainer"])
    archive.start()
    try:
        with client(archive, "tina") as http:
            for _ in range(5):
                assert http.get("/teaching/health").status_code == 200
        with httpx.Client(base_url=archive.url, auth=("tina", "wrong-password-123")) as http:
            for _ in range(3):
                assert http.get("/system").status_code in (401, 403)
    finally:
        archive.stop()
    saved = root / "saved"
    saved.mkdir()
    shutil.copytree(archive.config.home.audit_dir, saved / "audit")
    _copy_db(archive.config.home.db_path, saved / "archive.db")
    return archive, saved


def _copy_db(source: Path, target: Path) -> None:
    """A consistent copy, WAL included (SQLite's backup API), in rollback-journal mode."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    src, dest = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        src.close()
        dest.close()


def _reset(archive: RunningArchive, saved: Path) -> None:
    home = archive.config.home
    shutil.rmtree(home.audit_dir)
    shutil.copytree(saved / "audit", home.audit_dir)
    _copy_db(saved / "archive.db", home.db_path)


def _fails(archive: RunningArchive, expected: str) -> None:
    verify = archive.cli("audit", "verify")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert expected in verify.stdout, verify.stdout
    assert verify.stderr.startswith("error: audit log failed verification:"), verify.stderr
    fsck = archive.cli("fsck", "--json")
    assert fsck.returncode == 1, fsck.stdout + fsck.stderr
    report = json.loads(fsck.stdout)
    audit = [f for f in report["findings"] if f["kind"].startswith("audit")]
    assert audit and not any(f["repairable"] for f in audit), report
    assert any(expected in f["detail"] for f in audit), audit


def test_the_untouched_log_verifies(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    records = _records(archive.config.home)
    assert any(r["outcome"] == "denied" for r in records)
    assert all(r["sig"] for r in records)  # the running archive signs every record
    verify = archive.cli("audit", "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stdout
    fsck = archive.cli("fsck", "--json")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_deleted_log_and_head(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    (archive.config.home.audit_dir / LOG_NAME).unlink()
    (archive.config.home.audit_dir / HEAD_NAME).unlink()
    _fails(archive, "missing or empty")


def test_emptied_log(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    (archive.config.home.audit_dir / LOG_NAME).write_bytes(b"")
    _rewrite_head(archive.config.home, [])
    _fails(archive, "missing or empty")


def test_tail_cut_with_the_head_rewritten(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    home = archive.config.home
    kept = _records(home)[:-3]
    _write_records(home, kept)
    _rewrite_head(home, kept)
    _fails(archive, "records removed")


def test_denied_records_removed_and_rechained(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    home = archive.config.home
    kept = [{**r, "sig": None} for r in _records(home) if r["outcome"] != "denied"]
    forged = _rechain(kept)
    _write_records(home, forged)
    _rewrite_head(home, forged)
    _fails(archive, "anchor")


def test_forged_append(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    home = archive.config.home
    records = _records(home)
    extra = {**records[-1], "action": "pull", "actor": "mallory", "sig": None}
    forged = records + _rechain([*records, extra])[-1:]
    _write_records(home, forged)
    _rewrite_head(home, forged)
    _fails(archive, "not confirmed by the archive database's anchor")


def test_resigned_rewrite_with_public_key_file_and_anchor_replaced(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    home = archive.config.home
    mallory = Ed25519PrivateKey.generate()
    kept = [r for r in _records(home) if r["outcome"] != "denied" and r["actor"] != "system"]
    forged = _rechain(kept, signer=mallory)
    _write_records(home, forged)
    _rewrite_head(home, forged)
    (home.audit_dir / PUBLIC_KEY_NAME).write_text(public_key_bytes(mallory).hex() + "\n")
    conn = sqlite3.connect(home.db_path)
    conn.execute("UPDATE audit_anchor SET seq = ?, hash = ?", (len(forged), forged[-1]["hash"]))
    conn.commit()
    conn.close()
    _fails(archive, "not the trusted (pinned) key")


def test_head_deleted(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    (archive.config.home.audit_dir / HEAD_NAME).unlink()
    _fails(archive, "head file missing")


def test_head_rewritten(stopped) -> None:
    archive, saved = stopped
    _reset(archive, saved)
    path = archive.config.home.audit_dir / HEAD_NAME
    head = json.loads(path.read_text())
    head["seq"] += 5
    path.write_text(json.dumps(head))
    _fails(archive, "end cut off")
