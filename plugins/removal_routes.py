"""/teaching/removals: requests for images to leave the suite, and written decisions.

Decode, call archive.governance.removals.usecases as the authenticated person, encode
(plugins/governance_http.py). The export and download of an approved package are in
plugins/removal_export_routes.py.
"""

from __future__ import annotations

from datetime import datetime

from archive.governance.removals import usecases as uc
from archive.governance.removals.records import RemovalRequests
from plugins import governance_http as gh
from plugins.rest import HttpError


def _registry(services) -> RemovalRequests:
    return RemovalRequests(services.db(), gh.governance_policy(services))


def create_removal(services, principal, body: dict, source: str = "rest") -> dict:
    """Record a removal request by `principal`."""
    cases = body.get("cases")
    if not isinstance(cases, list) or not cases:
        raise HttpError(400, 'give "cases": a list of case ids.')
    made = gh.encode(uc.request(gh.ports(services, source), principal, cases,
                                body.get("purpose", ""), body.get("destination", "")))  # fmt: skip
    return made.to_dict()


def _create(services, request, groups):
    return create_removal(services, gh.who(services, request), gh.body(request))


def _list(services, request, groups):
    gh.who(services, request)
    now = gh.now()
    items = reversed(_registry(services).list())
    return {"removals": [{**i.to_dict(), "status": i.status_at(now)} for i in items]}


def _show(services, request, groups):
    gh.who(services, request)
    registry = _registry(services)
    item = registry.get(gh.number(groups))
    return {**item.to_dict(), "status": item.status_at(gh.now()),
            "downloads": registry.downloads(item.id)}  # fmt: skip


def decide_removal(services, principal, kind: str, rid: int, body: dict,
                   source: str = "rest") -> dict:  # fmt: skip
    """Approve or refuse request `rid` as `principal`."""
    ports = gh.ports(services, source)
    if kind == "approve":
        expires = body.get("expires_at")
        try:
            expires_at = datetime.fromisoformat(expires) if expires else None
        except (TypeError, ValueError):
            raise HttpError(400, "expires_at must be an ISO date-time with a zone.") from None
        done = uc.approve(ports, principal, rid, body.get("text", ""), expires_at,
                          body.get("max_downloads"))  # fmt: skip
    else:
        done = uc.refuse_request(ports, principal, rid, body.get("reason", ""))
    return gh.encode(done).to_dict()


def _decide(kind: str):
    def handler(services, request, groups):
        return decide_removal(services, gh.who(services, request), kind, gh.number(groups),
                              gh.body(request))  # fmt: skip

    return handler


def register(orthanc, services) -> None:
    gh.governance_policy(services)  # a broken governance policy stops Orthanc: fail closed
    _registry(services)
    gh.routes(orthanc, services, {
        "/teaching/removals": {"POST": _create, "GET": _list},
        "/teaching/removals/([0-9]+)": {"GET": _show},
        "/teaching/removals/([0-9]+)/approve": {"POST": _decide("approve")},
        "/teaching/removals/([0-9]+)/refuse": {"POST": _decide("refuse")},
    })  # fmt: skip
