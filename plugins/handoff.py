"""The HTTP filter hands what it learnt about a request to the callback that serves it.

In Orthanc the filter and the REST callback of one request run on the same HTTP thread,
one after the other. The filter authenticates (password, token or web session) and
decides; the route must not authenticate again (issue 21). So the filter leaves here,
for this OS thread, the principal it let through (None for an allowed anonymous
request) and the client address, keyed by the request: (method, uri, a digest of the
Authorization header). The callback takes it once: a key that does not match (another
request), or nothing left (already taken, or the filter never ran) is no principal, and
the route refuses: fail closed, never a second authentication. The next filter call on
the thread clears whatever was left.

Keyed by OS thread id, not threading.local: orthanc-python drops thread-local data
between callbacks (see plugins/services.py `db`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

_MISSING = object()
_principals: dict[int, tuple[tuple[str, str, str], Any]] = {}
_clients: dict[int, str] = {}


def _authorization(headers: Mapping[str, Any] | None) -> str:
    for name, value in (headers or {}).items():
        if str(name).lower() == "authorization":
            return str(value)
    return ""


def request_key(method: str, uri: str, headers: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(METHOD, uri, sha256 of the Authorization header): which request a handoff is for."""
    digest = hashlib.sha256(_authorization(headers).encode("utf-8", "replace")).hexdigest()
    return str(method).upper(), str(uri), digest


def clear() -> None:
    """A new request on this thread (the filter's first act): forget the last one's."""
    ident = threading.get_ident()
    _principals.pop(ident, None)
    _clients.pop(ident, None)


def hand_over(method: str, uri: str, headers: Mapping[str, Any] | None, principal) -> None:
    """The filter let this request through as `principal` (None: anonymous)."""
    _principals[threading.get_ident()] = (request_key(method, uri, headers), principal)


def take(method: str, uri: str | None, headers: Mapping[str, Any] | None) -> tuple[bool, Any]:
    """(True, principal) once for the request the filter let through, else (False, None).

    `uri` None (a callback that was not told its uri) matches on method and Authorization
    only: the thread's handoff is still this request's, as the filter clears it first."""
    entry = _principals.pop(threading.get_ident(), None)
    if entry is None:
        return False, None
    wanted = request_key(method, entry[0][1] if uri is None else uri, headers)
    if entry[0] != wanted:
        return False, None
    return True, entry[1]


def note_client(address: str) -> None:
    """The client address the filter saw for this thread's request."""
    _clients[threading.get_ident()] = address


def client() -> str | None:
    """The client address of the request this thread is serving (None if unknown)."""
    return _clients.get(threading.get_ident())
