"""Keyring: sealing, distinct errors, rotation bookkeeping, backups, passphrase sources."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive.config import ArchiveConfig, KeyringConfig
from archive.paths import HomePaths
from archive.vault import (
    KdfParams,
    Keyring,
    KeyringCorruptError,
    KeyringError,
    KeyringMissingError,
    KeyringPassphraseError,
    backup_keyring,
    known_backup_locations,
    obtain_passphrase,
    open_keyring_for_cli,
    restore_keyring,
    verify_backup,
)

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)
PASS = "correct horse battery"
RECOVERY = "recovery staple orange"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "keyring.json"


@pytest.fixture
def ring(path: Path) -> Keyring:
    return Keyring.create(path, PASS, kdf=FAST)


def test_create_is_private_sealed_and_reopens(ring: Keyring, path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    raw = path.read_bytes()
    assert ring.kek(ring.primary_kek_id) not in raw
    again = Keyring.open(path, PASS)
    assert again.primary_kek_id == ring.primary_kek_id
    assert again.kek(ring.primary_kek_id) == ring.kek(ring.primary_kek_id)
    assert again.pseudonym_key == ring.pseudonym_key and len(ring.pseudonym_key) == 32
    assert again.audit_public_key_bytes == ring.audit_public_key_bytes
    import base64

    shown = repr(again)
    assert PASS not in shown
    assert base64.b64encode(again.kek(again.primary_kek_id)).decode() not in shown
    assert not list(path.parent.glob("*.tmp"))


def test_default_kdf_parameters_work(tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "k" / "keyring.json", PASS)
    doc = json.loads(ring.path.read_text())
    assert doc["kdf"]["name"] == "argon2id" and doc["kdf"]["memory_cost"] >= 65536
    assert Keyring.open(ring.path, PASS).primary_kek_id == ring.primary_kek_id


def test_audit_key_signs(ring: Keyring) -> None:
    signature = ring.audit_signing_key.sign(b"entry")
    Ed25519PublicKey.from_public_bytes(ring.audit_public_key_bytes).verify(signature, b"entry")


def test_create_refuses_to_overwrite_and_weak_passphrase(ring: Keyring, path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(KeyringError, match="refusing to overwrite"):
        Keyring.create(path, PASS, kdf=FAST)
    assert path.read_bytes() == before
    with pytest.raises(KeyringError, match="too short"):
        Keyring.create(path.parent.parent / "x" / "keyring.json", "short", kdf=FAST)


def test_distinct_errors_and_nothing_touched(ring: Keyring, path: Path) -> None:
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(KeyringPassphraseError, match="Wrong passphrase") as wrong:
        Keyring.open(path, "not the passphrase")
    with pytest.raises(KeyringMissingError, match="No keyring") as missing:
        Keyring.open(path.with_name("absent.json"), PASS)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime

    doc = json.loads(before)
    blob = bytearray(doc["ciphertext"].encode())
    blob[10] = ord("A") if blob[10] != ord("A") else ord("B")
    path.write_text(json.dumps({**doc, "ciphertext": blob.decode()}))
    with pytest.raises(KeyringCorruptError, match="corrupt") as corrupt:
        Keyring.open(path, PASS)
    messages = {str(wrong.value), str(missing.value), str(corrupt.value)}
    assert len(messages) == 3
    assert "restore" in str(corrupt.value).lower() and "archive keys init" in str(missing.value)

    for damage in (b"", b"not json", before[: len(before) // 2], b"[]"):
        path.write_bytes(damage)
        with pytest.raises(KeyringCorruptError):
            Keyring.open(path, PASS)


def test_sealed_payload_damage_with_valid_checksum_is_corrupt(ring: Keyring, path: Path) -> None:
    """Checksum recomputed by an attacker: the AEAD still refuses, as corruption."""
    import base64
    import hashlib

    doc = json.loads(path.read_bytes())
    ct = bytearray(base64.b64decode(doc["ciphertext"]))
    ct[0] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    del doc["checksum"]
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    doc["checksum"] = hashlib.sha256(canonical).hexdigest()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyringCorruptError, match="does not authenticate"):
        Keyring.open(path, PASS)


def test_rotate_retire_and_refresh(ring: Keyring, path: Path) -> None:
    other_process = Keyring.open(path, PASS)
    old = ring.primary_kek_id
    new = ring.rotate()
    assert new != old and ring.primary_kek_id == new and set(ring.kek_ids()) == {old, new}
    assert Keyring.open(path, PASS).primary_kek_id == new  # saved at once
    with pytest.raises(KeyringError, match="primary"):
        ring.retire(new)
    ring.retire(old)
    assert ring.kek_ids() == [new] and ring.is_retired(old)
    with pytest.raises(KeyringError, match="retired"):
        ring.kek(old)
    with pytest.raises(KeyringError, match="not in this keyring"):
        ring.kek("k20000101-000000")
    assert other_process.refresh() is True
    assert other_process.primary_kek_id == new and other_process.kek_ids() == [new]
    assert other_process.refresh() is False
    pseudonym = ring.pseudonym_key
    ring.rotate()
    assert Keyring.open(path, PASS).pseudonym_key == pseudonym  # never rotated


def test_backup_restore_verify_and_registry(ring: Keyring, path: Path, tmp_path: Path) -> None:
    dest = tmp_path / "usb" / "keyring-backup.json"
    written = backup_keyring(ring, dest, RECOVERY, kdf=FAST, passphrase=PASS)
    assert written == dest.resolve() and stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert ring.kek(ring.primary_kek_id) not in dest.read_bytes()
    with pytest.raises(KeyringCorruptError, match="is a keyring backup"):
        Keyring.open(dest, RECOVERY)
    info = verify_backup(dest, RECOVERY, ring)
    assert info.covers_current is True and info.primary_kek_id == ring.primary_kek_id
    with pytest.raises(KeyringPassphraseError):
        verify_backup(dest, PASS, ring)

    ring.rotate()
    stale = verify_backup(dest, RECOVERY, ring)
    assert stale.covers_current is False and stale.missing_kek_ids == [ring.primary_kek_id]

    (tmp_path / "safe").mkdir()
    second = backup_keyring(ring, tmp_path / "safe", RECOVERY, kdf=FAST)
    assert second.parent == (tmp_path / "safe").resolve()
    assert known_backup_locations(path.parent) == [dest.resolve(), second]

    with pytest.raises(KeyringError, match="already exists"):
        restore_keyring(dest, RECOVERY, path, "new passphrase here", kdf=FAST)
    restored_path = tmp_path / "restored" / "keyring.json"
    restored = restore_keyring(second, RECOVERY, restored_path, "new passphrase here", kdf=FAST)
    reopened = Keyring.open(restored_path, "new passphrase here")
    assert reopened.kek_ids() == ring.kek_ids() == restored.kek_ids()
    assert reopened.pseudonym_key == ring.pseudonym_key
    assert reopened.audit_public_key_bytes == ring.audit_public_key_bytes


def test_backup_refuses_same_passphrase(ring: Keyring, tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="must differ"):
        backup_keyring(ring, tmp_path / "b.json", PASS, kdf=FAST, passphrase=PASS)
    assert not (tmp_path / "b.json").exists()


def _config(root: Path, **keyring: str) -> ArchiveConfig:
    return ArchiveConfig(home=HomePaths(root), keyring=KeyringConfig(**keyring))


def _secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_passphrase_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = _secret_file(tmp_path / "env-pass", "from env file\n")
    conf_file = _secret_file(tmp_path / "conf-pass", "from passphrase_file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    _secret_file(creds / "archive-keyring", "from credential")
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(env_file))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": "typed")

    both = _config(tmp_path, passphrase_file=str(conf_file), systemd_credential="archive-keyring")
    assert obtain_passphrase(both, prompt=False) == "from credential"
    assert (
        obtain_passphrase(_config(tmp_path, passphrase_file="conf-pass"), prompt=False)
        == "from passphrase_file"
    )
    assert obtain_passphrase(_config(tmp_path), prompt=False) == "from env file"
    monkeypatch.delenv("ARCHIVE_KEYRING_PASSPHRASE_FILE")
    assert obtain_passphrase(_config(tmp_path), prompt=True) == "typed"
    with pytest.raises(KeyringError, match="set keyring.passphrase_file in archive.toml"):
        obtain_passphrase(_config(tmp_path), prompt=False)


def test_passphrase_never_from_env_value_and_file_must_be_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", "correct horse battery")
    with pytest.raises(KeyringError, match="does not exist"):
        obtain_passphrase(_config(tmp_path), prompt=False)
    loose = _secret_file(tmp_path / "loose", "pass phrase words\n", mode=0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        obtain_passphrase(_config(tmp_path, passphrase_file=str(loose)), prompt=False)
    empty = _secret_file(tmp_path / "empty", "\n")
    with pytest.raises(KeyringError, match="empty"):
        obtain_passphrase(_config(tmp_path, passphrase_file=str(empty)), prompt=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(KeyringError, match="CREDENTIALS_DIRECTORY"):
        obtain_passphrase(_config(tmp_path, systemd_credential="x"), prompt=False)


def test_open_keyring_for_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = HomePaths(tmp_path / "home")
    config = ArchiveConfig(home=home)
    monkeypatch.setenv(
        "ARCHIVE_KEYRING_PASSPHRASE_FILE", str(_secret_file(tmp_path / "p", PASS + "\n"))
    )
    with pytest.raises(KeyringMissingError, match="archive keys init"):
        open_keyring_for_cli(config)
    made = Keyring.create(home.keys_dir / "keyring.json", PASS, kdf=FAST)
    assert open_keyring_for_cli(config).primary_kek_id == made.primary_kek_id
