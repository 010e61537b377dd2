"""/teaching/workstations/...: workstation sessions ("I am at MacLab 3"), issue 23.

    GET    /teaching/workstations/sessions        who is signed in where, now
    POST   /teaching/workstations/{name}/session  sign in there ({"minutes": N} optional)
    DELETE /teaching/workstations/{name}/session  sign out (the person, or personnel)

Decode, call the use case (archive/dicom/sessions.py, on archive/core), encode. The
DICOM front reads the sessions table at each C-MOVE/C-GET.
"""

from __future__ import annotations

from datetime import UTC, datetime

from archive.dicom import sessions
from plugins.rest import outcome, principal_of, request_json, route


def _ports(services):
    return sessions.ports_for(services.db(), services.record, services.config.policies_dir, "rest")


def answer(result) -> dict:
    """A use case's result as JSON, or its refusal as the route's answer (why and next)."""
    return outcome(result).to_dict()


def _list(services, request, **_):
    principal_of(services, request)
    table = sessions.SessionTable(services.db())
    return {"sessions": [s.to_dict() for s in table.all_active(datetime.now(UTC))]}


def _sign_in(services, request, groups, **_):
    principal = principal_of(services, request)
    minutes = request_json(request).get("minutes")
    store = services.access_store()
    return answer(sessions.start(_ports(services), store, principal, groups[0], minutes))


def _sign_out(services, request, groups, **_):
    principal = principal_of(services, request)
    return answer(sessions.sign_out(_ports(services), principal, groups[0]))


def register(orthanc, services) -> None:  # noqa: ARG001 - the adapters' signature
    sessions.SessionTable(services.db())  # the table now: a broken DB stops the start

    def bind(fn):
        return lambda **kw: fn(services, **kw)

    route(services, "/teaching/workstations/sessions", {"GET": bind(_list)})
    route(
        services,
        "/teaching/workstations/([A-Za-z0-9._-]{1,64})/session",
        {"POST": bind(_sign_in), "DELETE": bind(_sign_out)},
    )
