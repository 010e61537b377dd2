"""Which directories and files the encrypted store fsyncs: durable writes make the file,
its rename and any shard directory they created survive a power cut; derived writes
(durable=False) sync nothing but are still atomic and encrypted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archive.vault import EncryptedStore, KdfParams, Keyring, fsutil
from archive.vault import store as store_module

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def store(tmp_path: Path) -> EncryptedStore:
    ring = Keyring.create(tmp_path / "keys" / "keyring.json", "correct horse", kdf=FAST)
    return EncryptedStore(tmp_path / "storage", ring)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    calls: dict[str, list] = {"dirs": [], "files": 0}
    real_fsync = os.fsync

    def fsync_dir(directory: Path) -> None:
        calls["dirs"].append(Path(directory))

    def fsync(fd: int) -> None:
        calls["files"] += 1
        real_fsync(fd)

    monkeypatch.setattr(fsutil, "fsync_dir", fsync_dir)
    monkeypatch.setattr(store_module, "fsync_dir", fsync_dir)
    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    return calls


def test_first_write_syncs_new_shard_dirs_and_the_rename(store, synced) -> None:
    uuid = "abcd0001-0000-0000-0000-000000000000"
    store.write(uuid, 1, b"dicom")
    root = store.root
    # the rename (its directory), then the entries of both shard levels created
    assert synced["dirs"] == [root / "ab" / "cd", root / "ab", root]
    assert synced["files"] == 1
    assert store.read(uuid, 1) == b"dicom"


def test_write_into_existing_shard_syncs_only_its_directory(store, synced) -> None:
    store.write("abcd0001-0000-0000-0000-000000000000", 1, b"one")
    synced["dirs"].clear()
    store.write("abcd0002-0000-0000-0000-000000000000", 1, b"two")
    assert synced["dirs"] == [store.root / "ab" / "cd"]  # the rename must still be durable


def test_derived_write_syncs_nothing_but_is_encrypted_and_atomic(store, synced) -> None:
    uuid = "ef010003-0000-0000-0000-000000000000"
    store.write(uuid, 3, b"header bytes", durable=False)
    assert synced == {"dirs": [], "files": 0}
    path = store.path_for(uuid, 3)
    assert b"header bytes" not in path.read_bytes()
    assert store.read(uuid, 3) == b"header bytes"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
