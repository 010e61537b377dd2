"""GET /teaching/health: the one unauthenticated route, used by `serve` and `status`.

It answers only versions and counts: nothing about any study.
"""

from __future__ import annotations

import json

import orthanc

from archive import __version__

ROUTE = "/teaching/health"


def register(services) -> None:
    def answer(output, uri, **request) -> None:
        if request.get("method") != "GET":
            output.SendMethodNotAllowed("GET")
            return
        system = json.loads(orthanc.RestApiGet("/system"))
        statistics = json.loads(orthanc.RestApiGet("/statistics"))
        body = {
            "status": "ok",
            "plugin": "teaching-archive",
            "archive_version": __version__,
            "orthanc_version": system.get("Version"),
            "dicom_aet": system.get("DicomAet"),
            "counts": {
                "patients": statistics.get("CountPatients"),
                "studies": statistics.get("CountStudies"),
                "series": statistics.get("CountSeries"),
                "instances": statistics.get("CountInstances"),
            },
        }
        output.AnswerBuffer(json.dumps(body), "application/json")

    orthanc.RegisterRestCallback(ROUTE, answer)
