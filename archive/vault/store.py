"""An encrypted storage area laid out like Orthanc's: ROOT/ab/cd/<uuid>.<content type>.

Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the
directory), so a crash leaves either the old state or the new, plus at worst a hidden
temporary file that `cleanup_partials` removes. A shard directory created by a write is
itself made durable (fsync of its parent) before the write returns, so the new file's
path survives a power cut, not only its directory entry. Every file is
envelope-encrypted with the attachment's uuid and content type bound into it.

`write(..., durable=False)` skips every fsync for data the caller can rebuild (the
storage area's "DICOM until pixel data" attachment, see plugins/storage.py): still
atomic against a process crash (the page cache survives a kill -9), but an OS crash or
power cut within the kernel's writeback window (~30 s) may lose it or leave it empty.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from archive.vault.envelope import (
    JOURNAL_SUFFIX,
    KeySource,
    decrypt_file,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    recover_journal,
)
from archive.vault.fsutil import TMP_SUFFIX, atomic_write, ensure_private_dir, fsync_dir, tmp_name

_UUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{3,127}$")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]{3,127})\.(\d{1,10})$")


@dataclass
class CleanupReport:
    removed_partials: list[Path] = field(default_factory=list)
    journals_applied: list[Path] = field(default_factory=list)
    journals_left: list[Path] = field(default_factory=list)


def _check_uuid(uuid: str) -> str:
    if not isinstance(uuid, str) or not _UUID.match(uuid):
        raise ValueError("attachment uuid must be 4-128 letters, digits or dashes")
    return uuid


def _check_ct(content_type: int) -> int:
    if (
        not isinstance(content_type, int)
        or isinstance(content_type, bool)
        or not (0 <= content_type < 2**32)
    ):
        raise ValueError("content type must be a non-negative integer")
    return content_type


class EncryptedStore:
    """Encrypted files under `root`, sharded by the first four characters of the uuid."""

    def __init__(self, root: Path, keyring: KeySource, *, fsync: bool = True):
        self.root = Path(root)
        self.keyring = keyring
        self.fsync = fsync
        ensure_private_dir(self.root)

    def path_for(self, uuid: str, content_type: int) -> Path:
        uuid, content_type = _check_uuid(uuid), _check_ct(content_type)
        return self.root / uuid[0:2] / uuid[2:4] / f"{uuid}.{content_type}"

    def write(
        self,
        uuid: str,
        content_type: int,
        data: bytes | bytearray | memoryview,
        *,
        durable: bool = True,
    ) -> None:
        """Encrypt and store atomically; replaces an existing file of the same identity.

        `durable=False`: no fsync at all (derived data only; see the module doc)."""
        path = self.path_for(uuid, content_type)
        sync = self.fsync and durable
        created = self._make_parents(path)
        atomic_write(path, encrypt_bytes(self.keyring, uuid, content_type, data), sync=sync)
        if sync:
            self._sync_created(created)

    def write_stream(self, uuid: str, content_type: int, src: BinaryIO) -> int:
        """Encrypt a stream of any size into the store with bounded memory."""
        path = self.path_for(uuid, content_type)
        created = self._make_parents(path)
        tmp = tmp_name(path)
        try:
            with open(tmp, "xb") as dst:
                os.chmod(tmp, 0o600)
                size = encrypt_stream(self.keyring, uuid, content_type, src, dst)
                dst.flush()
                if self.fsync:
                    os.fsync(dst.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync:
            fsync_dir(path.parent)
            self._sync_created(created)
        return size

    def read(self, uuid: str, content_type: int) -> bytes:
        """Decrypt and return the file; TamperError if it fails authentication."""
        path = self.path_for(uuid, content_type)
        try:
            return decrypt_file(self.keyring, uuid, content_type, path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"attachment {uuid} (content type {content_type}) is not in the store"
            ) from None

    def read_stream(self, uuid: str, content_type: int, dst: BinaryIO) -> int:
        """Decrypt into `dst` chunk by chunk (bounded memory). On TamperError `dst` holds
        a verified prefix only; the caller must discard it."""
        with open(self.path_for(uuid, content_type), "rb") as src:
            return decrypt_stream(self.keyring, uuid, content_type, src, dst)

    def exists(self, uuid: str, content_type: int) -> bool:
        return self.path_for(uuid, content_type).is_file()

    def remove(self, uuid: str, content_type: int) -> None:
        """Delete the file (no error if absent) and prune empty shard directories."""
        path = self.path_for(uuid, content_type)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        if self.fsync:
            fsync_dir(path.parent)
        for directory in (path.parent, path.parent.parent):
            try:
                directory.rmdir()
            except OSError:
                break

    def paths(self) -> Iterator[Path]:
        """Every stored file (not temporary files or journals), in a stable order."""
        for first in sorted(self.root.iterdir()) if self.root.is_dir() else ():
            if not first.is_dir() or len(first.name) != 2:
                continue
            for second in sorted(first.iterdir()):
                if not second.is_dir():
                    continue
                for entry in sorted(second.iterdir()):
                    if _NAME.match(entry.name) and entry.is_file():
                        yield entry

    def entries(self) -> Iterator[tuple[str, int, Path]]:
        """(uuid, content type, path) of every stored file."""
        for path in self.paths():
            match = _NAME.match(path.name)
            assert match is not None
            yield match.group(1), int(match.group(2)), path

    def cleanup_partials(self, *, older_than: float = 0.0) -> CleanupReport:
        """Remove temporary files left by a crash and roll rewrap journals forward.

        Run at start-up, before Orthanc writes: a temporary file younger than
        `older_than` seconds is spared, in case a writer is still busy with it."""
        report = CleanupReport()
        now = time.time()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(dirpath) / name
                if name.startswith(".") and name.endswith(JOURNAL_SUFFIX):
                    state = recover_journal(path)
                    (report.journals_left if state == "left" else report.journals_applied).append(
                        path
                    )
                elif name.startswith(".") and name.endswith(TMP_SUFFIX):
                    try:
                        if now - path.stat().st_mtime >= older_than:
                            path.unlink()
                            report.removed_partials.append(path)
                    except FileNotFoundError:
                        pass
        return report

    def _make_parents(self, path: Path) -> list[Path]:
        """Create the shard directories of `path`; returns those created here."""
        if path.parent.is_dir():
            return []
        created: list[Path] = []
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for directory in (path.parent.parent, path.parent):
            try:
                directory.mkdir(mode=0o700)
                created.append(directory)
            except FileExistsError:
                pass
        return created

    @staticmethod
    def _sync_created(created: list[Path]) -> None:
        """Make the entries of newly created shard directories durable (fsync of each
        one's parent), innermost first. Done after the file's own fsyncs: on a journalling
        file system those already committed the mkdirs, so these cost a cache flush, not
        another journal commit."""
        for directory in reversed(created):
            fsync_dir(directory.parent)
