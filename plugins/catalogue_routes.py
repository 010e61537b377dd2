"""REST for the teaching catalogue: /teaching/cases and /teaching/collections (JSON).

    GET    /teaching/cases?q=&modality=&body_part=&category=&difficulty=&level=
                          &collection=&status=&page=&per_page=&sort=   search
    GET    /teaching/cases/{case}                                      one case + series
    PUT|POST /teaching/cases/{case}   {"field": value, ...}     edit (trainer, personnel)
    POST   /teaching/cases/{case}/annotate  {"field": f, "text": t}   append (trainer, personnel)
    GET    /teaching/cases/{case}/series/{n}/thumbnail[?size=preview]  PNG of the middle image
                          (256 px; preview: up to 1024 px; an icon for SR, RT, ECG, PDF)
    GET    /teaching/collections                                       list
    POST   /teaching/collections            {"title", "description"}   create
    GET    /teaching/collections/{col}                                 one collection, ordered
    PUT /teaching/collections/{col}       {"title"?, "description"?} edit
    POST   /teaching/collections/{col}/items {"cases": [...], "position"?}  add
    PUT    /teaching/collections/{col}/items {"cases": [...]}          reorder (named first)
    PUT    /teaching/collections/{col}/items/{case} {"position": n}    move one
    DELETE /teaching/collections/{col}/items/{case}                    remove one

The HTTP filter authorises each route by role (policies/access/routes.toml); the handlers
check again (defence in depth): only trainers and personnel edit, registrars and the
other viewing roles search and read, and only editors see cases that are not available.
Every access is audited with the case or collection id; search audits counts and the
filters used, never the typed query. Orthanc ids stay inside: payloads carry case ids.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import orthanc

from archive.audit import AuditEvent
from archive.catalogue import (
    CaseNotFoundError,
    CollectionNotFoundError,
    SearchFilters,
    can_edit,
    can_view,
)
from archive.catalogue.auditing import audit_sink
from archive.errors import ArchiveError
from archive.render import PREVIEW_SIZE, THUMBNAIL_SIZE, render_png
from archive.vault.ledger import read_dicom
from plugins.catalogue_sync import catalogue_for
from plugins.rest import HttpError, answer_json, principal_of, request_json, route

ID = r"([A-Za-z0-9-]{1,64})"
FILTERS = ("modality", "body_part", "category", "difficulty", "level", "collection", "status")
SOURCE = "http"


def _principal(services, request: dict, action: str, target: str | None, *, edit: bool = False):
    """Who acts; 401/403 (audited) unless their roles allow viewing, or editing."""
    principal = principal_of(services, request)
    allowed = can_edit(principal.roles) if edit else can_view(principal.roles)
    if not allowed:
        _audit(services, principal, action, target, "denied")
        if edit:
            raise HttpError(
                403,
                f"{principal.user} may search and view cases but not edit them"
                " (trainers and personnel only).",
            )
        raise HttpError(403, f"{principal.user} may not view the teaching catalogue.")
    return principal


def _audit(services, principal, action: str, target: str | None, outcome: str = "success",
           **detail: str | int | bool) -> None:  # fmt: skip
    services.record(
        AuditEvent(
            action=action,
            outcome=outcome,
            actor=principal.user,
            roles=tuple(principal.roles),
            source=SOURCE,
            target=target,
            detail=detail,
        )
    )


def _catalogue(services, principal):
    """A catalogue whose changes are audited as this principal."""
    sink = audit_sink(services.runtime.audit, principal.roles, source=SOURCE)
    return catalogue_for(services, sink)


def _case_view(case) -> dict[str, Any]:
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


def _unknowns_masked(services, principal, cases: list) -> list:
    """Unknowns this person has not revealed, as "Unknown case" (issue 22)."""
    from archive.core import load_action_policy
    from archive.teach.masking import hidden_cases, masked

    actions = load_action_policy(services.config.policies_dir)
    hidden = hidden_cases(services.db(), actions, principal, [c.case_id for c in cases])
    return [masked(c) if c.case_id in hidden else c for c in cases]


def _visible_case(catalogue, principal, case_id: str):
    """The case, or 404 when it does not exist or is not available to a non-editor."""
    try:
        case = catalogue.get(case_id)
    except CaseNotFoundError:
        raise HttpError(404, f"no case {case_id}.") from None
    if case.status != "available" and not can_edit(principal.roles):
        raise HttpError(404, f"no case {case_id}.")
    return case


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


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def register(services) -> None:
    # -- cases ----------------------------------------------------------------------
    def search(uri: str, request: dict, groups: list[str]) -> dict:
        principal = _principal(services, request, "catalogue.case.search", None)
        get = _query(request)
        unknown = sorted(set(get) - {"q", "page", "per_page", "sort", *FILTERS})
        if unknown:
            raise HttpError(400, f"unknown parameter {unknown[0]!r}.")
        chosen = {name: _split(get.get(name)) for name in FILTERS if get.get(name)}
        if not can_edit(principal.roles):
            chosen["status"] = ["available"]
        page = _catalogue(services, principal).search(
            get.get("q") or "",
            SearchFilters.of(**chosen),
            page=_int(get, "page", 1),
            per_page=_int(get, "per_page", 20),
            sort=(get.get("sort") or "relevance").strip(),
        )
        _audit(
            services,
            principal,
            "catalogue.case.search",
            None,
            results=page.total,
            page=page.page,
            full_text=bool((get.get("q") or "").strip()),
            filters=",".join(sorted(chosen)),
        )
        items = _unknowns_masked(services, principal, page.items)
        return {**page.to_dict(), "items": [_case_view(c) for c in items]}

    def show(uri: str, request: dict, groups: list[str]) -> dict:
        case_id = groups[0].upper()
        principal = _principal(services, request, "catalogue.case.view", case_id)
        case = _visible_case(_catalogue(services, principal), principal, case_id)
        _audit(services, principal, "catalogue.case.view", case.case_id)
        return _case_view(_unknowns_masked(services, principal, [case])[0])

    def edit(uri: str, request: dict, groups: list[str]) -> dict:
        case_id = groups[0].upper()
        principal = _principal(services, request, "catalogue.case.edit", case_id, edit=True)
        catalogue = _catalogue(services, principal)
        _visible_case(catalogue, principal, case_id)
        return _case_view(catalogue.edit(case_id, request_json(request), principal.user))

    def annotate(uri: str, request: dict, groups: list[str]) -> dict:
        case_id = groups[0].upper()
        principal = _principal(services, request, "catalogue.case.edit", case_id, edit=True)
        body = request_json(request)
        field, text = body.get("field"), body.get("text")
        if not isinstance(field, str) or not isinstance(text, str | list):
            raise HttpError(400, 'give {"field": name, "text": what to add}.')
        catalogue = _catalogue(services, principal)
        _visible_case(catalogue, principal, case_id)
        if isinstance(text, list):
            text = ",".join(str(t) for t in text)
        return _case_view(catalogue.annotate(case_id, field, text, principal.user))

    route(services, "/teaching/cases", {"GET": search})
    route(services, f"/teaching/cases/{ID}", {"GET": show, "PUT": edit, "POST": edit})
    route(services, f"/teaching/cases/{ID}/annotate", {"POST": annotate})
    orthanc.RegisterRestCallback(
        f"/teaching/cases/{ID}/series/([0-9]{{1,4}})/thumbnail", _thumbnail_callback(services)
    )

    # -- collections -----------------------------------------------------------------
    def collection_target(groups: list[str]) -> str:
        return groups[0].upper()

    def list_collections(uri: str, request: dict, groups: list[str]) -> dict:
        principal = _principal(services, request, "catalogue.collection.list", None)
        items = [c.to_dict() for c in _catalogue(services, principal).list_collections()]
        _audit(services, principal, "catalogue.collection.list", None, results=len(items))
        return {"total": len(items), "items": items}

    def create_collection(uri: str, request: dict, groups: list[str]) -> dict:
        principal = _principal(services, request, "catalogue.collection.create", None, edit=True)
        body = request_json(request)
        return (
            _catalogue(services, principal)
            .create_collection(_text(body, "title"), _text(body, "description", ""), principal.user)
            .to_dict()
        )

    def show_collection(uri: str, request: dict, groups: list[str]) -> dict:
        target = collection_target(groups)
        principal = _principal(services, request, "catalogue.collection.view", target)
        collection = _collection(_catalogue(services, principal), target)
        _audit(services, principal, "catalogue.collection.view", collection.collection_id)
        return collection.to_dict()

    def edit_collection(uri: str, request: dict, groups: list[str]) -> dict:
        target = collection_target(groups)
        principal = _principal(services, request, "catalogue.collection.edit", target, edit=True)
        body = request_json(request)
        catalogue = _catalogue(services, principal)
        _collection(catalogue, target)
        return catalogue.edit_collection(
            target,
            principal.user,
            title=_text(body, "title", None),
            description=_text(body, "description", None),
        ).to_dict()

    def change_items(uri: str, request: dict, groups: list[str]) -> dict:
        target = collection_target(groups)
        verb = "add" if request.get("method") == "POST" else "reorder"
        principal = _principal(services, request, f"catalogue.collection.{verb}", target, edit=True)
        body = request_json(request)
        cases = body.get("cases")
        if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases) or not cases:
            raise HttpError(400, 'give {"cases": ["CASE-ID", ...]}.')
        catalogue = _catalogue(services, principal)
        _collection(catalogue, target)
        try:
            if verb == "add":
                position = body.get("position")
                if position is not None and not isinstance(position, int):
                    raise HttpError(400, "position must be a whole number (1 is first).")
                return catalogue.add_to_collection(
                    target, cases, principal.user, position
                ).to_dict()
            return catalogue.reorder_collection(target, cases, principal.user).to_dict()
        except CaseNotFoundError as exc:
            raise HttpError(404, str(exc)) from None

    def change_item(uri: str, request: dict, groups: list[str]) -> dict:
        target, case_id = collection_target(groups), groups[1].upper()
        method = request.get("method")
        verb = "remove" if method == "DELETE" else "reorder"
        principal = _principal(services, request, f"catalogue.collection.{verb}", target, edit=True)
        catalogue = _catalogue(services, principal)
        _collection(catalogue, target)
        if verb == "remove":
            return catalogue.remove_from_collection(target, [case_id], principal.user).to_dict()
        position = request_json(request).get("position")
        if not isinstance(position, int) or position < 1:
            raise HttpError(400, 'give {"position": n}, 1 for first.')
        return catalogue.move_in_collection(target, case_id, position, principal.user).to_dict()

    route(services, "/teaching/collections", {"GET": list_collections, "POST": create_collection})
    route(
        services,
        f"/teaching/collections/{ID}",
        {"GET": show_collection, "PUT": edit_collection},
    )
    route(
        services, f"/teaching/collections/{ID}/items", {"POST": change_items, "PUT": change_items}
    )
    route(
        services,
        f"/teaching/collections/{ID}/items/{ID}",
        {"PUT": change_item, "DELETE": change_item},
    )


def _text(body: dict, name: str, default: str | None | type = KeyError) -> Any:
    value = body.get(name, default)
    if value is KeyError:
        raise HttpError(400, f"{name} is required.")
    if value is not None and not isinstance(value, str):
        raise HttpError(400, f"{name} must be text.")
    return value


def _collection(catalogue, collection_id: str):
    try:
        return catalogue.get_collection(collection_id)
    except CollectionNotFoundError:
        raise HttpError(404, f"no collection {collection_id}.") from None


# -- thumbnails: binary answers, so not through rest.route ------------------------------
def _thumbnail_callback(services):
    def callback(output, uri, **request) -> None:
        if request.get("method") != "GET":
            output.SendMethodNotAllowed("GET")
            return
        try:
            image, mime = _thumbnail(services, request)
            output.AnswerBuffer(image, mime)
        except HttpError as exc:
            answer_json(output, {"error": exc.message}, exc.status)
        except ArchiveError as exc:
            answer_json(output, {"error": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            orthanc.LogError(f"teaching-archive: thumbnail: {type(exc).__name__}")
            answer_json(output, {"error": "internal error; see the archive's log"}, 500)

    return callback


def _thumbnail(services, request: dict) -> tuple[bytes, str]:
    """The middle image of the case's n-th series, rendered from the vault's file
    (?size=preview: up to PREVIEW_SIZE pixels instead of a thumbnail)."""
    groups = request.get("groups") or []
    case_id, number = groups[0].upper(), int(groups[1])
    size = PREVIEW_SIZE if (request.get("get") or {}).get("size") == "preview" else THUMBNAIL_SIZE
    principal = principal_of(services, request)  # thumbnail_png checks and audits the role
    return thumbnail_png(services, principal, case_id, number, size=size)


def thumbnail_png(
    services, principal, case_id: str, number: int, *, size: int = THUMBNAIL_SIZE
) -> tuple[bytes, str]:
    """The n-th series' middle image for `principal` (REST and web UI), audited.

    Read from the vault through its instance ledger and rendered here (archive.render),
    never through orthanc.RestApi* (ops/NO-RESTAPI.md); an instance without renderable
    pixels (SR, RT plan, ECG, PDF) answers a typed icon."""
    if not can_view(principal.roles):
        _audit(services, principal, "catalogue.case.thumbnail", case_id, "denied")
        raise HttpError(403, f"{principal.user} may not view the teaching catalogue.")
    case = _visible_case(_catalogue(services, principal), principal, case_id)
    if case.status == "withdrawn":
        raise HttpError(404, f"no images for {case_id}: the case is withdrawn.")
    if not 1 <= number <= len(case.series):
        raise HttpError(404, f"{case_id} has series 1 to {len(case.series)}.")
    series_id = case.series[number - 1].orthanc_series_id
    entries = [
        e for e in services.ledger().series_files(series_id)
        if e.orthanc_study_id == case.orthanc_study_id
    ]  # fmt: skip
    if not entries:
        raise HttpError(404, f"series {number} of {case_id} is no longer stored.")
    middle = entries[len(entries) // 2]
    try:
        data = read_dicom(services.storage, middle)
    except FileNotFoundError:
        raise HttpError(404, f"series {number} of {case_id} is no longer stored.") from None
    image = render_png(data, size)
    _audit(services, principal, "catalogue.case.thumbnail", case.case_id, series=number)
    return image, "image/png"
