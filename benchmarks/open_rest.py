"""Benchmarks only: an open HTTP filter, the reference bench_auth.py measures the real
one against, and what tests that inspect Orthanc's own REST API start with.

Registered in place of plugins/http_filter.py by benchmarks/plugin_entry.py when
ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER=1; the production plugin has no such switch. Every
request is allowed and nothing is decided or audited per request; a /teaching request
with credentials is authenticated so that its route gets the caller's principal, as
from the real filter (plugins/handoff.py). Loud: an error line in Orthanc's log and a
`security.filter_disabled` audit record; refused on an archive reachable from the
network.
"""

from __future__ import annotations

from datetime import UTC, datetime

from archive.access import AuthFailure, authenticate_headers
from archive.audit import AuditEvent
from benchmarks.passthrough_storage import refuse_unless_loopback
from plugins import handoff

ENV = "ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER"
METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}


def register(orthanc, services) -> None:
    refuse_unless_loopback(services, ENV)
    orthanc.LogError(
        "teaching-archive: WARNING: THE HTTP ACCESS FILTER IS DISABLED "
        f"({ENV}=1, benchmark entry). Orthanc's REST API is open to anyone who can reach "
        "it. This is for benchmarks only; start the archive without it."
    )
    services.record(
        AuditEvent(
            action="security.filter_disabled",
            outcome="failure",
            actor="system",
            detail={"reason": f"{ENV}=1 in the environment of Orthanc (benchmark entry)"},
        )
    )

    def open_filter(uri, method=None, ip=None, headers=None, get=None, **_ignored) -> bool:
        try:
            handoff.clear()
            handoff.note_client(str(ip or "unknown"))
            headers = headers or {}
            name = METHODS.get(int(method), str(method))
            principal = None
            if str(uri).startswith("/teaching/") and "authorization" in headers:
                result = authenticate_headers(services.access_store(), headers, datetime.now(UTC))
                principal = None if isinstance(result, AuthFailure) else result
            handoff.hand_over(name, str(uri), headers, principal)
        except Exception:  # noqa: BLE001, S110 - open anyway: this is the open reference
            pass
        return True

    orthanc.RegisterIncomingHttpRequestFilter(open_filter)
