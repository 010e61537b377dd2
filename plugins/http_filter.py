"""The HTTP filter: every request is authenticated, decided against the route policy and
audited before Orthanc (or a /teaching route) sees it. Deny by default.

orthanc-python 4.0 calls `filter(uri, method=, ip=, headers=, get=)` and only lets us
answer True/False: a refusal is Orthanc's 403 for every reason (no credentials, wrong
password, locked, no rule); the reason goes to the audit log, never to the caller.

The filter must never raise (a raise becomes a 500 and a traceback in Orthanc's log):
any internal error - database, policy, audit log unwritable - denies the request and
logs one line (fail closed). It never calls orthanc.RestApi* (leaks memory in 4.0).

Failed credentials back off per (account, client address) and per address
(archive/access/throttle.py): a client in its backoff is refused before its password is
checked, audited as auth.login denied with reason "throttled" and retry_after. The
filter can only answer 403 (no 429, no Retry-After header: orthanc-python 4.0); the web
sign-in form, which runs as a REST callback, answers with Retry-After (503: see
plugins/web.py). The client
address is noted per thread (`client_of_this_request`) for that callback, which runs
next on the same Orthanc thread and is not told the address by orthanc-python 4.0.

`ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER=1` in Orthanc's environment skips registering the
filter, for benchmarks/bench_auth.py only: Orthanc is then wide open to anyone who can
reach it, so this is logged as an error at start and audited as `security.filter_disabled`.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

import orthanc

from archive.access import (
    AuthFailure,
    CachedDecider,
    Decision,
    auth_event,
    authenticate_headers,
    decision_event,
)
from archive.audit import AuditEvent
from archive.dicom.forward import FRONT_SECRET_ENV, from_front
from archive.errors import ConfigError
from archive.serve.orthanc_config import LOOPBACK
from archive.serve.tls_proxy import SECRET_ENV, client_address
from archive.web.sessions import principal_for_cookie
from plugins.uploaders import note_dicom_front, note_uploader

DISABLE_ENV = "ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER"
_clients: dict[int, str] = {}  # OS thread id -> client address of its current request


def client_of_this_request() -> str | None:
    """The client address the filter saw for the request this thread is serving (the
    REST callback runs on the filter's thread, right after it)."""
    return _clients.get(threading.get_ident())


def make_filter(services, proxy_secret: str | None = None, front_secret: str | None = None):
    """The filter callback, closed over the services (separate from register for tests).

    `proxy_secret` is the TLS terminator's per-serve secret: with it, the client address
    nginx forwards is believed for the audit (archive/tls_proxy.py); without it, or on a
    request not from 127.0.0.1 with that secret, the address Orthanc saw is audited.

    `front_secret` is the DICOM front's per-serve secret (archive/dicom/forward.py): a
    POST /instances from 127.0.0.1 carrying it is a C-STORE the front has admitted,
    scanned and audits itself with its outcome; nothing else is opened to it."""
    policy = services.route_policy
    decider = CachedDecider(policy)
    record = services.record
    # orthanc.HttpMethod values (GET = 1, POST = 2, PUT = 3, DELETE = 4 in 4.0)
    method_names = {
        int(getattr(orthanc.HttpMethod, name, default)): name
        for name, default in (("GET", 1), ("POST", 2), ("PUT", 3), ("DELETE", 4))
    }

    def decide_request(uri: str, method: str, ip: str, headers: dict) -> bool:
        front_aet = None
        if method == "POST" and uri == "/instances":
            front_aet = from_front(ip, headers, front_secret)
        note_dicom_front(front_aet)  # never a stale note for another request on this thread
        if front_aet is not None:
            note_uploader(None)
            return True
        ip = client_address(ip, headers, proxy_secret)
        _clients[threading.get_ident()] = ip
        store = services.access_store()
        result = authenticate_headers(store, headers or {}, datetime.now(UTC), address=ip)
        principal = None
        if isinstance(result, AuthFailure) and result.reason == "no_credentials":
            if uri == "/teaching/ui" or uri.startswith("/teaching/ui/"):  # web session cookie
                cookie = next((v for k, v in headers.items() if k.lower() == "cookie"), None)
                result = principal_for_cookie(store, cookie, datetime.now(UTC)) or result
        if isinstance(result, AuthFailure):
            if result.reason != "no_credentials":
                record(auth_event(result, ip))
                decision = Decision(False, f"authentication failed ({result.reason})")
                record(decision_event(None, method, uri, decision, ip, policy.version))
                return False
        else:
            principal = result
        decision = decider(principal, method, uri)
        record(decision_event(principal, method, uri, decision, ip, policy.version))
        if decision.allowed and method == "POST" and uri == "/instances":
            # The received-instance callback runs next on this thread: it records who
            # ingested, so a quarantine release by the same person can be refused.
            note_uploader(principal.user if principal else None)
        return decision.allowed

    def http_filter(uri, method=None, ip=None, headers=None, get=None, **_ignored) -> bool:
        try:
            try:
                name = method_names.get(int(method), "UNKNOWN")
            except (TypeError, ValueError):
                name = str(method).upper()
            return decide_request(str(uri), name, str(ip or "unknown"), headers or {})
        except Exception as exc:  # noqa: BLE001 - the filter must never raise
            try:
                orthanc.LogError(
                    f"teaching-archive: HTTP filter error, request denied: {type(exc).__name__}"
                )
            except Exception:  # noqa: BLE001, S110
                pass
            return False

    return http_filter


def register(services) -> None:
    if os.environ.get(DISABLE_ENV) == "1":
        if services.config.http.host not in LOOPBACK or services.config.http.tls:
            # Never on an archive reachable from the network: refuse to start instead.
            raise ConfigError(
                f"{DISABLE_ENV}=1 is only accepted on a loopback-only archive "
                "(http.host 127.0.0.1, no TLS); unset it and restart"
            )
        orthanc.LogError(
            "teaching-archive: WARNING: THE HTTP ACCESS FILTER IS DISABLED "
            f"({DISABLE_ENV}=1). Orthanc's REST API is open to anyone who can reach it. "
            "This is for benchmarks only; unset it and restart."
        )
        services.record(
            AuditEvent(
                action="security.filter_disabled",
                outcome="failure",
                actor="system",
                detail={"reason": f"{DISABLE_ENV}=1 in the environment of Orthanc"},
            )
        )
        return
    services.access_store()  # build the shared store and migrate before serving
    _ = services.route_policy  # a broken policy stops the start (fail closed)
    # Read once and removed from the environment: nothing Orthanc starts inherits it.
    proxy_secret = os.environ.pop(SECRET_ENV, None) or None
    front_secret = os.environ.pop(FRONT_SECRET_ENV, None) or None
    orthanc.RegisterIncomingHttpRequestFilter(make_filter(services, proxy_secret, front_secret))
