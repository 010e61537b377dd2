"""GET /teaching/health: up or down for anyone; versions, AE title and counts for staff.

Minimal disclosure (issue #20 finding 10): an anonymous caller learns only that the
archive answers ({"status": "ok"}). A caller who authenticates and whom the route policy
allows `GET /statistics` (the policy's own word for who may see the archive's figures;
no role names here) also gets the versions, the AE title and the counts. The principal
is the one the HTTP filter handed over (plugins/handoff.py): never authenticated twice.

It never calls orthanc.RestApi* (ops/NO-RESTAPI.md): counts come from the vault's
instance ledger (studies, series and instances stored), so health keeps answering while
Orthanc is busy, which is what proves the archive is not frozen.
"""

from __future__ import annotations

import json
import os
import subprocess

from archive import __version__
from plugins import handoff

ROUTE = "/teaching/health"
# The route whose permission decides who sees the details (policies/access/routes.toml).
DETAILS_ROUTE = ("GET", "/statistics")


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


def _may_see_details(services, uri: str, request: dict) -> bool:
    """The principal the filter handed over, if the route policy allows it
    DETAILS_ROUTE (fail closed: no handoff or any doubt is the anonymous answer)."""
    from archive.access.decide import decide

    try:
        found, principal = handoff.take("GET", uri, request.get("headers") or {})
        if not found or principal is None:
            return False
        method, route = DETAILS_ROUTE
        return decide(services.route_policy, principal, method, route).allowed
    except Exception:  # noqa: BLE001 - any doubt: the anonymous answer
        return False


def details(services, version: str | None) -> dict:
    return {
        "status": "ok",
        "plugin": "teaching-archive",
        "archive_version": __version__,
        "orthanc_version": version,
        "dicom_aet": services.config.dicom.aet,
        "counts": services.ledger().counts(),
    }


def register(orthanc, services) -> None:
    version = _orthanc_version()

    def answer(output, uri, **request) -> None:
        if request.get("method") != "GET":
            output.SendMethodNotAllowed("GET")
            return
        body: dict = {"status": "ok"}
        try:
            if _may_see_details(services, uri, request):
                body = details(services, version)
        except Exception as exc:  # noqa: BLE001 - up is still up; details are optional
            orthanc.LogError(f"teaching-archive: health details: {type(exc).__name__}")
        output.AnswerBuffer(json.dumps(body), "application/json")

    orthanc.RegisterRestCallback(ROUTE, answer)
