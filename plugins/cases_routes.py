"""REST for teaching cases: decode, call archive.catalogue.usecases, encode (issue 21).

    GET      /teaching/cases?q=&modality=&body_part=&category=&difficulty=&level=
                            &collection=&status=&page=&per_page=&sort=        search
    GET      /teaching/cases/{case}                                one case + series
    PUT|POST /teaching/cases/{case}          {"field": value, ...}            edit
    POST     /teaching/cases/{case}/annotate {"field": f, "text": t}        append
    POST     /teaching/cases/{case}/review-publication {checks, "rarity"}  to publication
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
from plugins.rest import HttpError, outcome, principal_of, request_json, route
from plugins.rooms import catalogue_room

ID = r"([A-Za-z0-9-]{1,64})"
__all__ = ["ID", "catalogue_room", "case_view", "register"]


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


def _unknowns_masked(services, principal, cases: list) -> list:
    """Unknowns this person has not revealed, as "Unknown case" (issue 22)."""
    from archive.teach.masking import hidden_cases, masked

    ports = catalogue_room(services).ports
    hidden = hidden_cases(ports.db, ports.actions, principal, [c.case_id for c in cases])
    return [masked(c) if c.case_id in hidden else c for c in cases]


def register(orthanc, services) -> None:
    def search(uri: str, request: dict, groups: list[str]) -> dict:
        get = _query(request)
        unknown = sorted(set(get) - {"q", "page", "per_page", "sort", *uc.FILTERS})
        if unknown:
            raise HttpError(400, f"unknown parameter {unknown[0]!r}.")
        filters = {f: [v.strip() for v in get[f].split(",") if v.strip()] for f in uc.FILTERS
                   if get.get(f)}  # fmt: skip
        principal = principal_of(services, request)
        found = outcome(uc.search_cases(
            catalogue_room(services), principal, get.get("q") or "",
            filters, page=_int(get, "page", 1), per_page=_int(get, "per_page", 20),
            sort=(get.get("sort") or "relevance").strip(),
        ))  # fmt: skip
        items = _unknowns_masked(services, principal, found.page.items)
        return {**found.page.to_dict(), "items": [case_view(c) for c in items]}

    def show(uri: str, request: dict, groups: list[str]) -> dict:
        principal = principal_of(services, request)
        case = outcome(uc.view_case(catalogue_room(services), principal, groups[0])).case
        return case_view(_unknowns_masked(services, principal, [case])[0])

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

    def review_publication(uri: str, request: dict, groups: list[str]) -> dict:
        """POST {"ocr_checked", "face_checked", "free_text_checked": true, "rarity": "..."}:
        the review to the point of publication, as the signed-in person (issue 24)."""
        from archive.catalogue.publication import Attestation
        from archive.catalogue.publication import review_publication as review
        from archive.pixels import load_masking_policy

        principal, body = principal_of(services, request), request_json(request)
        attestation = Attestation(
            body.get("ocr_checked") is True,
            body.get("face_checked") is True,
            body.get("free_text_checked") is True,
            str(body.get("rarity") or ""),
        )
        room = catalogue_room(services)
        masking = load_masking_policy(services.config.policies_dir)
        done = outcome(
            review(room.ports, principal, room.catalogue(), groups[0].upper(), attestation, masking)
        )
        return {"case_id": done.case_id, "level": done.level, "reviewer": done.reviewer}

    route(services, f"/teaching/cases/{ID}/review-publication", {"POST": review_publication})
