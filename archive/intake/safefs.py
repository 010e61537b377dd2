"""File access that stays inside the drop folder.

The watcher reads, overwrites and deletes files that other people put in a folder. A
symbolic link (or a folder swapped for one while we walk) must never make it read,
zero-fill or delete a file elsewhere, and a FIFO or device must never block or feed it.
So every access starts from a descriptor of the drop folder opened once at start and
walks down one component at a time with O_NOFOLLOW (openat-style, `dir_fd=`): a
component that is a link fails with ELOOP/ENOTDIR instead of being followed. The final
file is lstat'ed, must be a regular file, is opened with O_NOFOLLOW | O_NONBLOCK, and
its fstat must be the same inode as the lstat (no swap in between).

    root = DropRoot(Path("/srv/intake/drop"))
    data, st = root.read(path)           # NotRegular / OutsideRoot for anything else
    root.remove(path, (size, mtime_ns), overwrite=True)
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class OutsideRoot(Exception):
    """The path is not below the drop folder."""


class NotRegular(Exception):
    """Not a regular file (or reached through a link): never read, written or deleted."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def kind_of(mode: int) -> str:
    """Words for a file type, for the one-line notice and the audit record."""
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "regular file"
    return "special file"


class DropRoot:
    """The drop folder, held open by descriptor for the watcher's lifetime."""

    def __init__(self, root: Path) -> None:
        self.path = Path(os.path.abspath(root))
        try:
            self.fd = os.open(self.path, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotRegular("symbolic link") from None
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DropRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths ------------------------------------------------------------------------
    def parts(self, path: Path | str) -> tuple[str, ...]:
        """The components of `path` below the root; OutsideRoot when it is not below it
        (checked on the normalised text: '..' cannot climb out)."""
        absolute = os.path.normpath(os.path.join(self.path, os.fspath(path)))
        try:
            relative = Path(absolute).relative_to(self.path)
        except ValueError:
            raise OutsideRoot(str(path)) from None
        parts = relative.parts
        if not parts or any(p in ("", ".", "..") for p in parts):
            raise OutsideRoot(str(path))
        return parts

    def inside(self, path: Path | str) -> bool:
        try:
            self.parts(path)
        except OutsideRoot:
            return False
        return True

    @contextmanager
    def parent(self, path: Path | str) -> Iterator[tuple[int, str]]:
        """(descriptor of the folder holding `path`, its last component), reached
        without following any link. NotRegular("symbolic link") if a folder on the way
        is a link (or was swapped for one)."""
        parts = self.parts(path)
        fds: list[int] = []
        fd = self.fd
        try:
            for name in parts[:-1]:
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise NotRegular("symbolic link") from None
                    raise
                fds.append(fd)
            if fds and not self._fd_inside(fd):
                raise OutsideRoot(str(path))
            yield fd, parts[-1]
        finally:
            for opened in reversed(fds):
                os.close(opened)

    def _fd_inside(self, fd: int) -> bool:
        """Belt and braces: the kernel's own name for the folder is below the root."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return True  # no /proc: the O_NOFOLLOW walk alone already guarantees it
        return real == str(self.path) or real.startswith(str(self.path).rstrip("/") + "/")

    # -- operations -------------------------------------------------------------------
    def lstat(self, path: Path | str) -> os.stat_result:
        with self.parent(path) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def read(self, path: Path | str) -> tuple[bytes, os.stat_result]:
        """The bytes of a regular file below the root and its fstat."""
        with self.parent(path) as (fd, name):
            before = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(before.st_mode):
                raise NotRegular(kind_of(before.st_mode))
            try:
                handle_fd = os.open(name, _FILE_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise NotRegular("symbolic link") from None
                raise
            with os.fdopen(handle_fd, "rb") as handle:
                st = os.fstat(handle.fileno())
                if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
                    before.st_dev,
                    before.st_ino,
                ):
                    raise NotRegular(kind_of(st.st_mode) if not stat.S_ISREG(st.st_mode)
                                     else "file swapped while opened")  # fmt: skip
                os.set_blocking(handle.fileno(), True)
                return handle.read(), st

    def remove(self, path: Path | str, sig: tuple[int, int], *, overwrite: bool = False) -> bool:
        """Delete a regular file below the root if it still has signature `sig`
        (size, mtime_ns); zero-fill and fsync it first with `overwrite`. False when it
        changed or vanished (nothing done). Never writes through a link."""
        with self.parent(path) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if not stat.S_ISREG(st.st_mode):
                raise NotRegular(kind_of(st.st_mode))
            if (st.st_size, st.st_mtime_ns) != sig:
                return False
            if overwrite:
                _zero_fill(fd, name, st)
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                return False
            return True

    def walk(self, top: Path | str | None = None) -> Iterator[tuple[Path, str | None]]:
        """Every entry below `top` (default the root) that is not a folder: (path, None)
        for a regular file, (path, kind) for anything else (links are reported, never
        followed, folders included)."""
        if top is None or Path(top) == self.path:
            yield from self._walk_fd(os.dup(self.fd), self.path)
            return
        parts = self.parts(top)
        with self.parent(top) as (fd, name):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    yield self.path.joinpath(*parts), "symbolic link"
                    return
                if exc.errno == errno.ENOENT:
                    return
                raise
        yield from self._walk_fd(sub, self.path.joinpath(*parts))

    def _walk_fd(self, fd: int, where: Path) -> Iterator[tuple[Path, str | None]]:
        try:
            try:
                names = sorted(os.listdir(fd))
            except OSError:
                return
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    try:
                        sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                            yield where / name, "symbolic link"
                        continue
                    yield from self._walk_fd(sub, where / name)
                elif stat.S_ISREG(st.st_mode):
                    yield where / name, None
                else:
                    yield where / name, kind_of(st.st_mode)
        finally:
            os.close(fd)


def _zero_fill(dir_fd: int, name: str, expected: os.stat_result) -> None:
    """Overwrite the file's bytes with zeros and fsync, through a descriptor opened
    without following links and checked to be the same inode."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)  # fmt: skip
    except OSError:
        return  # deleting still goes ahead: the archive has the instance
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
            expected.st_dev,
            expected.st_ino,
        ):
            return
        size = st.st_size
        chunk = b"\0" * min(size, 1 << 20) if size else b""
        left = size
        while left > 0:
            left -= os.write(fd, chunk[: min(left, len(chunk))])
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
