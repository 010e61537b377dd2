"""gocryptfs volume: create, mount, nothing in clear in the backing dir, unmount, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from archive.paths import HomePaths
from archive.vault import VolumeError, volume

FUSE_OK, FUSE_WHY = volume.fuse_usable()
needs_fuse = pytest.mark.skipif(not FUSE_OK, reason=f"FUSE mounting impossible here: {FUSE_WHY}")
SECRET = "volume-secret-from-keyring"


@pytest.fixture
def home(tmp_path: Path) -> HomePaths:
    paths = HomePaths(tmp_path / "home")
    for directory in paths.private_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    return paths


def test_status_of_plain_home(home: HomePaths) -> None:
    state = volume.status(home)
    assert state.kind == "none" and not state.encrypted and not state.mounted


@pytest.mark.skipif(shutil.which("gocryptfs") is None, reason="gocryptfs is not installed")
def test_create_initialises_backing_dir(home: HomePaths) -> None:
    state = volume.create(home, SECRET)
    assert (home.volume_dir / "gocryptfs.conf").is_file()
    assert state.kind == "gocryptfs" and not state.mounted and not state.encrypted
    assert oct(home.volume_dir.stat().st_mode & 0o777) == "0o700"
    with pytest.raises(VolumeError, match="already exists"):
        volume.create(home, SECRET)


@needs_fuse
def test_mount_write_unmount_nothing_in_clear(home: HomePaths) -> None:
    volume.create(home, SECRET)
    with pytest.raises(VolumeError, match="password is wrong"):
        volume.mount(home, "not-the-secret")
    assert not volume.status(home).mounted
    state = volume.mount(home, SECRET)
    try:
        assert state.mounted and state.encrypted and state.kind == "gocryptfs"
        assert home.audit_dir.is_dir() and home.quarantine_dir.is_dir()
        marker = b"DICM PATIENT^PLANTED^IDENTIFIER 19700101"
        (home.audit_dir / "log.jsonl").write_bytes(marker * 100)
        for dirpath, _dirs, files in os.walk(home.volume_dir):
            for name in files:
                data = (Path(dirpath) / name).read_bytes()
                assert b"PLANTED" not in data and b"DICM" not in data
                assert "log" not in name and "audit" not in name
        assert volume.mount(home, SECRET).mounted  # idempotent
    finally:
        volume.unmount(home)
    state = volume.status(home)
    assert not state.mounted and not state.encrypted
    assert not any(home.data_dir.iterdir())
    volume.mount(home, SECRET)
    try:
        assert (home.audit_dir / "log.jsonl").read_bytes().startswith(b"DICM PATIENT")
    finally:
        volume.unmount(home)


@needs_fuse
def test_mount_refuses_clear_files(home: HomePaths) -> None:
    volume.create(home, SECRET)
    (home.storage_dir / "leftover").write_bytes(b"clear")
    with pytest.raises(VolumeError, match="holds files in clear"):
        volume.mount(home, SECRET)
    assert not volume.status(home).mounted
