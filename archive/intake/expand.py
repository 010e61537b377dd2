"""Containers in the drop folder: zip files and DICOMDIR media.

Zip members are extracted into a private (0700) directory INSIDE the archive's data
directory, the encrypted volume: never /tmp, where identifiable files would sit in
clear. DICOMDIR is an index, not an instance: its referenced files are ingested and the
DICOMDIR itself is never uploaded.

Nothing here opens a path in the drop folder: the watcher reads the bytes through
`archive.intake.safefs` (no links followed) and hands them over. Zip members go to
flat numbered names (no member name or path is ever used on disk, so "../" or a
symlink member cannot escape the work folder); DICOMDIR references are only offered
to the watcher if they lie below the drop folder, where the same safe reads apply.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.fileset import FileSet

DICOMDIR_NAME = "DICOMDIR"
MEDIA_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
_COPY_CHUNK = 1 << 20


def workroot(data_dir: Path) -> Path:
    return data_dir / "intake" / "work"


def private_workdir(data_dir: Path) -> Path:
    """A fresh 0700 directory under DATA/intake/work (on the encrypted volume)."""
    root = workroot(data_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root.parent, 0o700)
    os.chmod(root, 0o700)
    return Path(tempfile.mkdtemp(prefix="zip-", dir=root))  # mkdtemp makes it 0700


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def is_zip(path: Path, data: bytes | None = None) -> bool:
    """A zip by its suffix or its content (`data`, the bytes already read safely)."""
    if path.suffix.lower() == ".zip":
        return True
    if data is None:
        return path.is_file() and not path.is_symlink() and zipfile.is_zipfile(path)
    return data[:2] == b"PK" and zipfile.is_zipfile(io.BytesIO(data))


def is_dicomdir(path: Path, data: bytes | None = None) -> bool:
    """A DICOMDIR by its standard name, or by the Media Storage Directory SOP class
    (read from `data`, else from the file, which is then never a link)."""
    if path.name.upper() == DICOMDIR_NAME:
        return True
    if data is None:
        if path.is_symlink():
            return False
        try:
            with open(path, "rb") as handle:
                data = handle.read(64 * 1024)
        except OSError:
            return False
    if data[128:132] != b"DICM":
        return False
    try:
        fp = io.BytesIO(data)
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)  # the meta group only: cheap per file
    except (OSError, InvalidDicomError, ValueError, EOFError, KeyError, TypeError):
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_DIRECTORY_SOP_CLASS


def dicomdir_references(
    path: Path, data: bytes | None = None, root: Path | None = None
) -> list[Path]:
    """The instance files a DICOMDIR references, below `root` (default: the DICOMDIR's
    own folder). A reference that climbs out ('..' or an absolute path) is left out;
    links are left for the watcher's safe reads to refuse."""
    dataset = dcmread(io.BytesIO(data) if data is not None else path)
    dataset.filename = str(path)
    fileset = FileSet(dataset)
    limit = os.path.normpath(os.path.abspath(root or path.parent))
    out: list[Path] = []
    for instance in fileset:
        referenced = os.path.normpath(os.path.abspath(instance.path))
        if not referenced.startswith(limit.rstrip("/") + "/"):
            continue
        candidate = Path(referenced)
        if candidate.is_symlink() or candidate.is_file():
            out.append(candidate)
    return sorted(set(out))


def extract_zip(source: Path | bytes, workdir: Path) -> list[Path]:
    """Extract the regular-file members under flat numbered names (no path traversal,
    no member names on disk); nested zips are extracted too, in the same workdir.
    `source` is the zip's bytes (read safely by the watcher) or a path."""
    out: list[Path] = []
    opened = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    with zipfile.ZipFile(opened) as archive:
        for n, info in enumerate(archive.infolist(), start=1):
            if info.is_dir():
                continue
            target = workdir / f"m{len(out) + 1:06d}-{n:06d}"
            with archive.open(info) as src:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
            if zipfile.is_zipfile(target):
                inner = Path(tempfile.mkdtemp(prefix="inner-", dir=workdir))
                out.extend(extract_zip(target, inner))
                target.unlink()
            else:
                out.append(target)
    return out
