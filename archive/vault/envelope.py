"""Envelope encryption of one file (FORMAT.md sections 2 and 3).

Each file gets a fresh data key, wrapped by the keyring's primary KEK; the body is
AES-256-GCM in chunks so memory stays bounded and files of any size work. The chunk
AAD binds the attachment's uuid and content type, so a swapped or renamed file fails.
Hot paths use `encrypt_into`/`decrypt_into` on memoryviews to avoid copies: the target
is decryption well above 1 GB/s.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from archive.vault._buffers import fill_bytes
from archive.vault.errors import KeyringError, TamperError
from archive.vault.fsutil import fsync_dir

MAGIC = b"\x89TAV\r\n\x1a\n"
VERSION = 1
HEADER_LEN = 116
TAG_LEN = 16
KEY_ID_LEN = 16
DEFAULT_CHUNK_SHIFT = 20
MIN_CHUNK_SHIFT = 16
MAX_CHUNK_SHIFT = 24
JOURNAL_MAGIC = b"TAVJ"
JOURNAL_SUFFIX = ".rewrap"

_WRAP_LABEL = b"ta-vault/v1 wrap"
_CHUNK_LABEL = b"ta-vault/v1 chunk"
_PAYLOAD_INFO = b"ta-vault/v1 payload"
_HEADER = struct.Struct(">8sBBBB16s16s12s12s48s")
assert _HEADER.size == HEADER_LEN
_INDEX = struct.Struct(">QB")


class KeySource(Protocol):
    """What envelope needs from a keyring (Keyring satisfies it)."""

    @property
    def primary_kek_id(self) -> str: ...

    def kek(self, key_id: str) -> bytes: ...

    def knows(self, key_id: str) -> bool: ...


@dataclass(frozen=True)
class Header:
    """The fixed 116-byte header of an encrypted file."""

    version: int
    flags: int
    chunk_shift: int
    key_id: str
    salt: bytes
    file_nonce: bytes
    wrap_nonce: bytes
    wrapped_key: bytes

    @property
    def chunk_size(self) -> int:
        return 1 << self.chunk_shift

    def to_bytes(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            self.version,
            self.flags,
            self.chunk_shift,
            0,
            self.key_id.encode("ascii"),
            self.salt,
            self.file_nonce,
            self.wrap_nonce,
            self.wrapped_key,
        )

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, uuid: str = "", content_type: int = -1
    ) -> Header:
        """Parse and check the structure; raise TamperError on anything unexpected."""
        if len(data) < HEADER_LEN:
            raise _tamper(uuid, content_type, "not an archive-encrypted file (too short)")
        magic, version, flags, shift, reserved, key_id, salt, fnonce, wnonce, wrapped = (
            _HEADER.unpack(bytes(data[:HEADER_LEN]))
        )
        if magic != MAGIC:
            raise _tamper(uuid, content_type, "not an archive-encrypted file (bad magic)")
        if (
            version != VERSION
            or flags
            or reserved
            or not (MIN_CHUNK_SHIFT <= shift <= MAX_CHUNK_SHIFT)
        ):
            raise _tamper(
                uuid,
                content_type,
                f"unsupported or altered header (version {version}, flags {flags}, "
                f"chunk shift {shift}); this build reads version {VERSION}",
            )
        try:
            kid = key_id.decode("ascii")
        except UnicodeDecodeError:
            raise _tamper(uuid, content_type, "altered header (key id is not ASCII)") from None
        return cls(version, flags, shift, kid, salt, fnonce, wnonce, wrapped)

    def body_aad_prefix(self, uuid: str, content_type: int) -> bytes:
        uid = _uuid_bytes(uuid)
        return b"".join(
            (
                _CHUNK_LABEL,
                bytes((self.version, self.flags, self.chunk_shift)),
                self.salt,
                self.file_nonce,
                struct.pack(">H", len(uid)),
                uid,
                struct.pack(">I", _content_type(content_type)),
            )
        )


def _tamper(uuid: str, content_type: int, reason: str) -> TamperError:
    who = f"attachment {uuid} (content type {content_type})" if uuid else "encrypted file"
    return TamperError(
        f"Integrity check failed for {who}: {reason}. The stored file was altered, "
        f"truncated, swapped with another or read under the wrong identity; it was not "
        f"decrypted. Restore it from a backup and investigate.",
        uuid=uuid,
        content_type=content_type,
        reason=reason,
    )


def _uuid_bytes(uuid: str) -> bytes:
    try:
        data = uuid.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise ValueError("attachment uuid must be an ASCII string") from None
    if not 0 < len(data) <= 255:
        raise ValueError("attachment uuid must have 1 to 255 characters")
    return data


def _content_type(content_type: int) -> int:
    if not isinstance(content_type, int) or not 0 <= content_type < 2**32:
        raise ValueError("content type must be an integer from 0 to 2**32-1")
    return content_type


def _wrap_aad(key_id: str, salt: bytes) -> bytes:
    return _WRAP_LABEL + key_id.encode("ascii") + salt


def _payload_aead(data_key: bytes, salt: bytes) -> AESGCM:
    key = HKDF(algorithm=SHA256(), length=32, salt=salt, info=_PAYLOAD_INFO).derive(data_key)
    return AESGCM(key)


def _nonce(file_nonce_int: int, index: int) -> bytes:
    return (file_nonce_int ^ index).to_bytes(12, "big")


def _unwrap(keyring: KeySource, header: Header, uuid: str, content_type: int) -> bytes:
    if not keyring.knows(header.key_id):
        raise _tamper(
            uuid,
            content_type,
            f"the header names key {header.key_id!r}, which this keyring never held (the "
            f"file was altered or belongs to another archive)",
        )
    kek = keyring.kek(header.key_id)  # KeyringError if retired
    try:
        return AESGCM(kek).decrypt(
            header.wrap_nonce, header.wrapped_key, _wrap_aad(header.key_id, header.salt)
        )
    except InvalidTag:
        raise _tamper(uuid, content_type, "the wrapped data key does not authenticate") from None


def _wrap(keyring: KeySource, data_key: bytes, salt: bytes) -> tuple[str, bytes, bytes]:
    key_id = keyring.primary_kek_id
    if len(key_id) != KEY_ID_LEN:
        raise KeyringError(f"Key id {key_id!r} does not have {KEY_ID_LEN} characters.")
    wrap_nonce = os.urandom(12)
    wrapped = AESGCM(keyring.kek(key_id)).encrypt(wrap_nonce, data_key, _wrap_aad(key_id, salt))
    return key_id, wrap_nonce, wrapped


def _new_file(keyring: KeySource, chunk_shift: int) -> tuple[Header, AESGCM]:
    if not MIN_CHUNK_SHIFT <= chunk_shift <= MAX_CHUNK_SHIFT:
        raise ValueError(f"chunk_shift must be {MIN_CHUNK_SHIFT}..{MAX_CHUNK_SHIFT}")
    data_key = os.urandom(32)
    salt = os.urandom(16)
    key_id, wrap_nonce, wrapped = _wrap(keyring, data_key, salt)
    header = Header(VERSION, 0, chunk_shift, key_id, salt, os.urandom(12), wrap_nonce, wrapped)
    return header, _payload_aead(data_key, salt)


def _chunk_count(plain_len: int, chunk_size: int) -> int:
    return max(1, -(-plain_len // chunk_size))


def encrypted_size(plain_len: int, chunk_shift: int = DEFAULT_CHUNK_SHIFT) -> int:
    return HEADER_LEN + plain_len + TAG_LEN * _chunk_count(plain_len, 1 << chunk_shift)


def encrypt_bytes(
    keyring: KeySource,
    uuid: str,
    content_type: int,
    plaintext: bytes | bytearray | memoryview,
    *,
    chunk_shift: int = DEFAULT_CHUNK_SHIFT,
) -> bytes:
    """Encrypt a whole attachment held in memory."""
    header, aead = _new_file(keyring, chunk_shift)
    prefix = header.body_aad_prefix(uuid, content_type)
    src = memoryview(plaintext).cast("B")
    size = len(src)
    cs = header.chunk_size
    count = _chunk_count(size, cs)
    fn = int.from_bytes(header.file_nonce, "big")
    if count == 1:
        return header.to_bytes() + aead.encrypt(_nonce(fn, 0), src, prefix + _INDEX.pack(0, 1))

    def fill(view: memoryview) -> None:
        view[:HEADER_LEN] = header.to_bytes()
        pos = HEADER_LEN
        for i in range(count):
            chunk = src[i * cs : (i + 1) * cs]
            end = pos + len(chunk) + TAG_LEN
            aead.encrypt_into(
                _nonce(fn, i), chunk, prefix + _INDEX.pack(i, i == count - 1), view[pos:end]
            )
            pos = end

    return fill_bytes(HEADER_LEN + size + TAG_LEN * count, fill)


@dataclass(frozen=True)
class _Plan:
    """How a body of known length splits into chunks."""

    count: int
    plain_len: int


def _plan(header: Header, body_len: int, uuid: str, content_type: int) -> _Plan:
    full = header.chunk_size + TAG_LEN
    count, rest = divmod(body_len, full)
    if rest:
        if rest < TAG_LEN:
            raise _tamper(uuid, content_type, "the body is truncated inside a chunk tag")
        count += 1
    if count == 0:
        raise _tamper(uuid, content_type, "the body is missing (truncated)")
    return _Plan(count, body_len - TAG_LEN * count)


def _chunk_failed(uuid: str, content_type: int, index: int) -> TamperError:
    return _tamper(
        uuid,
        content_type,
        f"chunk {index} does not authenticate (altered, truncated, swapped, or read under "
        f"the wrong uuid/content type)",
    )


def decrypt_bytes(
    keyring: KeySource, uuid: str, content_type: int, blob: bytes | bytearray | memoryview
) -> bytes:
    """Decrypt a whole attachment; TamperError unless every byte authenticates."""
    view = memoryview(blob).cast("B")
    header = Header.parse(view, uuid, content_type)
    aead = _payload_aead(_unwrap(keyring, header, uuid, content_type), header.salt)
    prefix = header.body_aad_prefix(uuid, content_type)
    body = view[HEADER_LEN:]
    plan = _plan(header, len(body), uuid, content_type)
    fn = int.from_bytes(header.file_nonce, "big")
    full, step = header.chunk_size + TAG_LEN, header.chunk_size
    if plan.count == 1:
        try:
            return aead.decrypt(_nonce(fn, 0), body, prefix + _INDEX.pack(0, 1))
        except InvalidTag:
            raise _chunk_failed(uuid, content_type, 0) from None

    def fill(out: memoryview) -> None:
        for i in range(plan.count):
            chunk = body[i * full : (i + 1) * full]
            try:
                aead.decrypt_into(
                    _nonce(fn, i),
                    chunk,
                    prefix + _INDEX.pack(i, i == plan.count - 1),
                    out[i * step : i * step + len(chunk) - TAG_LEN],
                )
            except InvalidTag:
                raise _chunk_failed(uuid, content_type, i) from None

    return fill_bytes(plan.plain_len, fill)


def decrypt_file(keyring: KeySource, uuid: str, content_type: int, path: Path) -> bytes:
    """Decrypt a file from disk into one new bytes object.

    Reads chunk by chunk into a small reused buffer and decrypts straight into the
    result, so the only large allocation is the plaintext itself (as for a plain read).
    """
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(HEADER_LEN)
        header = Header.parse(head, uuid, content_type)
        aead = _payload_aead(_unwrap(keyring, header, uuid, content_type), header.salt)
        prefix = header.body_aad_prefix(uuid, content_type)
        plan = _plan(header, size - HEADER_LEN, uuid, content_type)
        fn = int.from_bytes(header.file_nonce, "big")
        full, step = header.chunk_size + TAG_LEN, header.chunk_size
        buf = memoryview(bytearray(min(full, size - HEADER_LEN)))

        def fill(out: memoryview) -> None:
            for i in range(plan.count):
                want = min(full, size - HEADER_LEN - i * full)
                if _read_full(fh, buf[:want]) != want:
                    raise _tamper(uuid, content_type, "the file shrank while being read")
                try:
                    aead.decrypt_into(
                        _nonce(fn, i),
                        buf[:want],
                        prefix + _INDEX.pack(i, i == plan.count - 1),
                        out[i * step : i * step + want - TAG_LEN],
                    )
                except InvalidTag:
                    raise _chunk_failed(uuid, content_type, i) from None

        return fill_bytes(plan.plain_len, fill)


def _read_full(src: BinaryIO, buf: memoryview) -> int:
    """Fill `buf` unless EOF comes first; works with readinto() or read() streams."""
    total = 0
    readinto = getattr(src, "readinto", None)
    while total < len(buf):
        if readinto is not None:
            got = readinto(buf[total:])
            if not got:
                break
            total += got
        else:
            data = src.read(len(buf) - total)
            if not data:
                break
            buf[total : total + len(data)] = data
            total += len(data)
    return total


def encrypt_stream(
    keyring: KeySource,
    uuid: str,
    content_type: int,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    chunk_shift: int = DEFAULT_CHUNK_SHIFT,
) -> int:
    """Encrypt `src` to `dst` with memory bounded by ~3 chunks; returns plaintext bytes."""
    header, aead = _new_file(keyring, chunk_shift)
    prefix = header.body_aad_prefix(uuid, content_type)
    fn = int.from_bytes(header.file_nonce, "big")
    cs = header.chunk_size
    cur, nxt = memoryview(bytearray(cs)), memoryview(bytearray(cs))
    out = memoryview(bytearray(cs + TAG_LEN))
    dst.write(header.to_bytes())
    n = _read_full(src, cur)
    total, index = 0, 0
    while True:
        if n < cs:
            m, last = 0, True
        else:
            m = _read_full(src, nxt)
            last = m == 0
        aead.encrypt_into(
            _nonce(fn, index), cur[:n], prefix + _INDEX.pack(index, last), out[: n + TAG_LEN]
        )
        dst.write(out[: n + TAG_LEN])
        total += n
        if last:
            return total
        cur, nxt, n = nxt, cur, m
        index += 1


def decrypt_stream(
    keyring: KeySource, uuid: str, content_type: int, src: BinaryIO, dst: BinaryIO
) -> int:
    """Decrypt `src` to `dst` chunk by chunk; returns plaintext bytes.

    Each chunk is written only after it authenticated; on TamperError the caller must
    discard what was written so far (EncryptedStore does)."""
    head = memoryview(bytearray(HEADER_LEN))
    if _read_full(src, head) < HEADER_LEN:
        raise _tamper(uuid, content_type, "not an archive-encrypted file (too short)")
    header = Header.parse(head, uuid, content_type)
    aead = _payload_aead(_unwrap(keyring, header, uuid, content_type), header.salt)
    prefix = header.body_aad_prefix(uuid, content_type)
    fn = int.from_bytes(header.file_nonce, "big")
    full = header.chunk_size + TAG_LEN
    cur, nxt = memoryview(bytearray(full)), memoryview(bytearray(full))
    out = memoryview(bytearray(header.chunk_size))
    n = _read_full(src, cur)
    total, index = 0, 0
    while True:
        if n < full:
            m, last = 0, True
        else:
            m = _read_full(src, nxt)
            last = m == 0
        if n < TAG_LEN:
            raise _tamper(uuid, content_type, f"the body is truncated at chunk {index}")
        try:
            aead.decrypt_into(
                _nonce(fn, index), cur[:n], prefix + _INDEX.pack(index, last), out[: n - TAG_LEN]
            )
        except InvalidTag:
            raise _chunk_failed(uuid, content_type, index) from None
        dst.write(out[: n - TAG_LEN])
        total += n - TAG_LEN
        if last:
            return total
        cur, nxt, n = nxt, cur, m
        index += 1


def read_header(blob_or_file: bytes | bytearray | memoryview | Path | str | BinaryIO) -> Header:
    """The header of an encrypted blob, file path or open binary file (nothing decrypted)."""
    if isinstance(blob_or_file, bytes | bytearray | memoryview):
        return Header.parse(memoryview(blob_or_file)[:HEADER_LEN])
    if isinstance(blob_or_file, str | Path):
        with open(blob_or_file, "rb") as fh:
            return Header.parse(fh.read(HEADER_LEN))
    return Header.parse(blob_or_file.read(HEADER_LEN))


def journal_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{JOURNAL_SUFFIX}")


def rewrap(keyring: KeySource, path: Path) -> bool:
    """Re-wrap a file's data key under the primary KEK, rewriting only its header.

    Crash-safe through a journal (FORMAT.md section 3). Returns False when the file was
    already under the primary KEK."""
    path = Path(path)
    with open(path, "r+b") as fh:
        old_bytes = fh.read(HEADER_LEN)
        old = Header.parse(old_bytes, path.name)
        if old.key_id == keyring.primary_kek_id:
            return False
        data_key = _unwrap(keyring, old, path.name, -1)
        key_id, wrap_nonce, wrapped = _wrap(keyring, data_key, old.salt)
        new_bytes = replace(
            old, key_id=key_id, wrap_nonce=wrap_nonce, wrapped_key=wrapped
        ).to_bytes()
        journal = journal_path(path)
        fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, JOURNAL_MAGIC + bytes((VERSION,)) + old_bytes + new_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        os.pwrite(fh.fileno(), new_bytes, 0)
        os.fsync(fh.fileno())
    journal.unlink()
    fsync_dir(path.parent)
    return True


def recover_journal(journal: Path) -> str:
    """Roll a rewrap journal forward. Returns 'applied', 'done', or 'left' (not ours)."""
    data = journal.read_bytes()
    target = journal.with_name(journal.name[1 : -len(JOURNAL_SUFFIX)])
    if (
        len(data) != 5 + 2 * HEADER_LEN
        or not data.startswith(JOURNAL_MAGIC)
        or data[4] != VERSION
        or not target.is_file()
    ):
        if not target.exists() and len(data) == 5 + 2 * HEADER_LEN:
            journal.unlink()  # the file was removed since; nothing to roll forward
            return "done"
        return "left"
    old, new = data[5 : 5 + HEADER_LEN], data[5 + HEADER_LEN :]
    with open(target, "r+b") as fh:
        current = fh.read(HEADER_LEN)
        if current == new:
            state = "done"
        elif len(current) == HEADER_LEN and all(
            c in (a, b) for c, a, b in zip(current, old, new, strict=True)
        ):
            os.pwrite(fh.fileno(), new, 0)
            os.fsync(fh.fileno())
            state = "applied"
        else:
            return "left"
    journal.unlink()
    fsync_dir(journal.parent)
    return state
