"""Keyring.follow_changes: a long-lived keyring picks up a rotation saved by another process."""

from __future__ import annotations

from pathlib import Path

from archive.vault import EncryptedStore, Keyring, read_header, rotate_and_rewrap
from archive.vault.sealing import KdfParams

FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
PASS = "a long enough passphrase for unit tests"


def test_following_keyring_writes_under_new_primary_and_reads_rewrapped(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    served = Keyring.create(path, PASS, kdf=FAST)  # the plugin's copy, kept open
    store = EncryptedStore(tmp_path / "storage", served, fsync=False)
    store.write("uuid-0001", 1, b"first")
    old = served.primary_kek_id

    static = Keyring.open(path, PASS)  # a copy that does not follow
    cli = Keyring.open(path, PASS)  # `archive keys rotate` in another process
    report = rotate_and_rewrap(cli, EncryptedStore(tmp_path / "storage", cli), retire=False)
    assert report.rewrapped == 1 and report.new_primary != old

    assert static.primary_kek_id == old  # without following: stale
    served.follow_changes()
    assert store.read("uuid-0001", 1) == b"first"  # unknown key id -> reload
    store.write("uuid-0002", 1, b"second")
    assert read_header(store.path_for("uuid-0002", 1)).key_id == report.new_primary


def test_following_keyring_reloads_on_unknown_key_only_when_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    ring = Keyring.create(path, PASS, kdf=FAST)
    ring.follow_changes()
    assert not ring.knows("k20990101-abcdef")  # unchanged file: no reload, still unknown
    other = Keyring.open(path, PASS)
    new_id = other.rotate()
    assert ring.knows(new_id) and ring.primary_kek_id == new_id
