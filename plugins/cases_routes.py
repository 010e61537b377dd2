"""REST for teaching cases: decode, call archive.catalogue.usecases, encode (issue 21).

    GET      /teaching/cases?q=&modality=&body_part=&category=&difficulty=&level=
                            &collection=&status=&page=&per_page=&sort=        search
    GET      /teaching/cases/{case}                                one case + series
    PUT|POST /teaching/cases/{case}          {"field": value, ...}            edit
    POST     /teaching/cases/{case}/annotate {"field": f, "text": t}        append
    GET      /teaching/cases/{case}/series/{n}/thumbnail[?size=preview]  PNG of the
             middle image (256 px; preview: up to 1024 px; an icon for SR, RT, PDF)

Who may do what is the use cases' business (actions case.view and case.edit in
policies/access/actions.toml); a refusal is `{"error", "next"}` with its status. Orthanc
ids stay inside: payloads carry case ids.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from archive.catalogue import usecases as uc
from archive.errors import ArchiveError
from archive.render import PREVIEW_SIZE, THUMBNAIL_SIZE, render_png
from archive.vault.ledger import read_dicom
from plugins.rest import HttpError, answer_json, outcome, principal_of, request_json, route
from plugins.rooms import catalogue_room

ID = r"([A-Za-z0-9-]{1,64})"
__all__ = ["ID", "catalogue_room", "case_view", "register", "thumbnail_png"]


def case_view(case) -> dict[str, Any]:
    data = case.to_dict()
    data.pop("orthanc_study_id", None)
    series = []
    for number, item in enumerate(data.get("series") or [], start=1):
        item.pop("orthanc_series_id", None)
        item["number"] = number
        item["thumbnail"] = f"/teaching/cases/{case.case_id}/series/{number}/thumbnail"
        series.append(item)
    data["series"] = series
    return data


def _int(get: dict, name: str, default: int) -> int:
    raw = (get.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise HttpError(400, f"{name} must be a whole number.")
    return int(raw)


def _query(request: dict) -> dict[str, str]:
    """GET arguments, percent-decoded: orthanc-python 4.0 hands them over still encoded
    (measured: ?q=ct%20chest arrives as "ct%20chest")."""
    return {unquote_plus(k): unquote_plus(v) for k, v in (request.get("get") or {}).items()}


def register(orthanc, services) -> None:
    def search(uri: str, request: dict, groups: list[str]) -> dict:
        get = _query(request)
        unknown = sorted(set(get) - {"q", "page", "per_page", "sort", *uc.FILTERS})
        if unknown:
            raise HttpError(400, f"unknown parameter {unknown[0]!r}.")
        filters = {f: [v.strip() for v in get[f].split(",") if v.strip()] for f in uc.FILTERS
                   if get.get(f)}  # fmt: skip
        found = outcome(uc.search_cases(
            catalogue_room(services), principal_of(services, request), get.get("q") or "",
            filters, page=_int(get, "page", 1), per_page=_int(get, "per_page", 20),
            sort=(get.get("sort") or "relevance").strip(),
        ))  # fmt: skip
        return {**found.page.to_dict(), "items": [case_view(c) for c in found.page.items]}

    def show(uri: str, request: dict, groups: list[str]) -> dict:
        principal = principal_of(services, request)
        return case_view(outcome(uc.view_case(catalogue_room(services), principal, groups[0])).case)

    def edit(uri: str, request: dict, groups: list[str]) -> dict:
        principal, body = principal_of(services, request), request_json(request)
        done = outcome(uc.edit_case(catalogue_room(services), principal, groups[0], body))
        return case_view(done.case)

    def annotate(uri: str, request: dict, groups: list[str]) -> dict:
        principal, body = principal_of(services, request), request_json(request)
        field, text = body.get("field"), body.get("text")
        if not isinstance(field, str) or not isinstance(text, str | list):
            raise HttpError(400, 'give {"field": name, "text": what to add}.')
        if isinstance(text, list):
            text = ",".join(str(t) for t in text)
        room = catalogue_room(services)
        return case_view(outcome(uc.annotate_case(room, principal, groups[0], field, text)).case)

    route(services, "/teaching/cases", {"GET": search})
    route(services, f"/teaching/cases/{ID}", {"GET": show, "PUT": edit, "POST": edit})
    route(services, f"/teaching/cases/{ID}/annotate", {"POST": annotate})

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
