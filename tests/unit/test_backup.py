"""Backups, restore and fsck on a home built without Orthanc (a hand-made index)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from archive.audit import AuditEvent, audit_log_for, verify
from archive.backup import (
    create_backup,
    known_data_backup_locations,
    list_backups,
    restore_backup,
    verify_backup,
)
from archive.backup.snapshot import object_path, open_bundle, read_manifest
from archive.config import load_config
from archive.errors import ArchiveError
from archive.fsck import check_home
from archive.serve.home import init_home
from archive.vault import EncryptedStore, Keyring, backup_keyring, keyring_path
from archive.vault.fsutil import tmp_name
from archive.vault.sealing import KdfParams

FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
PASS = "correct horse battery staple, for tests only"
RECOVERY = "a different recovery passphrase for the safe"
SCHEMA = """
CREATE TABLE Resources(internalId INTEGER PRIMARY KEY AUTOINCREMENT, resourceType INTEGER,
  publicId TEXT, parentId INTEGER);
CREATE TABLE AttachedFiles(id INTEGER, fileType INTEGER, uuid TEXT, compressedSize INTEGER,
  uncompressedSize INTEGER, compressionType INTEGER, uncompressedMD5 TEXT, compressedMD5 TEXT,
  PRIMARY KEY(id, fileType));
