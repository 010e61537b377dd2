"""Containers in the drop folder: zip files and DICOMDIR media.

Zip members are extracted into a private (0700) directory INSIDE the archive's data
directory, the encrypted volume: never /tmp, where identifiable files would sit in
clear. DICOMDIR is an index, not an instance: its referenced files are ingested and the
DICOMDIR itself is never uploaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
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


def is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" or (path.is_file() and zipfile.is_zipfile(path))


def is_dicomdir(path: Path) -> bool:
    """A DICOMDIR by its standard name, or by the Media Storage Directory SOP class."""
    if path.name.upper() == DICOMDIR_NAME:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
            if head[128:132] != b"DICM":
                return False
        meta = read_file_meta_info(path)  # the meta group only: cheap per file
    except (OSError, InvalidDicomError, ValueError, EOFError, KeyError):
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_DIRECTORY_SOP_CLASS


def dicomdir_references(path: Path) -> list[Path]:
    """The instance files a DICOMDIR references (those present on the medium)."""
    fileset = FileSet(dcmread(path))
    out: list[Path] = []
    for instance in fileset:
        referenced = Path(instance.path)
        if referenced.is_file():
            out.append(referenced)
    return sorted(set(out))


def extract_zip(path: Path, workdir: Path) -> list[Path]:
    """Extract the regular-file members under flat numbered names (no path traversal,
    no member names on disk); nested zips are extracted too, in the same workdir."""
    out: list[Path] = []
    with zipfile.ZipFile(path) as archive:
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
