"""What the governance route adapters share: ports, registration, refusal encoding.

The adapters (recipient_routes, share_routes, share_register_routes, removal_routes,
removal_export_routes, closure_routes) only decode a request, call one use case of
archive/governance/*/usecases.py and encode its answer. A use case's Refusal becomes
`{"error": why, "next": what to do}` with the status of its code (unauthenticated 401,
forbidden/training 403, not_found 404, state/conflict 409, invalid 400, unavailable 502).
Each adapter takes the `orthanc` module as a parameter: `register(orthanc, services)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

from archive.core import Ports, Refusal
from archive.errors import ArchiveError
from archive.governance.usecase import status_of
from plugins.rest import HttpError, answer_json, principal_of, request_json

_cache: dict[str, object] = {}
_lock = threading.Lock()


def cached(name: str, make: Callable[[], Any]) -> Any:
    with _lock:
        if name not in _cache:
            _cache[name] = make()
        return _cache[name]


def governance_policy(services):
    from archive.governance import load_policy

    return cached(f"policy:{services.config.policies_dir}",
                  lambda: load_policy(services.config.policies_dir))  # fmt: skip


def catalogue(services):
    from archive.catalogue import Catalogue, load_vocabulary

    vocabulary = cached("vocabulary", lambda: load_vocabulary(services.config.policies_dir))
    return Catalogue(services.db(), services.config.school_prefix, vocabulary=vocabulary)


class _AuditPort:
    def __init__(self, services) -> None:
        self.services = services

    def append(self, event) -> int:
        return self.services.record(event)


def ports(services, source: str = "rest") -> Ports:
    """The ports of a governance use case inside Orthanc: this thread's database, the
    audit log, the policies, the catalogue's answer about cases."""
    return Ports(
        db=services.db(),
        audit=_AuditPort(services),
        policies_dir=services.config.policies_dir,
        source=source,
        extra={"governance": governance_policy(services), "catalogue": catalogue(services)},
    )


def encode(result: Any) -> Any:
    """A use case's answer as the payload to send, or the refusal raised as HttpError."""
    if isinstance(result, Refusal):
        raise HttpError(status_of(result), result.reason, result.next or None)
    return result


def who(services, request):
    """The authenticated person of this request (the HTTP filter let it through)."""
    return principal_of(services, request)


def body(request) -> dict:
    return request_json(request)


def day(value: object, name: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise HttpError(400, f'"{name}" must be a date such as 2025-09-30.') from None


def number(groups) -> int:
    return int(groups[0])


def answer_error(orthanc, output, exc: Exception, what: str) -> None:
    if isinstance(exc, HttpError):
        answer_json(output, exc.payload(), exc.status)
    elif isinstance(exc, ArchiveError):
        answer_json(output, {"error": str(exc)}, 400)
    else:  # never a traceback to the client
        orthanc.LogError(f"teaching-archive: {what}: {type(exc).__name__}")
        answer_json(output, {"error": "internal error; see the archive's log"}, 500)


def routes(orthanc, services, table: dict[str, dict[str, Callable[..., Any]]]) -> None:
    """Register JSON routes: pattern -> {method: handler(services, request, groups)}."""
    for pattern, methods in table.items():
        orthanc.RegisterRestCallback(pattern, _callback(orthanc, services, pattern, methods))


def _callback(orthanc, services, pattern, methods):
    def callback(output, uri, **request) -> None:
        request["uri"] = uri  # principal_of matches the HTTP filter's handoff on it
        handler = methods.get(request.get("method", ""))
        if handler is None:
            output.SendMethodNotAllowed(",".join(sorted(methods)))
            return
        try:
            payload = handler(services, request, request.get("groups") or [])
            answer_json(output, payload)
        except Exception as exc:  # noqa: BLE001 - encoded by answer_error
            answer_error(orthanc, output, exc, pattern)

    return callback


def binary(orthanc, services, pattern: str, method: str, handler) -> None:
    """A route answering bytes: handler returns (bytes, content type, headers) or a dict."""

    def callback(output, uri, **request) -> None:
        request["uri"] = uri  # principal_of matches the HTTP filter's handoff on it
        if request.get("method") != method:
            output.SendMethodNotAllowed(method)
            return
        try:
            out = handler(services, request, request.get("groups") or [])
            if isinstance(out, dict):
                answer_json(output, out)
                return
            data, content_type, headers = out
            for name, value in headers.items():
                output.SetHttpHeader(name, value)
            output.AnswerBuffer(data, content_type)
        except Exception as exc:  # noqa: BLE001 - encoded by answer_error
            answer_error(orthanc, output, exc, pattern)

    orthanc.RegisterRestCallback(pattern, callback)


def now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
