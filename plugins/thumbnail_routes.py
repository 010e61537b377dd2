"""REST adapter for case thumbnails and previews: GET
/teaching/cases/{id}/series/{n}/thumbnail[?size=preview] (a PNG, so not through
rest.route). The image is the series' middle instance read from the vault through its
ledger and rendered by archive/render, never through orthanc.RestApi*
(ops/NO-RESTAPI.md); viewing it is the catalogue's `case.view`, audited as
catalogue.case.thumbnail.
"""

from __future__ import annotations

from archive.catalogue import usecases as uc
from archive.errors import ArchiveError
from archive.render import PREVIEW_SIZE, THUMBNAIL_SIZE, render_png
from archive.vault.ledger import read_dicom
from plugins.rest import HttpError, answer_json, outcome, principal_of
from plugins.rooms import catalogue_room

ID = r"([A-Za-z0-9-]{1,64})"


def register(orthanc, services) -> None:
    def thumbnail(output, uri, **request) -> None:  # binary: not through rest.route
        if request.get("method") != "GET":
            output.SendMethodNotAllowed("GET")
            return
        try:
            groups = request.get("groups") or []
            big = (request.get("get") or {}).get("size") == "preview"
            principal = principal_of(services, request)
            image, mime = thumbnail_png(services, principal, groups[0], int(groups[1]),
                                        size=PREVIEW_SIZE if big else THUMBNAIL_SIZE)  # fmt: skip
            output.AnswerBuffer(image, mime)
        except HttpError as exc:
            answer_json(output, exc.payload(), exc.status)
        except ArchiveError as exc:
            answer_json(output, {"error": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            orthanc.LogError(f"teaching-archive: thumbnail: {type(exc).__name__}")
            answer_json(output, {"error": "internal error; see the archive's log"}, 500)

    orthanc.RegisterRestCallback(f"/teaching/cases/{ID}/series/([0-9]{{1,4}})/thumbnail", thumbnail)


def thumbnail_png(
    services, principal, case_id: str, number: int, *, size: int = THUMBNAIL_SIZE,
    source: str = "rest",
) -> tuple[bytes, str]:  # fmt: skip
    """The n-th series' middle image for `principal` (REST and web UI), audited as
    catalogue.case.thumbnail; read from the vault through its ledger and rendered here,
    never through orthanc.RestApi* (ops/NO-RESTAPI.md)."""
    room = catalogue_room(services, source)
    shown = outcome(uc.view_case(room, principal, case_id, record="catalogue.case.thumbnail"))
    case = shown.case
    if case.status == "withdrawn":
        raise HttpError(404, f"no images for {case.case_id}: the case is withdrawn.")
    if not 1 <= number <= len(case.series):
        raise HttpError(404, f"{case.case_id} has series 1 to {len(case.series)}.")
    series_id = case.series[number - 1].orthanc_series_id
    entries = [e for e in services.ledger().series_files(series_id)
               if e.orthanc_study_id == case.orthanc_study_id]  # fmt: skip
    if not entries:
        raise HttpError(404, f"series {number} of {case.case_id} is no longer stored.")
    try:
        data = read_dicom(services.storage, entries[len(entries) // 2])
    except FileNotFoundError:
        raise HttpError(404, f"series {number} of {case.case_id} is no longer stored.") from None
    return render_png(data, size), "image/png"
