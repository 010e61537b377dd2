"""Encrypted attachments in the archive database ([storage] kind = "postgresql",
archive/vault/FORMAT.md section 6): the same envelope as a file, committed before a
write returns, tampering caught, rotation rewraps rows, and archive.toml's [storage]."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select, update

from archive.config import parse_config
from archive.errors import ConfigError
from archive.paths import HomePaths
from archive.vault import (
    EncryptedStore,
    KdfParams,
    Keyring,
    TamperError,
    key_usage,
    rotate_and_rewrap,
)
from archive.vault.dbstore import DbEncryptedStore, storage_for
from archive.vault.envelope import HEADER_LEN, decrypt_bytes
from archive.vault.tables import vault_blob

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)


def _uuid(i: int) -> str:
    return f"{i:08x}-aaaa-bbbb-cccc-{i:012x}"


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    return Keyring.create(tmp_path / "keys" / "keyring.json", "pass phrase x", kdf=FAST)


@pytest.fixture
def opener(pg, tmp_path: Path):
    return lambda: pg.connect(tmp_path / "archive.db")


@pytest.fixture
def store(opener, ring) -> DbEncryptedStore:
    store = DbEncryptedStore(opener, ring)
    yield store
    store.close()


def _envelope(opener, uuid: str, ct: int) -> bytes:
    conn = opener()
    try:
        row = conn.execute(
            select(vault_blob.c.envelope).where(
                vault_blob.c.uuid == uuid, vault_blob.c.content_type == ct
            )
        ).fetchone()
        return bytes(row[0])
    finally:
        conn.close()


def test_roundtrip_committed_and_the_same_envelope(store, opener, ring):
    data = bytes(range(256)) * 5000
    store.write(_uuid(1), 1, data)
    # committed: another connection (another node) reads it at once
    other = DbEncryptedStore(opener, ring)
    assert other.read(_uuid(1), 1) == data
    blob = _envelope(opener, _uuid(1), 1)
    assert data[:64] not in blob  # ciphertext only
    assert decrypt_bytes(ring, _uuid(1), 1, blob) == data  # the file format, unchanged
    store.write(_uuid(1), 1, b"replaced")
    assert other.read(_uuid(1), 1) == b"replaced"
    assert store.write_stream(_uuid(2), 3, io.BytesIO(b"x" * 70000)) == 70000
    out = io.BytesIO()
    other.read_stream(_uuid(2), 3, out)
    assert out.getvalue() == b"x" * 70000
    assert [(u, c) for u, c, _ in store.entries()] == [(_uuid(1), 1), (_uuid(2), 3)]
    assert store.exists(_uuid(2), 3) and not store.exists(_uuid(2), 1)
    store.remove(_uuid(2), 3)
    assert not other.exists(_uuid(2), 3)
    with pytest.raises(FileNotFoundError):
        other.read(_uuid(2), 3)
    other.close()


def test_tampered_or_swapped_rows_fail_authentication(store, opener):
    store.write(_uuid(1), 1, b"first attachment")
    store.write(_uuid(2), 1, b"second attachment")
    blob = bytearray(_envelope(opener, _uuid(1), 1))
    blob[HEADER_LEN + 3] ^= 1
    conn = opener()
    conn.execute(
        update(vault_blob).where(vault_blob.c.uuid == _uuid(1)).values(envelope=bytes(blob))
    )
    conn.execute(
        update(vault_blob)
        .where(vault_blob.c.uuid == _uuid(2))
        .values(envelope=_envelope(opener, _uuid(1), 1))
    )  # row 2 now holds row 1's envelope: bound to another uuid
    conn.close()
    for i in (1, 2):
        with pytest.raises(TamperError):
            store.read(_uuid(i), 1)


def test_rotation_rewraps_rows_and_retires_the_old_key(store, ring, tmp_path):
    old = ring.primary_kek_id
    for i in range(3):
        store.write(_uuid(i), 1, f"attachment {i}".encode())
    files = EncryptedStore(tmp_path / "quarantine", ring)
    files.write(_uuid(9), 1, b"quarantined")
    report = rotate_and_rewrap(ring, [store, files])
    assert report.files == 4 and report.rewrapped == 4 and report.retired == [old]
    assert key_usage([store, files]) == {ring.primary_kek_id: 4}
    assert [store.read(_uuid(i), 1) for i in range(3)] == [
        b"attachment 0",
        b"attachment 1",
        b"attachment 2",
    ]


def test_storage_section_of_archive_toml(tmp_path):
    home = HomePaths(tmp_path)
    assert parse_config({}, home).storage.kind == "home"
    config = parse_config({"storage": {"kind": "path", "path": str(tmp_path / "shared")}}, home)
    assert isinstance(storage_for(config, None), EncryptedStore)
    with pytest.raises(ConfigError, match="absolute"):
        parse_config({"storage": {"kind": "path"}}, home)
    with pytest.raises(ConfigError, match='database\\] kind = "postgresql"'):
        parse_config({"storage": {"kind": "postgresql"}}, home)
    with pytest.raises(ConfigError, match="one of"):
        parse_config({"storage": {"kind": "s3"}}, home)
