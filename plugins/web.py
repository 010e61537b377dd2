"""Adapter for the web interface (archive.web): Orthanc's REST callback <-> WebApp.

Thin on purpose: it translates the callback's arguments (and the principal the HTTP
filter found for the session cookie, plugins/handoff.py) into a WebRequest, answers the
WebResponse (security headers, cookies, 303 redirects) and supplies the Backend for
what needs Orthanc: pulls, removal decisions and thumbnails go through the same
functions as the /teaching REST routes, so the web and the API cannot drift apart.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from archive.web import WebApp, WebRequest
from archive.web.app import SECURITY_HEADERS
from plugins import handoff
from plugins.web_backend import OrthancBackend


def _answer(output, response) -> None:
    for name, value in response.headers:
        output.SetHttpHeader(name, value)
    if response.location is not None:
        output.SetHttpHeader("Location", response.location)
        output.SendHttpStatus(303, "", 0)
    elif response.status == 200:
        output.AnswerBuffer(response.body, response.content_type)
    else:
        output.SetHttpHeader("Content-Type", response.content_type)
        # Orthanc refuses SendHttpStatus(401) (ParameterOutOfRange: it wants
        # SendUnauthorized, whose WWW-Authenticate would pop up the browser's Basic
        # dialog): a refused sign-in or an ended session is answered 403 instead.
        # Orthanc 1.10.1 cannot send 429 either (its HttpStatus list predates RFC 6585:
        # ParameterOutOfRange): the sign-in backoff goes out as 503, the other status
        # that carries Retry-After (RFC 9110), with the same page and Retry-After header.
        status = {401: 403, 429: 503}.get(response.status, response.status)
        # orthanc-python 4.0 takes the body as str here (bytes are refused)
        output.SendHttpStatus(status, response.body.decode(), len(response.body))


def _filters_principal(method: str, uri: str, headers: dict):
    """The principal the HTTP filter found for this request's session cookie; None with
    an Authorization header (the filter's principal came from it, not the session)."""
    found, principal = handoff.take(method, uri, headers)
    if not found or "authorization" in headers:
        return None
    return principal


def register(orthanc, services) -> None:
    app = WebApp(OrthancBackend(services, orthanc))
    secure = bool(services.config.http.tls)

    def callback(output, uri, **request) -> None:
        try:
            groups = request.get("groups") or []
            query = {
                unquote_plus(k): unquote_plus(v) for k, v in (request.get("get") or {}).items()
            }
            headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
            method = str(request.get("method", ""))
            web_request = WebRequest(
                method=method,
                path=(groups[0] if groups and groups[0] else "/"),
                query=query,
                headers=headers,
                body=bytes(request.get("body") or b""),
                secure=secure,
                ip=handoff.client() or "unknown",  # sign-in backoff, viewer's suite check
                principal=_filters_principal(method, uri, headers),
            )
            _answer(output, app.handle(web_request))
        except Exception as exc:  # noqa: BLE001 - never a traceback to the browser
            orthanc.LogError(f"teaching-archive: web: {type(exc).__name__}")
            for name, value in SECURITY_HEADERS:
                output.SetHttpHeader(name, value)
            body = "internal error; see the archive's log"
            output.SendHttpStatus(500, body, len(body))

    orthanc.RegisterRestCallback("/teaching/ui(/.*)?", callback)
