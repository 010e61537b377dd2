"""Encrypted store and rotation: layout, atomicity, crash leftovers, rewrap, retirement."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from archive.vault import (
    EncryptedStore,
    KdfParams,
    Keyring,
    KeyringError,
    TamperError,
    key_usage,
    read_header,
    rotate_and_rewrap,
)
from archive.vault.envelope import HEADER_LEN, journal_path

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)
PASS = "correct horse battery"


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    return Keyring.create(tmp_path / "keys" / "keyring.json", PASS, kdf=FAST)


@pytest.fixture
def store(ring: Keyring, tmp_path: Path) -> EncryptedStore:
    return EncryptedStore(tmp_path / "data" / "storage", ring)


def _uuid(i: int) -> str:
    return f"{i:08x}-aaaa-bbbb-cccc-{i:012x}"


def test_layout_roundtrip_remove(store: EncryptedStore) -> None:
    uuid = "abcdef01-2345-6789-abcd-ef0123456789"
    store.write(uuid, 1, b"DICM payload")
    path = store.root / "ab" / "cd" / f"{uuid}.1"
    assert path.is_file() and oct(path.stat().st_mode & 0o777) == "0o600"
    assert b"DICM" not in path.read_bytes()
    assert store.read(uuid, 1) == b"DICM payload"
    assert list(store.entries()) == [(uuid, 1, path)]
    store.write(uuid, 1, b"replaced")
    assert store.read(uuid, 1) == b"replaced"
    store.remove(uuid, 1)
    store.remove(uuid, 1)  # idempotent
    assert not (store.root / "ab").exists() and list(store.paths()) == []
    with pytest.raises(FileNotFoundError):
        store.read(uuid, 1)


def test_rejects_path_tricks(store: EncryptedStore) -> None:
    for bad in ("../../etc/passwd", "ab/cd", "", "a"):
        with pytest.raises(ValueError):
            store.write(bad, 1, b"x")
    with pytest.raises(ValueError):
        store.write(_uuid(1), -1, b"x")


def test_stream_write_and_read(store: EncryptedStore) -> None:
    data = os.urandom(3 * (1 << 20) + 7)
    assert store.write_stream(_uuid(2), 3, io.BytesIO(data)) == len(data)
    out = io.BytesIO()
    assert store.read_stream(_uuid(2), 3, out) == len(data)
    assert out.getvalue() == data == store.read(_uuid(2), 3)


def test_file_moved_to_another_identity_fails(store: EncryptedStore) -> None:
    store.write(_uuid(1), 1, b"one")
    store.write(_uuid(2), 1, b"two")
    a, b = store.path_for(_uuid(1), 1), store.path_for(_uuid(2), 1)
    os.replace(a, b)
    with pytest.raises(TamperError) as info:
        store.read(_uuid(2), 1)
    assert info.value.uuid == _uuid(2) and info.value.content_type == 1
    store.write(_uuid(3), 1, b"three")
    os.replace(store.path_for(_uuid(3), 1), store.path_for(_uuid(3), 2))
    with pytest.raises(TamperError):
        store.read(_uuid(3), 2)


def test_cleanup_partials(store: EncryptedStore) -> None:
    store.write(_uuid(1), 1, b"kept")
    shard = store.path_for(_uuid(1), 1).parent
    partial = shard / f".{_uuid(1)}.1.0123456789ab.tmp"
    partial.write_bytes(b"half written")
    young = shard / f".{_uuid(5)}.1.ba9876543210.tmp"
    young.write_bytes(b"in flight")
    old = 1_000_000
    os.utime(partial, (old, old))
    report = store.cleanup_partials(older_than=3600)
    assert report.removed_partials == [partial] and young.exists()
    assert store.cleanup_partials().removed_partials == [young]
    assert store.read(_uuid(1), 1) == b"kept" and list(store.paths()) == [
        store.path_for(_uuid(1), 1)
    ]


def _fill(store: EncryptedStore, n: int) -> dict[tuple[str, int], bytes]:
    written = {}
    for i in range(n):
        data = os.urandom(1000 + i * 5000)
        store.write(_uuid(i), i % 3, data)
        written[(_uuid(i), i % 3)] = data
    return written


def test_rotation_then_deleting_retired_key(
    ring: Keyring, store: EncryptedStore, tmp_path: Path
) -> None:
    quarantine = EncryptedStore(tmp_path / "data" / "quarantine", ring)
    written = _fill(store, 12)
    quarantine.write("q-0123456789ab", 1, b"held")
    bodies = {p: p.read_bytes()[HEADER_LEN:] for p in store.paths()}
    old = ring.primary_kek_id
    seen: list[int] = []
    report = rotate_and_rewrap(ring, [store, quarantine], progress=lambda d, t, p: seen.append(d))
    assert report.new_primary == ring.primary_kek_id != old
    assert report.rewrapped == 13 and report.files == 13 and seen == list(range(1, 14))
    assert report.retired == [old] and ring.rotation_pending is None
    assert {p: p.read_bytes()[HEADER_LEN:] for p in store.paths()} == bodies
    assert key_usage([store, quarantine]) == {ring.primary_kek_id: 13}

    # The retired key's material is gone from the saved keyring: prove nothing needs it.
    reopened = Keyring.open(ring.path, PASS)
    assert old not in reopened.kek_ids()
    with pytest.raises(KeyringError):
        reopened.kek(old)
    fresh = EncryptedStore(store.root, reopened)
    for (uuid, ct), data in written.items():
        assert fresh.read(uuid, ct) == data
    assert EncryptedStore(quarantine.root, reopened).read("q-0123456789ab", 1) == b"held"

    again = rotate_and_rewrap(reopened, fresh)  # a second rotation works the same way
    assert again.rewrapped == 12 and len(again.retired) == 1


def test_rotation_resumes_after_crash(ring: Keyring, store: EncryptedStore) -> None:
    written = _fill(store, 6)
    old = ring.primary_kek_id
    new = ring.rotate(pending=True)  # crash right after the key was made...
    paths = list(store.paths())
    from archive.vault.envelope import rewrap

    rewrap(ring, paths[0])  # ...and after one file
    # a crash in the middle of a header write: journal present, header torn
    target = paths[1]
    before = target.read_bytes()[:HEADER_LEN]
    rewrap(ring, target)
    after = target.read_bytes()[:HEADER_LEN]
    journal = journal_path(target)
    journal.write_bytes(b"TAVJ\x01" + before + after)
    torn = after[:60] + before[60:]
    with open(target, "r+b") as fh:
        fh.write(torn)

    reopened = Keyring.open(ring.path, PASS)
    assert reopened.rotation_pending == new
    report = rotate_and_rewrap(reopened, EncryptedStore(store.root, reopened))
    assert report.resumed and report.new_primary == new
    assert report.retired == [old] and not journal.exists()
    assert reopened.rotation_pending is None
    for (uuid, ct), data in written.items():
        assert EncryptedStore(store.root, reopened).read(uuid, ct) == data


def test_rotation_keeps_keys_when_a_file_cannot_be_rewrapped(
    ring: Keyring, store: EncryptedStore
) -> None:
    _fill(store, 3)
    old = ring.primary_kek_id
    bad = next(iter(store.paths()))
    data = bytearray(bad.read_bytes())
    data[80] ^= 1  # inside the wrapped key
    bad.write_bytes(bytes(data))
    report = rotate_and_rewrap(ring, store)
    assert str(bad) in report.failures and report.retired == []
    assert old in ring.kek_ids() and ring.rotation_pending == report.new_primary
    assert read_header(bad).key_id == old
