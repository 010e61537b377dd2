"""Backup a real archive, restore it into a new home on new ports, compare everything."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import (
    RunningArchive,
    base_env,
    free_port,
    new_archive,
    register_node,
    run_cli,
)

SCU = "BACKUP_SCU"
RECOVERY = "recovery passphrase kept in the School safe"
NEW_PASSPHRASE = "the restored home's own keyring passphrase"


def _cases(home: Path) -> list[tuple]:
    conn = sqlite3.connect(str(home / "data" / "archive.db"))
    try:
        return conn.execute(
            "SELECT case_id, study_uid, orthanc_study_id, instance_count, status"
            " FROM catalogue_cases ORDER BY case_id"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _audit(home: Path) -> list[str]:
    return (home / "data" / "audit" / "audit.jsonl").read_text().splitlines()


def test_backup_then_restore_on_new_ports(tmp_path: Path) -> None:
    original = new_archive(tmp_path / "home")
    register_node(original, "backup-scu", SCU, store=True)
    series = make_ct_series(6, patient="BACKUP^BOB", patient_id="B42")
    files = write_files(tmp_path / "in", [to_bytes(ds) for ds in series])
    original.start()
    try:
        assert storescu(original.dicom_port, original.aet, SCU, files).returncode == 0
        deadline = time.monotonic() + 60
        while not _cases(original.home) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _cases(original.home), "the study never became a catalogue case"
        # Backups refuse a running archive, with one line saying what to do.
        refused = original.cli("backup", "create", "--to", str(tmp_path / "media"))
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        original.stop()
    stored = sorted(original.stored_dicom())
    secret = tmp_path / "recovery"
    secret.write_text(RECOVERY)
    secret.chmod(0o600)
    kb = original.cli(
        "keys", "backup", "--to", str(tmp_path / "safe" / "kb.json"),
        "--recovery-passphrase-file", str(secret),
    )  # fmt: skip
    assert kb.returncode == 0, kb.stderr
    made = original.cli("backup", "create", "--to", str(tmp_path / "media"), "--json")
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["new_files"] == result["files"] > 0
    again = json.loads(
        original.cli("backup", "create", "--to", str(tmp_path / "media"), "--json").stdout
    )
    assert again["new_files"] == 0  # incremental: nothing new to copy
    listed = json.loads(run_cli("backup", "list", str(tmp_path / "media"), "--json").stdout)
    assert len(listed["backups"]) == 2
    check = original.cli("backup", "verify", str(tmp_path / "media"), "--deep", "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stdout
    registry = json.loads((original.home / "keys" / "data-backups.json").read_text())
    assert str((tmp_path / "media").resolve()) in [e["path"] for e in registry["locations"]]

    # A fresh home elsewhere, on new ports, from the backup plus the keyring backup.
    new_secret = tmp_path / "new.passphrase"
    new_secret.write_text(NEW_PASSPHRASE)
    new_secret.chmod(0o600)
    new_home = tmp_path / "elsewhere" / "home"
    http, dicom = free_port(), free_port()
    restored_run = run_cli(
        "backup", "restore", str(tmp_path / "media"),
        "--keyring-backup", str(tmp_path / "safe" / "kb.json"),
        "--recovery-passphrase-file", str(secret), "--passphrase-file", str(new_secret),
        "--http-port", str(http), "--dicom-port", str(dicom), "--json",
        home=new_home,
    )  # fmt: skip
    assert restored_run.returncode == 0, restored_run.stderr
    assert json.loads(restored_run.stdout)["instances_checked"] > 0
    from archive.config import load_config

    restored = RunningArchive(
        home=new_home,
        config=load_config(new_home),
        serve_args=original.serve_args,
        env=base_env(ARCHIVE_KEYRING_PASSPHRASE_FILE=str(new_secret)),
    )
    assert (restored.config.http.port, restored.dicom_port) == (http, dicom)
    assert _cases(new_home) == _cases(original.home)
    before = _audit(original.home)
    assert _audit(new_home)[: len(before) - 2] == before[: len(before) - 2]
    audit = restored.cli("audit", "verify", "--keyring", "--json")
    assert audit.returncode == 0 and json.loads(audit.stdout)["ok"], audit.stdout
    assert json.loads(restored.cli("fsck", "--json").stdout)["ok"]
    restored.start()
    try:
        assert restored.counts()["instances"] == len(series)
        assert sorted(restored.stored_dicom()) == stored  # byte-identical
    finally:
        restored.stop()
