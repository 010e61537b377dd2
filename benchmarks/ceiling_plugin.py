"""Benchmarks only: the smallest orthanc-python 4.0 plugin an archive could be, for
bench_ingest_ceiling.py. Loaded by Orthanc as its PythonScript; imports nothing of the
archive. It registers a storage area that writes each attachment as a clear file in
Orthanc's layout (STORAGE/uu/id/uuid.type) and, on request, an empty received-instance
callback. What it does is chosen by Orthanc's environment:

  CEILING_STORAGE   root directory of the files (required)
  CEILING_SYNC      none  - write, no fsync (the absolute floor)
                    file  - write + fdatasync (what Orthanc's FilesystemStorage does
                            with SyncStorageArea: SystemToolbox::WriteFile, 1.10.1)
                    dir   - write + fsync + fsync of the file's directory (default)
  CEILING_CALLBACK  ""     - no received-instance callback (default)
                    keep   - a callback answering KeepAsIs
                    modify - a callback answering Modify with the bytes it was given
                             (what the archive's callback does, minus its work)

Never on an archive: the files are in clear. It refuses to start without
CEILING_STORAGE.
"""

import os

import orthanc

ROOT = os.environ["CEILING_STORAGE"]
SYNC = os.environ.get("CEILING_SYNC", "dir")
CALLBACK = os.environ.get("CEILING_CALLBACK", "")
if SYNC not in ("none", "file", "dir") or CALLBACK not in ("", "keep", "modify"):
    raise SystemExit(f"ceiling_plugin: bad CEILING_SYNC={SYNC!r} / CEILING_CALLBACK={CALLBACK!r}")


def _path(uuid: str, content_type) -> str:
    return os.path.join(ROOT, uuid[0:2], uuid[2:4], f"{uuid}.{int(content_type)}")


def create(uuid: str, content_type, data: bytes) -> None:
    path = _path(uuid, content_type)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if SYNC == "file":
            os.fdatasync(fd)
        elif SYNC == "dir":
            os.fsync(fd)
    finally:
        os.close(fd)
    if SYNC == "dir":
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read(uuid: str, content_type) -> bytes:
    with open(_path(uuid, content_type), "rb") as handle:
        return handle.read()


def remove(uuid: str, content_type) -> None:
    try:
        os.unlink(_path(uuid, content_type))
    except FileNotFoundError:
        pass


orthanc.RegisterStorageArea(create, read, remove)

if CALLBACK:
    _KEEP = orthanc.ReceivedInstanceAction.KEEP_AS_IS
    _MODIFY = orthanc.ReceivedInstanceAction.MODIFY

    def on_received(data, origin):
        if CALLBACK == "keep":
            return _KEEP, None
        return _MODIFY, bytes(data)

    orthanc.RegisterReceivedInstanceCallback(on_received)
