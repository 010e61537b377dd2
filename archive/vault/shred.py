"""Destroying bytes: per-file crypto-shredding and overwrite-then-unlink.

Each encrypted attachment carries its own data key, wrapped in its 116-byte header
(archive/vault/FORMAT.md). Overwriting that header with random bytes destroys the file's
only copy of its data key: the body is then unreadable whatever copies of it survive on
an SSD or in a filesystem journal, provided the header itself was not copied elsewhere -
which is why closure also destroys the KEKs (the crypto-erase proper). Overwriting is
done anyway before unlinking secrets; on SSDs and copy-on-write filesystems it is a
best effort, never the guarantee.
"""

from __future__ import annotations

import os
from pathlib import Path

from archive.vault.envelope import HEADER_LEN, MAGIC


def shred_header(path: Path) -> bool:
    """Overwrite an encrypted file's header (its wrapped data key) with random bytes.

    Returns False when the file is absent or is not an archive-encrypted file (then it
    is left alone: overwriting something unknown could destroy the wrong thing)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        head = os.pread(fd, len(MAGIC), 0)
        if head != MAGIC:
            return False
        os.pwrite(fd, os.urandom(HEADER_LEN), 0)
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


def overwrite_and_unlink(path: Path, *, passes: int = 1) -> int:
    """Overwrite a file in place with random bytes (fsync'd), then unlink it.

    Returns the bytes overwritten (0 when absent). For small secrets (keyrings, backups,
    volume configuration), where the overwrite is cheap."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if path.is_symlink() or not path.is_file():
        path.unlink(missing_ok=True)
        return 0
    with open(path, "r+b", buffering=0) as handle:
        for _ in range(max(1, passes)):
            handle.seek(0)
            left = size
            while left > 0:
                n = min(left, 1 << 20)
                handle.write(os.urandom(n))
                left -= n
            os.fsync(handle.fileno())
    path.unlink()
    _fsync_dir(path.parent)
    return size


def delete_tree_files(root: Path) -> tuple[int, int]:
    """Unlink every file under `root` and remove the directories; (files, bytes).

    Ciphertext is deleted, not overwritten: its keys are already gone (crypto-erase),
    and an overwrite is no guarantee on SSDs; the benchmark measures both."""
    files = size = 0
    root = Path(root)
    if not root.exists():
        return 0, 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = Path(dirpath) / name
            try:
                size += p.lstat().st_size
                p.unlink()
                files += 1
            except FileNotFoundError:
                pass
        for name in dirnames:
            try:
                (Path(dirpath) / name).rmdir()
            except OSError:
                pass
    try:
        root.rmdir()
    except OSError:
        pass
    return files, size


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
