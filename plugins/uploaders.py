"""Who is uploading on this thread: the HTTP filter tells the received-instance callback.

For a POST /instances both run on the same Orthanc thread, one after the other. The
quarantine uses the name to refuse a release by whoever ingested the study. Keyed by OS
thread id because orthanc-python drops threading.local between callbacks.
"""

from __future__ import annotations

import threading

_uploaders: dict[int, str] = {}
_dicom_front: dict[int, str] = {}


def note_uploader(name: str | None) -> None:
    """Attribute the next instance received on this thread to a named user (or nobody)."""
    ident = threading.get_ident()
    if name:
        _uploaders[ident] = name
    else:
        _uploaders.pop(ident, None)


def take_uploader() -> str | None:
    """The named uploader of the instance now being received, cleared as it is read."""
    return _uploaders.pop(threading.get_ident(), None)


def note_dicom_front(aet: str | None) -> None:
    """The next instance on this thread was C-STOREd to the DICOM front by `aet` (the
    filter checked the front's secret): ingest records it as a DICOM intake."""
    ident = threading.get_ident()
    if aet:
        _dicom_front[ident] = aet
    else:
        _dicom_front.pop(ident, None)


def take_dicom_front() -> str | None:
    """The calling AE of the instance now being received through the front, cleared."""
    return _dicom_front.pop(threading.get_ident(), None)
