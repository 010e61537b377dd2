"""Envelope format: round trips, tamper cases, streaming with bounded memory."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest

from archive.vault import (
    KdfParams,
    Keyring,
    TamperError,
    decrypt_bytes,
    decrypt_file,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    read_header,
    rewrap,
)
from archive.vault.envelope import HEADER_LEN, MAGIC, TAG_LEN, encrypted_size
from archive.vault.errors import KeyringError

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)
UUID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
SHIFT = 16  # 64 KiB chunks keep multi-chunk tests small


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    return Keyring.create(tmp_path / "keys" / "keyring.json", "correct horse battery", kdf=FAST)


SIZES = [0, 1, 15, 16, 17, 65535, 65536, 65537, 3 * 65536, 3 * 65536 - 1, 200_000]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_bytes_stream_and_file(ring: Keyring, tmp_path: Path, size: int) -> None:
    plain = os.urandom(size)
    blob = encrypt_bytes(ring, UUID, 1, plain, chunk_shift=SHIFT)
    assert len(blob) == encrypted_size(size, SHIFT)
    assert decrypt_bytes(ring, UUID, 1, blob) == plain
    out = io.BytesIO()
    assert encrypt_stream(ring, UUID, 1, io.BytesIO(plain), out, chunk_shift=SHIFT) == size
    back = io.BytesIO()
    assert decrypt_stream(ring, UUID, 1, io.BytesIO(out.getvalue()), back) == size
    assert back.getvalue() == plain
    path = tmp_path / "f"
    path.write_bytes(out.getvalue())
    assert decrypt_file(ring, UUID, 1, path) == plain


def test_default_chunking_multi_megabyte(ring: Keyring) -> None:
    plain = os.urandom((1 << 20) * 2 + 5)
    blob = encrypt_bytes(ring, UUID, 2, plain)
    assert read_header(blob).chunk_size == 1 << 20
    assert decrypt_bytes(ring, UUID, 2, blob) == plain


def test_no_plaintext_and_fresh_keys(ring: Keyring) -> None:
    plain = b"DICM" + b"PATIENT^NAME" * 100
    a = encrypt_bytes(ring, UUID, 1, plain)
    b = encrypt_bytes(ring, UUID, 1, plain)
    assert a.startswith(MAGIC) and a != b
    assert b"PATIENT" not in a and b"DICM" not in a
    ha, hb = read_header(a), read_header(b)
    assert ha.key_id == hb.key_id == ring.primary_kek_id
    assert ha.salt != hb.salt and ha.wrapped_key != hb.wrapped_key


def _flip(blob: bytes, index: int) -> bytes:
    data = bytearray(blob)
    data[index] ^= 0x01
    return bytes(data)


@pytest.fixture
def multi(ring: Keyring) -> bytes:
    return encrypt_bytes(ring, UUID, 1, os.urandom(3 * 65536 + 100), chunk_shift=SHIFT)


@pytest.mark.parametrize("index", range(HEADER_LEN))
def test_bit_flip_anywhere_in_header_is_tamper(ring: Keyring, multi: bytes, index: int) -> None:
    with pytest.raises(TamperError) as info:
        decrypt_bytes(ring, UUID, 1, _flip(multi, index))
    assert UUID in str(info.value) and "was not decrypted" in str(info.value)


@pytest.mark.parametrize("where", ["first", "middle", "last_tag", "last_byte"])
def test_bit_flip_in_body_or_tag_is_tamper(ring: Keyring, multi: bytes, where: str) -> None:
    index = {
        "first": HEADER_LEN,
        "middle": HEADER_LEN + 65536 + TAG_LEN + 1000,
        "last_tag": len(multi) - 8,
        "last_byte": len(multi) - 1,
    }[where]
    bad = _flip(multi, index)
    with pytest.raises(TamperError):
        decrypt_bytes(ring, UUID, 1, bad)
    with pytest.raises(TamperError):
        decrypt_stream(ring, UUID, 1, io.BytesIO(bad), io.BytesIO())


def test_swapped_header_is_tamper(ring: Keyring) -> None:
    a = encrypt_bytes(ring, UUID, 1, b"a" * 5000)
    b = encrypt_bytes(ring, UUID, 1, b"b" * 5000)
    with pytest.raises(TamperError, match="chunk 0"):
        decrypt_bytes(ring, UUID, 1, a[:HEADER_LEN] + b[HEADER_LEN:])


@pytest.mark.parametrize(
    "cut", ["to_header", "inside_tag", "chunk_boundary", "one_byte", "whole_last_chunk"]
)
def test_truncation_is_tamper(ring: Keyring, multi: bytes, cut: str) -> None:
    full = 65536 + TAG_LEN
    end = {
        "to_header": HEADER_LEN,
        "inside_tag": HEADER_LEN + full + 5,
        "chunk_boundary": HEADER_LEN + 2 * full,
        "one_byte": len(multi) - 1,
        "whole_last_chunk": HEADER_LEN + 3 * full,
    }[cut]
    with pytest.raises(TamperError):
        decrypt_bytes(ring, UUID, 1, multi[:end])
    with pytest.raises(TamperError):
        decrypt_stream(ring, UUID, 1, io.BytesIO(multi[:end]), io.BytesIO())


def test_extension_and_reordering_are_tamper(ring: Keyring, multi: bytes) -> None:
    full = 65536 + TAG_LEN
    body = multi[HEADER_LEN:]
    swapped = multi[:HEADER_LEN] + body[full : 2 * full] + body[:full] + body[2 * full :]
    for bad in (multi + multi[-TAG_LEN - 10 :], swapped):
        with pytest.raises(TamperError):
            decrypt_bytes(ring, UUID, 1, bad)


def test_wrong_uuid_or_content_type_is_tamper(ring: Keyring) -> None:
    blob = encrypt_bytes(ring, UUID, 1, b"x" * 100)
    with pytest.raises(TamperError, match="wrong uuid/content type"):
        decrypt_bytes(ring, UUID.replace("0a", "0b", 1), 1, blob)
    with pytest.raises(TamperError):
        decrypt_bytes(ring, UUID, 2, blob)


def test_not_an_encrypted_file(ring: Keyring) -> None:
    for junk in (b"", b"DICM" * 100, MAGIC):
        with pytest.raises(TamperError, match="not an archive-encrypted file"):
            decrypt_bytes(ring, UUID, 1, junk)


def test_foreign_keyring_is_tamper(ring: Keyring, tmp_path: Path) -> None:
    other = Keyring.create(tmp_path / "other" / "keyring.json", "another passphrase", kdf=FAST)
    blob = encrypt_bytes(other, UUID, 1, b"secret")
    with pytest.raises(TamperError, match="never held"):
        decrypt_bytes(ring, UUID, 1, blob)


def test_rewrap_changes_header_only(ring: Keyring, tmp_path: Path) -> None:
    plain = os.urandom(150_000)
    path = tmp_path / "file"
    path.write_bytes(encrypt_bytes(ring, UUID, 1, plain, chunk_shift=SHIFT))
    before = path.read_bytes()
    old = ring.primary_kek_id
    assert rewrap(ring, path) is False  # already current
    new = ring.rotate()
    assert rewrap(ring, path) is True
    after = path.read_bytes()
    assert after[HEADER_LEN:] == before[HEADER_LEN:]
    assert read_header(after).key_id == new and read_header(before).key_id == old
    assert not list(tmp_path.glob(".*.rewrap"))
    ring.retire(old)
    assert decrypt_file(ring, UUID, 1, path) == plain
    with pytest.raises(KeyringError, match="retired"):
        decrypt_bytes(ring, UUID, 1, before)


class _Generated(io.RawIOBase):
    """A readable stream of `total` pseudo-random bytes, produced on demand."""

    def __init__(self, total: int):
        self.left = total
        self.block = os.urandom(1 << 16)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        n = min(len(buf), self.left, len(self.block))
        buf[:n] = self.block[:n]
        self.left -= n
        return n


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.count = 0
        self.collected = bytearray()
        self.keep = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.count += len(data)
        if self.keep:
            self.collected += data
        return len(data)


def test_streaming_has_bounded_memory(ring: Keyring, tmp_path: Path) -> None:
    total = 160 << 20
    path = tmp_path / "big.enc"
    tracemalloc.start()
    try:
        with open(path, "wb") as dst:
            assert encrypt_stream(ring, UUID, 1, _Generated(total), dst) == total
        sink = _Sink()
        with open(path, "rb") as src:
            assert decrypt_stream(ring, UUID, 1, src, sink) == total
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.count == total
    assert path.stat().st_size == encrypted_size(total)
    assert peak < 8 << 20, f"peak {peak} bytes for a {total}-byte stream"
