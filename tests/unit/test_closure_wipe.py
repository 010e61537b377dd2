"""The wipe's mechanics on a real (small) encrypted store: crypto-erase destroys the
keyring and every registered backup, the sample control unwraps before and nothing
unwraps after, ciphertext and volume configuration are gone, plaintext scan finds DICOM
magic and canaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.paths import HomePaths
from archive.vault import EncryptedStore, Keyring, backup_keyring
from archive.vault.errors import KeyringMissingError
from archive.vault.keyring import keyring_path
from archive.vault.sealing import KdfParams
from archive.vault.shred import shred_header
from archive.vault.wipe import (
    crypto_erase,
    delete_ciphertext,
    destroy_volume,
    find_plaintext,
    sample_headers,
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