"""


class Home:
    def __init__(self, root: Path, http: int = 18042, dicom: int = 14242) -> None:
        self.config = init_home(root, http_port=http, dicom_port=dicom)
        self.ring = Keyring.create(keyring_path(self.config.home.keys_dir), PASS, kdf=FAST)
        self.store = EncryptedStore(self.config.home.storage_dir, self.ring)
        self.index = sqlite3.connect(str(self.config.home.index_dir / "index"))
        self.index.execute("PRAGMA journal_mode=WAL")  # as Orthanc keeps it
        self.index.executescript(SCHEMA)
        self.index.execute("INSERT INTO Resources VALUES (1, 1, 'patient-1', NULL)")
        self.index.execute("INSERT INTO Resources VALUES (2, 2, 'study-1', 1)")
        self.index.execute("INSERT INTO Resources VALUES (3, 3, 'series-1', 2)")
        self.index.commit()
        self.n = 0
        conn = sqlite3.connect(str(self.config.home.db_path))
        conn.executescript(
            "CREATE TABLE catalogue_cases (case_id TEXT, orthanc_study_id TEXT,"
            " instance_count INTEGER, status TEXT);"
            "INSERT INTO catalogue_cases VALUES ('NSR-1', 'study-1', 2, 'available');"
        )
        conn.commit()
        conn.close()
        audit_log_for(self.config.home).append(AuditEvent("test.start", "success", actor="t"))

    def add_instance(self, payload: bytes) -> str:
        self.n += 1
        uuid = f"{self.n:08d}-aaaa-bbbb-cccc-000000000000"
        rowid = 100 + self.n
        self.store.write(uuid, 1, payload)
        md5 = hashlib.md5(payload).hexdigest()  # noqa: S324
        self.index.execute("INSERT INTO Resources VALUES (?, 4, ?, 3)", (rowid, f"inst-{self.n}"))
        self.index.execute(
            "INSERT INTO AttachedFiles VALUES (?, 1, ?, ?, ?, 1, ?, ?)",
            (rowid, uuid, len(payload), len(payload), md5, md5),
        )
        self.index.commit()
        return uuid


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home")
    h.add_instance(b"DICM first instance" * 50)
    h.add_instance(b"DICM second instance" * 50)
    return h


def test_create_list_verify_and_incremental(home: Home, tmp_path: Path) -> None:
    dest = tmp_path / "media"
    first = create_backup(home.config, home.ring, dest)
    assert first.files == 2 and first.new_files == 2
    second = create_backup(home.config, home.ring, dest)
    assert second.files == 2 and second.new_files == 0  # nothing new: nothing copied
    home.add_instance(b"DICM third" * 50)
    third = create_backup(home.config, home.ring, dest)
    assert third.files == 3 and third.new_files == 1
    listed = list_backups(dest)
    assert [b["id"] for b in listed] == sorted([first.id, second.id, third.id])
    result = verify_backup(dest, third.id, home.ring, deep=True)
    assert result.ok, result.problems
    assert result.decrypted == 3 and result.bundle_checked
    assert dest.resolve() in known_data_backup_locations(home.config.home.keys_dir)
    # The backup is audited, and the audit chain still verifies.
    assert verify(home.config.home.audit_dir).ok


def test_no_keys_and_nothing_in_clear(home: Home, tmp_path: Path) -> None:
    dest = tmp_path / "media"
    made = create_backup(home.config, home.ring, dest)
    members = open_bundle(dest, made.id, home.ring)
    assert not any(name.startswith("keys") or "keyring" in name for name in members)
    assert {"index.sqlite", "archive.db", "audit/audit.jsonl", "config/archive.toml"} <= set(
        members
    )
    keyring_bytes = keyring_path(home.config.home.keys_dir).read_bytes()
    for path in dest.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"DICM" not in data and b"SQLite format" not in data, path
            assert keyring_bytes not in data


def test_verify_finds_damage(home: Home, tmp_path: Path) -> None:
    dest = tmp_path / "media"
    made = create_backup(home.config, home.ring, dest)
    manifest, _ = read_manifest(dest, made.id)
    victim = object_path(dest, manifest["files"][0]["sha256"])
    data = bytearray(victim.read_bytes())
    data[200] ^= 1
    victim.write_bytes(bytes(data))
    result = verify_backup(dest, made.id)
    assert not result.ok and "damaged" in result.problems[0]
    bundle = dest / "snapshots" / made.id / "bundle.tav"
    raw = bytearray(bundle.read_bytes())
    raw[-5] ^= 1
    bundle.write_bytes(bytes(raw))
    result = verify_backup(dest, made.id, home.ring)
    assert any("bundle" in p for p in result.problems)


def test_restore_into_new_home(home: Home, tmp_path: Path) -> None:
    dest = tmp_path / "media"
    made = create_backup(home.config, home.ring, dest)
    kb = backup_keyring(home.ring, tmp_path / "kb.json", RECOVERY, kdf=FAST)
    new = tmp_path / "restored"
    result = restore_backup(
        dest, kb, RECOVERY, new, "another keyring passphrase, long", http_port=19042,
        dicom_port=19043, kdf=FAST,
    )  # fmt: skip
    assert result.backup_id == made.id and result.instances_checked == 2
    config = load_config(new)
    assert (config.http.port, config.dicom.port) == (19042, 19043)
    ring = Keyring.open(keyring_path(config.home.keys_dir), "another keyring passphrase, long")
    restored = EncryptedStore(config.home.storage_dir, ring)
    original = {u: home.store.read(u, c) for u, c, _ in home.store.entries()}
    assert {u: restored.read(u, c) for u, c, _ in restored.entries()} == original
    report = verify(config.home.audit_dir, ring.audit_public_key_bytes)
    assert report.ok, report.problems
    assert check_home(config, ring).ok
    assert dest.resolve() in known_data_backup_locations(config.home.keys_dir)
    # Restoring twice into the same place is refused; a wrong recovery passphrase too.
    with pytest.raises(ArchiveError):
        restore_backup(dest, kb, RECOVERY, new, "x" * 30, kdf=FAST)
    with pytest.raises(ArchiveError):
        restore_backup(dest, kb, "wrong recovery passphrase!!", tmp_path / "r2", "y" * 30)
    assert not (tmp_path / "r2").exists()  # a failed restore leaves nothing behind


def test_restore_refuses_keyring_backup_without_the_bundle_key(home: Home, tmp_path: Path) -> None:
    other = Keyring.create(tmp_path / "otherkeys" / "keyring.json", PASS, kdf=FAST)
    kb = backup_keyring(other, tmp_path / "kb.json", RECOVERY, kdf=FAST)
    create_backup(home.config, home.ring, tmp_path / "media")
    with pytest.raises(ArchiveError, match="does not hold key"):
        restore_backup(tmp_path / "media", kb, RECOVERY, tmp_path / "r", "z" * 30, kdf=FAST)
    assert not (tmp_path / "r").exists()


def test_fsck_finds_and_safely_repairs(home: Home) -> None:
    assert check_home(home.config, home.ring).ok
    # A crash leftover and a file written just before Orthanc committed its index.
    partial = tmp_name(home.store.path_for("00000001-aaaa-bbbb-cccc-000000000000", 1))
    partial.write_bytes(b"half written")
    home.store.write("99999999-dead-beef-0000-000000000000", 1, b"orphaned instance")
    report = check_home(home.config, home.ring)
    kinds = sorted(f.kind for f in report.findings)
    assert kinds == ["orphan_file", "partial"] and not report.ok
    repaired = check_home(home.config, home.ring, repair=True)
    assert repaired.ok and repaired.lost_and_found
    moved = list(Path(repaired.lost_and_found).rglob("*.1"))
    assert len(moved) == 1  # moved, still encrypted, not deleted
    assert b"orphaned instance" not in moved[0].read_bytes()
    assert not partial.exists()
    assert check_home(home.config, home.ring).ok


def test_fsck_reports_what_it_cannot_repair(home: Home) -> None:
    first, second = [p for _, _, p in home.store.entries()]
    data = bytearray(first.read_bytes())
    data[-3] ^= 1
    first.write_bytes(bytes(data))
    second.unlink()
    conn = sqlite3.connect(str(home.config.home.db_path))
    conn.execute("INSERT INTO catalogue_cases VALUES ('NSR-2', 'gone', 1, 'available')")
    conn.commit()
    conn.close()
    report = check_home(home.config, home.ring, repair=True)
    kinds = sorted(f.kind for f in report.findings)
    assert kinds == ["catalogue", "damaged_file", "missing_file"]  # NSR-2: study gone
    assert not report.ok and not any(f.repaired for f in report.findings)
    assert first.exists()  # never removed, even with --repair
    assert json.dumps(report.as_dict())


def test_fsck_rolls_a_lagging_audit_head_forward(home: Home) -> None:
    audit_dir = home.config.home.audit_dir
    log = audit_log_for(home.config.home)
    head_before = (audit_dir / "head.json").read_bytes()
    log.append(AuditEvent("test.more", "success", actor="t"))
    # A kill between the log's fsync and the head's rename: the old head stays.
    (audit_dir / "head.json").write_bytes(head_before)
    assert not verify(audit_dir).ok
    report = check_home(home.config, home.ring)
    assert [f.kind for f in report.findings] == ["audit_head"] and not report.ok
    assert check_home(home.config, home.ring, repair=True).ok
    assert verify(audit_dir).ok
    # An edited record is not a lagging head: reported, never "repaired".
    lines = (audit_dir / "audit.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"t"', '"x"')
    (audit_dir / "audit.jsonl").write_text("\n".join(lines) + "\n")
    report = check_home(home.config, home.ring, repair=True)
    assert "audit" in {f.kind for f in report.findings} and not report.ok


def test_fsck_rebuilds_a_lost_until_pixel_data_copy(home: Home) -> None:
    """Type 3 is written without fsync by design; a power cut can lose or empty it.
    fsck rebuilds it byte-exact from the DICOM file, and only when the index's MD5 agrees."""
    payload = b"DICM header bytes " * 20 + b"\xe0\x7f\x10\x00" + b"\x01" * 300
    uuid1 = home.add_instance(payload)
    head = payload[: payload.index(b"\xe0\x7f\x10\x00")]
    uuid3, rowid = "33333333-aaaa-bbbb-cccc-000000000000", 100 + home.n
    md5 = hashlib.md5(head).hexdigest()  # noqa: S324
    home.index.execute(
        "INSERT INTO AttachedFiles VALUES (?, 3, ?, ?, ?, 1, ?, ?)",
        (rowid, uuid3, len(head), len(head), md5, md5),
    )
    home.index.commit()
    home.store.path_for(uuid3, 3).parent.mkdir(parents=True, exist_ok=True)
    home.store.path_for(uuid3, 3).write_bytes(b"")  # the power cut's leftover
    report = check_home(home.config, home.ring)
    [finding] = report.findings
    assert finding.kind == "damaged_file" and finding.repairable and not report.ok
    repaired = check_home(home.config, home.ring, repair=True)
    assert [f.repaired for f in repaired.findings] == [True]
    assert home.store.read(uuid3, 3) == head and home.store.read(uuid1, 1) == payload
    assert check_home(home.config, home.ring).ok
    # Missing altogether: rebuilt too; a type-1 loss is never "rebuilt".
    home.store.path_for(uuid3, 3).unlink()
    home.store.path_for(uuid1, 1).unlink()
    report = check_home(home.config, home.ring, repair=True)
    by_type = {f.target.rsplit(".", 1)[1]: f for f in report.findings}
    assert not by_type["1"].repairable and not by_type["1"].repaired
    assert "not rebuilt" in by_type["3"].detail and not by_type["3"].repaired


