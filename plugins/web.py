"""Adapter for the web interface (archive.web): Orthanc's REST callback <-> WebApp.

Thin on purpose: it translates the callback's arguments (and the principal the HTTP
filter found for the session cookie, plugins/handoff.py) into a WebRequest, answers the
WebResponse (security headers, cookies, 303 redirects) and supplies the Backend for
what needs Orthanc: pulls, removal decisions and thumbnails go through the same
functions as the /teaching REST routes, so the web and the API cannot drift apart.
"""

from __future__ import annotations

from functools import cached_property
from urllib.parse import unquote_plus

from archive.web import WebApp, WebError, WebRequest
from archive.web.app import SECURITY_HEADERS
from plugins import handoff
from plugins.rest import HttpError


class OrthancBackend:
    def __init__(self, services, orthanc=None) -> None:
        self.services = services
        self.home = services.home
        self.orthanc = orthanc  # for the one call that must store into Orthanc (release)

    @property
    def route_policy(self):
        return self.services.route_policy

    @property
    def policies_dir(self):
        return self.services.config.policies_dir

    @cached_property
    def governance_policy(self):
        from plugins.governance_http import governance_policy

        return governance_policy(self.services)

    @property
    def volume_kind(self):
        return self.services.config.volume.kind

    def db(self):
        return self.services.db()

    def access_store(self):
        return self.services.access_store()

    def record(self, event) -> int:
        return self.services.record(event)

    def quarantine(self):
        return self.services.quarantine()

    def catalogue(self, principal):
        """The catalogue for reading alongside another act (e.g. cases of a removal)."""
        return self.catalogue_room().catalogue()

    def catalogue_room(self):
        """The catalogue's use cases, audited as acts from the web."""
        from plugins.rooms import catalogue_room

        return catalogue_room(self.services, source="web")

    def pull_room(self):
        """The pull use cases, audited as acts from the web."""
        from plugins.pulls_routes import pull_room

        return pull_room(self.services, source="web")

    def thumbnail(self, principal, case_id, number, size=None):
        from archive.render import THUMBNAIL_SIZE
        from plugins.cases_routes import thumbnail_png

        try:
            return thumbnail_png(self.services, principal, case_id, number, source="web",
                                 size=size or THUMBNAIL_SIZE)  # fmt: skip
        except HttpError as exc:
            raise WebError(exc.status, f"{exc.message} {exc.next}".strip()) from None

    # -- the viewer (issue 22): DICOMweb from the vault, never orthanc.RestApi* ----------
    def ledger(self):
        return self.services.ledger()

    def read_dicom(self, entry) -> bytes:
        from plugins.vault_files import read_entry

        return read_entry(self.services, entry)

    # -- issue 22: the web for every role ----------------------------------------------
    def _refused(self, exc: HttpError) -> WebError:
        return WebError(exc.status, f"{exc.message} {exc.next or ''}".strip())

    def release_quarantine(self, principal, item_id, note):
        from plugins.quarantine_routes import release_for

        try:
            return release_for(self.orthanc, self.services, principal, item_id, note,
                               source="web")  # fmt: skip
        except HttpError as exc:
            raise self._refused(exc) from None

    def export_removal(self, principal, rid, body):
        """(package, reference): one download spent as on GET /teaching/removals/N/download."""
        from plugins.removal_export_routes import export_package

        try:
            package, _mime, headers = export_package(self.services, principal, rid, body)
        except HttpError as exc:
            raise self._refused(exc) from None
        reference = headers["Content-Disposition"].split('filename="', 1)[1].split(".tar")[0]
        return package, reference

    def undertaking_store(self):
        from plugins.share_routes import _vault

        return _vault(self.services)

    def workstations(self) -> list[str]:
        from archive.access.nodes import workstations

        return sorted(workstations(self.db()).all())

    def archive_totals(self) -> tuple[int, int]:
        """Instances and bytes stored, from the vault's ledger (never orthanc.RestApi*,
        ops/NO-RESTAPI.md)."""
        ledger = self.services.ledger()
        return ledger.counts()["instances"], ledger.total_size()


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
