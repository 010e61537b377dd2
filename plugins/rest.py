"""Shared glue for the archive's own REST routes (/teaching/...).

The HTTP filter has already authenticated and authorised the request (deny by default)
before a route callback runs, and handed its principal over (plugins/handoff.py):
`principal_of` takes it, and never authenticates again; without a handoff for this
request it refuses (fail closed). Domain errors become JSON answers with a clear
message; nothing else escapes as a traceback. `route` registers through the `orthanc`
module the bootstrap put on the services (`services.orthanc`): no `import orthanc` here.

Every refusal a route answers is `{"error": why, "next": what to do}` with its status
(issue 21): `answer_json` adds the "next" step for the status when the route gave none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from archive.errors import ArchiveError
from plugins import handoff


class HttpError(Exception):
    """A refusal: the HTTP status, why (`message`) and what the caller can do (`next`)."""

    def __init__(self, status: int, message: str, next: str | None = None) -> None:  # noqa: A002
        super().__init__(message)
        self.status = status
        self.message = message
        self.next = next or NEXT_STEP.get(status, NEXT_STEP[500])

    def payload(self) -> dict[str, str]:
        return {"error": self.message, "next": self.next}


# What to do next, by status, when a refusal does not say it more precisely.
NEXT_STEP = {
    400: "correct the request as the error says and send it again.",
    401: "authenticate as yourself: your user name and password, or your own API token.",
    403: "ask school personnel for the role or training this needs, or ask a person who "
    "holds it to act in their own session.",
    404: "check the number or name; list what exists first.",
    405: "use the method the route names.",
    409: "do the step the error names first, then try again.",
    500: "nothing was changed that the error does not name; see the archive's log "
    "(Orthanc's log under run/) and tell the administrator.",
    502: "check that the receiving node is up and accepts the archive, then try again.",
}


# A use case's refusal code -> the HTTP status a route answers it with (issue 21).
REFUSAL_STATUS = {
    "unauthenticated": 401,
    "training": 403,
    "forbidden": 403,
    "not_found": 404,
    "state": 409,
    "conflict": 409,
    "invalid": 400,
    "failed": 500,
    "unavailable": 502,
}


def outcome(result: Any) -> Any:
    """A use case's result, or its Refusal raised as the HttpError the route answers:
    `{"error": reason, "next": next step}` with the status of the refusal's code."""
    from archive.core import Refusal

    if isinstance(result, Refusal):
        status = REFUSAL_STATUS.get(result.code, 403)
        raise HttpError(status, result.reason, result.next or None)
    return result


def refusal(status: int, message: str, next: str | None = None) -> dict[str, str]:  # noqa: A002
    """The JSON body of a refusal: {"error": why, "next": what to do}."""
    return HttpError(status, message, next).payload()


def answer_json(output, payload: Any, status: int = 200) -> None:
    if status >= 400 and isinstance(payload, dict) and "error" in payload:
        payload = {**payload, "next": payload.get("next") or refusal(status, "")["next"]}
    body = json.dumps(payload, default=str)
    if status == 200:
        output.AnswerBuffer(body, "application/json")
    else:
        output.SendHttpStatus(status, body, len(body))


def request_json(request: dict) -> dict:
    body = request.get("body") or b""
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise HttpError(400, "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise HttpError(400, "The request body must be a JSON object.")
    return value


def principal_of(services, request: dict):  # noqa: ARG001 - the routes' signature
    """The authenticated user of this request, as the HTTP filter handed it over.

    Taken once from the handoff and kept on the request (a route may ask twice). The
    handoff is keyed by method, uri (when the request carries it: `route` adds it) and
    the Authorization header's digest; no handoff, or an anonymous one, is a 401."""
    if "principal" in request:
        principal = request["principal"]
    else:
        method = str(request.get("method", ""))
        headers = request.get("headers") or {}
        found, principal = handoff.take(method, request.get("uri"), headers)
        request["principal"] = principal if found else None
    if principal is None:
        raise HttpError(401, "authentication required: the credentials were refused.")
    return principal


def route(services, pattern: str, methods: dict[str, Callable[..., Any]]) -> None:
    """Register one REST callback dispatching by method; handlers return JSON payloads."""
    orthanc = services.orthanc

    def callback(output, uri, **request) -> None:
        request["uri"] = uri  # principal_of matches the filter's handoff on it
        handler = methods.get(request.get("method", ""))
        if handler is None:
            output.SendMethodNotAllowed(",".join(sorted(methods)))
            return
        try:
            payload = handler(uri=uri, request=request, groups=request.get("groups") or [])
            answer_json(output, payload)
        except HttpError as exc:
            answer_json(output, exc.payload(), exc.status)
        except ArchiveError as exc:
            answer_json(output, refusal(400, str(exc)), 400)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            orthanc.LogError(f"teaching-archive: {uri}: {type(exc).__name__}")
            answer_json(output, refusal(500, "internal error; see the archive's log"), 500)

    orthanc.RegisterRestCallback(pattern, callback)


def audit_as(services, action, principal, outcome, target=None, **detail) -> None:
    """One audit record for an action a named user took through a /teaching route."""
    from archive.audit import AuditEvent

    services.record(
        AuditEvent(
            action=action,
            outcome=outcome,
            actor=principal.user,
            roles=tuple(principal.roles),
            source="rest",
            target=target,
            detail=detail,
        )
    )
