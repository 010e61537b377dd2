"""GET /teaching/health: the one unauthenticated route, used by `serve` and `status`.

It answers only versions and counts: nothing about any study. It never calls
orthanc.RestApi* while answering: orthanc-python 4.0 keeps the GIL during such a call,
and a REST callback doing so while a C-STORE batch was being ingested froze Orthanc
(reproduced here with a few health polls during a batch). Counts are kept from
Orthanc's change events instead, seeded once from /statistics when Orthanc starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

import orthanc

from archive import __version__

ROUTE = "/teaching/health"
_NEW = {
    orthanc.ChangeType.NEW_PATIENT: "patients",
    orthanc.ChangeType.NEW_STUDY: "studies",
    orthanc.ChangeType.NEW_SERIES: "series",
    orthanc.ChangeType.NEW_INSTANCE: "instances",
}
_LEVELS = {
    orthanc.ResourceType.PATIENT: "patients",
    orthanc.ResourceType.STUDY: "studies",
    orthanc.ResourceType.SERIES: "series",
    orthanc.ResourceType.INSTANCE: "instances",
}


def _orthanc_version() -> str | None:
    """Asked once at start from the running binary itself."""
    try:
        out = subprocess.run(
            [os.readlink("/proc/self/exe"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.splitlines()[0].split() if out else []
    return words[-1] if len(words) == 2 and "Orthanc" in words[0] else None


class ResourceCounts:
    """Patients/studies/series/instances, following Orthanc's change events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] | None = None

    def on_change(self, change_type, level, resource_id) -> None:
        if change_type == orthanc.ChangeType.ORTHANC_STARTED:
            stats = json.loads(orthanc.RestApiGet("/statistics"))
            with self._lock:
                self._counts = {
                    "patients": stats.get("CountPatients", 0),
                    "studies": stats.get("CountStudies", 0),
                    "series": stats.get("CountSeries", 0),
                    "instances": stats.get("CountInstances", 0),
                }
            return
        with self._lock:
            if self._counts is None:
                return
            if change_type in _NEW:
                self._counts[_NEW[change_type]] += 1
            elif change_type == orthanc.ChangeType.DELETED and level in _LEVELS:
                name = _LEVELS[level]
                self._counts[name] = max(0, self._counts[name] - 1)

    def snapshot(self) -> dict[str, int] | None:
        with self._lock:
            return dict(self._counts) if self._counts is not None else None


def register(services) -> None:
    version = _orthanc_version()
    aet = services.config.dicom.aet
    counts = ResourceCounts()
    services.change_hooks.append(counts.on_change)

    def answer(output, uri, **request) -> None:
        if request.get("method") != "GET":
            output.SendMethodNotAllowed("GET")
            return
        body = {
            "status": "ok",
            "plugin": "teaching-archive",
            "archive_version": __version__,
            "orthanc_version": version,
            "dicom_aet": aet,
            "counts": counts.snapshot(),
        }
        output.AnswerBuffer(json.dumps(body), "application/json")

    orthanc.RegisterRestCallback(ROUTE, answer)
