"""REST for collections: decode, call archive.catalogue.usecases, encode (issue 21).

    GET    /teaching/collections                                   list
    POST   /teaching/collections        {"title", "description"}   create (you own it)
    GET    /teaching/collections/{col}                             one, ordered
    PUT    /teaching/collections/{col}  {"title"?, "description"?} edit
    DELETE /teaching/collections/{col}                             delete (owner)
    PUT    /teaching/collections/{col}/editors {"editors": [...]}  share editing (owner)
    POST   /teaching/collections/{col}/items {"cases": [...], "position"?}  add
    PUT    /teaching/collections/{col}/items {"cases": [...]}      reorder (named first)
    PUT    /teaching/collections/{col}/items/{case} {"position": n} move one
    DELETE /teaching/collections/{col}/items/{case}                remove one

The owner, those they share editing with, and whoever the policy lets override
(collection.* in policies/access/actions.toml) change a collection; everyone who may
view the catalogue reads it. Refusals are `{"error", "next"}` with their status.
"""

from __future__ import annotations

from typing import Any

from archive.catalogue import usecases as uc
from plugins.cases_routes import ID, catalogue_room
from plugins.rest import HttpError, outcome, principal_of, request_json, route


def _text(body: dict, name: str, default: Any = KeyError) -> Any:
    value = body.get(name, default)
    if value is KeyError:
        raise HttpError(400, f"{name} is required.")
    if value is not None and not isinstance(value, str):
        raise HttpError(400, f"{name} must be text.")
    return value


def _names(body: dict, name: str) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HttpError(400, f'give {{"{name}": ["...", ...]}}.')
    return value


def register(orthanc, services) -> None:
    def call(request: dict, use_case, *args, **kwargs) -> dict:
        principal = principal_of(services, request)
        result = outcome(use_case(catalogue_room(services), principal, *args, **kwargs))
        if isinstance(result, uc.Collections):
            return {"total": len(result.items), "items": [c.to_dict() for c in result.items]}
        return result.collection.to_dict()

    def collections(uri: str, request: dict, groups: list[str]) -> dict:
        if request.get("method") == "GET":
            return call(request, uc.list_collections)
        body = request_json(request)
        return call(request, uc.create_collection, _text(body, "title"),
                    _text(body, "description", "") or "")  # fmt: skip

    def collection(uri: str, request: dict, groups: list[str]) -> dict:
        method, target = request.get("method"), groups[0]
        if method == "GET":
            return call(request, uc.view_collection, target)
        if method == "DELETE":
            return {"deleted": call(request, uc.delete_collection, target)}
        body = request_json(request)
        return call(request, uc.edit_collection, target, title=_text(body, "title", None),
                    description=_text(body, "description", None))  # fmt: skip

    def editors(uri: str, request: dict, groups: list[str]) -> dict:
        names = _names(request_json(request), "editors")
        return call(request, uc.share_collection, groups[0], names)

    def items(uri: str, request: dict, groups: list[str]) -> dict:
        body = request_json(request)
        cases = _names(body, "cases")
        if not cases:
            raise HttpError(400, 'give {"cases": ["CASE-ID", ...]}.')
        if request.get("method") == "PUT":
            return call(request, uc.reorder_collection, groups[0], cases)
        position = body.get("position")
        if position is not None and (not isinstance(position, int) or position < 1):
            raise HttpError(400, "position must be a whole number (1 is first).")
        return call(request, uc.add_to_collection, groups[0], cases, position)

    def item(uri: str, request: dict, groups: list[str]) -> dict:
        target, case_id = groups[0], groups[1]
        if request.get("method") == "DELETE":
            return call(request, uc.remove_from_collection, target, [case_id])
        position = request_json(request).get("position")
        if not isinstance(position, int) or position < 1:
            raise HttpError(400, 'give {"position": n}, 1 for first.')
        return call(request, uc.move_in_collection, target, case_id, position)

    base = "/teaching/collections"
    route(services, base, {"GET": collections, "POST": collections})
    one = {"GET": collection, "PUT": collection, "DELETE": collection}
    route(services, f"{base}/{ID}", one)
    route(services, f"{base}/{ID}/editors", {"PUT": editors})
    route(services, f"{base}/{ID}/items", {"POST": items, "PUT": items})
    route(services, f"{base}/{ID}/items/{ID}", {"PUT": item, "DELETE": item})