def test_cli_verify_of_a_foreign_or_damaged_backup_is_one_line(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest lacking what it should hold (a foreign or hand-edited backup) ends in
    one clear line and exit 1, and a verification with the home's keys is audited."""
    from typer.testing import CliRunner

    import archive.backup as backup_pkg
    from archive.cli.main import app

    dest = tmp_path / "media"
    create_backup(home.config, home.ring, dest)
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(tmp_path / "pass"))
    (tmp_path / "pass").write_text(PASS)
    (tmp_path / "pass").chmod(0o600)
    ok = CliRunner().invoke(
        app, ["backup", "verify", str(dest), "--home", str(home.config.home.root)]
    )
    assert ok.exit_code == 0, ok.output
    records = [
        json.loads(line)
        for line in (home.config.home.audit_dir / "audit.jsonl").read_text().splitlines()
    ]
    assert [r["outcome"] for r in records if r["action"] == "backup.verify"] == ["success"]

    def foreign(*args, **kwargs):
        return {}["sha256"]

    monkeypatch.setattr(backup_pkg, "verify_backup", foreign)
    bad = CliRunner().invoke(app, ["backup", "verify", str(dest)])
    assert bad.exit_code == 1 and "damaged or is not an archive backup" in bad.output
    assert "Traceback" not in bad.output
