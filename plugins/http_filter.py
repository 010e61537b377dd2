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
plugins/web.py).

The filter hands what it learnt to the callback that serves the request next on the
same Orthanc thread (plugins/handoff.py): the principal it let through, so no route
authenticates again, and the client address (orthanc-python 4.0 tells callbacks none).
There is no switch to turn the filter off: every adapter is mandatory
(plugins/bootstrap.py); benchmarks that compare against an open Orthanc use their own
entry file (benchmarks/plugin_entry.py).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from archive.access import (
    AuthFailure,
    CachedDecider,
    Decision,
    auth_event,
    authenticate_headers,
    decision_event,
)
from archive.dicom.forward import FRONT_SECRET_ENV, from_front
from archive.serve.tls_proxy import SECRET_ENV, client_address
from archive.web.sessions import principal_for_cookie
from plugins import handoff
from plugins.uploaders import note_dicom_front, note_uploader


def make_filter(
    orthanc, services, proxy_secret: str | None = None, front_secret: str | None = None
):
    """The filter callback, closed over the services (separate from register for tests).

    `proxy_secret` is the TLS terminator's per-serve secret: with it, the client address
    nginx forwards is believed for the audit (archive/serve/tls_proxy.py); without it, or on a
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
        handoff.clear()  # nothing of the thread's previous request reaches this one
        front_aet = None
        if method == "POST" and uri == "/instances":
            front_aet = from_front(ip, headers, front_secret)
        note_dicom_front(front_aet)  # never a stale note for another request on this thread
        if front_aet is not None:
            note_uploader(None)
            return True
        ip = client_address(ip, headers, proxy_secret)
        handoff.note_client(ip)
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
        if decision.allowed:  # the route takes it instead of authenticating again
            handoff.hand_over(method, uri, headers, principal)
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


def register(orthanc, services) -> None:
    services.access_store()  # build the shared store and migrate before serving
    _ = services.route_policy  # a broken policy stops the start (fail closed)
    # Read once and removed from the environment: nothing Orthanc starts inherits it.
    proxy_secret = os.environ.pop(SECRET_ENV, None) or None
    front_secret = os.environ.pop(FRONT_SECRET_ENV, None) or None
    orthanc.RegisterIncomingHttpRequestFilter(
        make_filter(orthanc, services, proxy_secret, front_secret)
    )
