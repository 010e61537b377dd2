"""Crash-safe file writes: temporary file in the same directory, fsync, rename, fsync dir.

A rename within one directory is atomic on POSIX file systems, so readers see either
the old or the new file, never a half-written one; the directory fsync makes the
rename itself survive a power cut.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(path: Path) -> Path:
    """Hidden temporary sibling of `path`; `cleanup_partials` recognises the pattern."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}")


def atomic_write(
    path: Path, data: bytes | bytearray | memoryview, *, mode: int = 0o600, sync: bool = True
) -> None:
    """Replace `path` with `data` atomically; the file is created with `mode`."""
    tmp = tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def ensure_private_dir(directory: Path) -> None:
    """Create `directory` (and parents) and make it 0700."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
