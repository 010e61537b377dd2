"""The wipe's mechanics on a real (small) encrypted store: crypto-erase destroys the
keyring and every registered backup, the sample control unwraps before and nothing
unwraps after, ciphertext and volume configuration are gone, plaintext scan finds DICOM
magic and canaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.paths import HomePaths
from archive.vault import EncryptedStore, Keyring, backup_keyring, volume
from archive.vault.errors import KeyringMissingError
from archive.vault.keyring import keyring_path
from archive.vault.sealing import KdfParams
from archive.vault.shred import shred_header
from archive.vault.volume import fuse_usable
from archive.vault.wipe import (
    check_nothing_remains,
    crypto_erase,
    delete_ciphertext,
    destroy_volume,
    find_plaintext,
    remove_leftovers,
    sample_headers,
    unmount_volume,
    unwrap_attempts,
)

FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
PASS = "correct horse battery staple, unit tests"


@pytest.fixture
def home(tmp_path: Path):
    paths = HomePaths(tmp_path / "home")
    ring = Keyring.create(keyring_path(paths.keys_dir), PASS, kdf=FAST)
    backup = backup_keyring(ring, tmp_path / "offsite" / "b.json", PASS + " recovery", kdf=FAST)
    store = EncryptedStore(paths.storage_dir, ring, fsync=False)
    for i in range(6):
        store.write(f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", 1, b"\0" * 128 + b"DICM" + b"x" * 900)
    (paths.volume_dir).mkdir(parents=True)
    (paths.volume_dir / "gocryptfs.conf").write_text('{"EncryptedKey": "..."}')
    return paths, ring, store, backup


def test_erase_then_nothing_unwraps_and_nothing_readable_remains(home) -> None:
    paths, ring, store, backup = home
    samples = sample_headers(store, 4, seed=1)
    assert len(samples) == 4 and unwrap_attempts(samples, [ring]) == 4  # control
    report = crypto_erase(paths, ring.kek_ids())
    assert not keyring_path(paths.keys_dir).exists() and not backup.exists()
    assert str(backup) in report.key_files_destroyed
    with pytest.raises(KeyringMissingError):
        Keyring.open(keyring_path(paths.keys_dir), PASS)
    assert find_plaintext(paths.root) == []  # ciphertext: no DICOM magic in clear
    delete_ciphertext(paths, report)
    destroy_volume(paths, report)
    assert report.files_deleted >= 6 and not paths.storage_dir.exists()
    assert not (paths.volume_dir / "gocryptfs.conf").exists()


def test_plaintext_scan_finds_dicom_magic_and_canaries(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"\0" * 128 + b"DICM")
    (tmp_path / "b").write_bytes(b"hello CANARY-42 world")
    (tmp_path / "c").write_bytes(b"nothing")
    hits = find_plaintext(tmp_path, [b"CANARY-42"])
    assert sorted(Path(h).name for h in hits) == ["a", "b"]


def test_shredded_header_no_longer_unwraps(home) -> None:
    paths, ring, store, _ = home
    uuid, ct, path = next(store.entries())
    assert shred_header(path)
    with pytest.raises(Exception):  # noqa: B017, PT011 - tamper or key error
        store.read(uuid, ct)
    assert not shred_header(paths.root / "absent")


FUSE_OK, FUSE_WHY = fuse_usable()


@pytest.mark.skipif(not FUSE_OK, reason=f"FUSE mounting impossible here: {FUSE_WHY}")
def test_wipe_unmounts_the_volume_removes_every_key_and_checks(tmp_path: Path) -> None:
    """Issue 25: the mount stayed over a deleted directory and keys/https.pem stayed."""
    paths = HomePaths(tmp_path / "home")
    for directory in paths.private_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("# archive.toml\n")
    (paths.keys_dir / "https.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    ring = Keyring.create(keyring_path(paths.keys_dir), PASS, kdf=FAST)
    volume.create(paths, ring.volume_secret)
    volume.mount(paths, ring.volume_secret)
    try:
        store = EncryptedStore(paths.storage_dir, ring, fsync=False)
        store.write("00000001-aaaa-bbbb-cccc-dddddddddddd", 1, b"\0" * 128 + b"DICM" + b"x" * 64)
        (paths.audit_dir / "log.jsonl").write_text("CANARY-25\n")
        (paths.run_dir / "orthanc.log").write_text("log\n")
        before = check_nothing_remains(paths, [b"CANARY-25"])
        assert all(not c.ok for c in before)  # each check can fail
        report = crypto_erase(paths, ring.kek_ids())
        delete_ciphertext(paths, report)
        assert volume.status(paths).mounted  # the old wipe stopped here: mount left in place
        unmount_volume(paths, report)
        destroy_volume(paths, report)
        remove_leftovers(paths, report)
    finally:
        volume.unmount(paths)  # only if a step above failed
    assert report.unmounted == str(paths.data_dir)
    assert str(paths.keys_dir / "https.pem") in report.key_files_destroyed
    checks = check_nothing_remains(paths, [b"CANARY-25"])
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert [c.name for c in checks] == ["mounts", "key files", "files", "volume", "plaintext"]
    assert "https.pem included" in checks[1].detail
    assert [p for p in paths.root.rglob("*")] == [paths.config_file]
    assert str(paths.root) not in Path("/proc/self/mountinfo").read_text()
