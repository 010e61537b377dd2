"""Shared glue for the archive's own REST routes (/teaching/...).

The HTTP filter has already authenticated and authorised the request (deny by default)
before a route callback runs; callbacks re-read the principal from the same headers
(cheap: the access room caches verified credentials) because orthanc-python hands no
user name to REST callbacks. Domain errors become JSON answers with a clear message;
nothing else escapes as a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orthanc

from archive.errors import ArchiveError


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def answer_json(output, payload: Any, status: int = 200) -> None:
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


def principal_of(services, request: dict):
    """The authenticated user of this request (the filter already let it through)."""
    from archive.access import AuthFailure, authenticate_headers

    store = services.access_store()
    result = authenticate_headers(store, request.get("headers") or {}, datetime.now(UTC))
    if isinstance(result, AuthFailure):
        raise HttpError(401, "Authentication required.")
    return result


def route(services, pattern: str, methods: dict[str, Callable[..., Any]]) -> None:
    """Register one REST callback dispatching by method; handlers return JSON payloads."""

    def callback(output, uri, **request) -> None:
        handler = methods.get(request.get("method", ""))
        if handler is None:
            output.SendMethodNotAllowed(",".join(sorted(methods)))
            return
        try:
            payload = handler(uri=uri, request=request, groups=request.get("groups") or [])
            answer_json(output, payload)
        except HttpError as exc:
            answer_json(output, {"error": exc.message}, exc.status)
        except ArchiveError as exc:
            answer_json(output, {"error": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            orthanc.LogError(f"teaching-archive: {uri}: {type(exc).__name__}")
            answer_json(output, {"error": "internal error; see the archive's log"}, 500)

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
