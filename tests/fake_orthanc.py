"""A stand-in for the `orthanc` module, so that plugin adapters get unit tests (issue 21).

Plugins take the `orthanc` module as a parameter (`register(orthanc, runtime)`); a test
passes a `FakeOrthanc()` instead and calls the registered routes with `call()`:

    fake = FakeOrthanc()
    cases_routes.register(fake, services)
    answer = fake.call("GET", "/teaching/cases", headers={...}, principal=principal)
    assert answer.status == 200 and answer.json()["cases"] == [...]

`principal=` stands in for the HTTP filter: the route is handed that principal as the
filter would hand it (plugins/handoff.py). With the real filter registered
(`http_filter.register(fake, services)`), `call` runs it first, as Orthanc does.

Only what the adapters use is here. Any `RestApi*` call fails the test unless the test
sets `fake.rest_api` (a dict of (method, uri) -> bytes) for it: no adapter may wait on
Orthanc from a callback without the test saying so.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any

_NO_PRINCIPAL = object()


class HttpMethod(enum.IntEnum):
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4


class ChangeType(enum.IntEnum):
    COMPLETED_SERIES = 0
    DELETED = 1
    NEW_CHILD_INSTANCE = 2
    NEW_INSTANCE = 3
    NEW_PATIENT = 4
    NEW_SERIES = 5
    NEW_STUDY = 6
    STABLE_PATIENT = 7
    STABLE_SERIES = 8
    STABLE_STUDY = 9
    ORTHANC_STARTED = 10
    ORTHANC_STOPPED = 11


class ReceivedInstanceAction(enum.IntEnum):
    KEEP_AS_IS = 1
    MODIFY = 2
    DISCARD = 3


class InstanceOrigin(enum.IntEnum):
    UNKNOWN = 1
    DICOM_PROTOCOL = 2
    REST_API = 3
    PLUGIN = 4
    LUA = 5
    WEB_DAV = 6


@dataclass
class Answer:
    """What a route sent back."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    allowed: str | None = None  # set by SendMethodNotAllowed

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class FakeOutput:
    def __init__(self) -> None:
        self.answer = Answer()
        self._sent = False

    def _once(self) -> None:
        if self._sent:
            raise AssertionError("the route answered twice")
        self._sent = True

    def AnswerBuffer(self, body: bytes | str, content_type: str) -> None:  # noqa: N802
        self._once()
        self.answer.body = body.encode() if isinstance(body, str) else bytes(body)
        self.answer.content_type = content_type

    def SendHttpStatus(self, status: int, body: bytes | str = b"", *_: Any) -> None:  # noqa: N802
        self._once()
        self.answer.status = status
        self.answer.body = body.encode() if isinstance(body, str) else bytes(body)

    def SendHttpStatusCode(self, status: int) -> None:  # noqa: N802
        self.SendHttpStatus(status)

    def SendMethodNotAllowed(self, allowed: str) -> None:  # noqa: N802
        self._once()
        self.answer.status = 405
        self.answer.allowed = allowed

    def SetHttpHeader(self, name: str, value: str) -> None:  # noqa: N802
        self.answer.headers[name] = value

    def Redirect(self, location: str) -> None:  # noqa: N802
        self._once()
        self.answer.status = 301
        self.answer.headers["Location"] = location


class FakeOrthanc:
    """Registers callbacks as Orthanc does and lets a test call them."""

    HttpMethod = HttpMethod
    ChangeType = ChangeType
    ReceivedInstanceAction = ReceivedInstanceAction
    InstanceOrigin = InstanceOrigin

    def __init__(self, configuration: dict[str, Any] | None = None) -> None:
        self.routes: list[tuple[re.Pattern[str], Any]] = []
        self.filter: Any = None
        self.on_change: Any = None
        self.received: Any = None
        self.storage: tuple[Any, Any, Any] | None = None
        self.configuration = configuration or {}
        self.rest_api: dict[tuple[str, str], bytes] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.infos: list[str] = []

    # -- registration --------------------------------------------------------------
    def RegisterRestCallback(self, pattern: str, callback: Any) -> None:  # noqa: N802
        self.routes.append((re.compile(pattern + r"\Z"), callback))

    def RegisterIncomingHttpRequestFilter(self, callback: Any) -> None:  # noqa: N802
        self.filter = callback

    def RegisterOnChangeCallback(self, callback: Any) -> None:  # noqa: N802
        self.on_change = callback

    def RegisterReceivedInstanceCallback(self, callback: Any) -> None:  # noqa: N802
        self.received = callback

    def RegisterStorageArea(self, create: Any, read: Any, remove: Any) -> None:  # noqa: N802
        self.storage = (create, read, remove)

    def GetConfiguration(self) -> str:  # noqa: N802
        return json.dumps(self.configuration)

    # -- logs ------------------------------------------------------------------------
    def LogError(self, text: str) -> None:  # noqa: N802
        self.errors.append(text)

    def LogWarning(self, text: str) -> None:  # noqa: N802
        self.warnings.append(text)

    def LogInfo(self, text: str) -> None:  # noqa: N802
        self.infos.append(text)

    # -- the REST API of Orthanc itself: refused unless the test provides it -----------
    def _rest(self, method: str, uri: str) -> bytes:
        try:
            return self.rest_api[(method, uri)]
        except KeyError:
            raise AssertionError(f"unexpected orthanc.RestApi{method} {uri}") from None

    def RestApiGet(self, uri: str) -> bytes:  # noqa: N802
        return self._rest("Get", uri)

    def RestApiPost(self, uri: str, body: bytes | str = b"") -> bytes:  # noqa: N802
        return self._rest("Post", uri)

    def RestApiDelete(self, uri: str) -> None:  # noqa: N802
        self._rest("Delete", uri)

    # -- calling a route as Orthanc would -------------------------------------------
    def call(
        self,
        method: str,
        uri: str,
        *,
        body: bytes | str | dict | None = None,
        headers: dict[str, str] | None = None,
        get: dict[str, str] | None = None,
        ip: str = "127.0.0.1",
        principal: Any = _NO_PRINCIPAL,
    ) -> Answer:
        """Run the filter (if registered) and the first matching route; return its answer.

        `principal` (None for anonymous): hand it to the route as the filter would,
        without running a filter."""
        path = uri.split("?", 1)[0]
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        if isinstance(body, dict):
            body = json.dumps(body)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        if principal is not _NO_PRINCIPAL:
            from plugins import handoff

            handoff.clear()
            handoff.note_client(ip)
            handoff.hand_over(method.upper(), path, hdrs, principal)
        elif self.filter is not None:
            ok = self.filter(
                uri=path,
                method=getattr(HttpMethod, method.upper()),
                ip=ip,
                headers=hdrs,
                get=get or {},
            )
            if not ok:
                return Answer(status=403)
        for pattern, callback in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            output = FakeOutput()
            request = {
                "method": method.upper(),
                "groups": match.groups(),
                "headers": hdrs,
                "get": get or {},
                "body": raw,
                "ip": ip,
            }
            callback(output, path, **request)
            return output.answer
        return Answer(status=404)
