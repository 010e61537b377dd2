"""The browser viewer's pages: OHIF's files under /teaching/ui/viewer/ and the archive's
DICOMweb under /teaching/ui/dicomweb/ (archive/dicomweb), both behind the HTTP filter
and the web session (same origin: the HttpOnly session cookie, Path=/teaching/ui, is
what authenticates the viewer's requests; nothing is put in its URLs).

The viewer's files are OHIF v3's prebuilt dist as ops/ohif/install.py installed it in
vendor/ohif (ARCHIVE_VIEWER_DIR overrides). They are the same for everyone and hold no
data, but are still served only to a signed-in person (GET /teaching/ui/** in
routes.toml). The viewer page gets its own Content-Security-Policy: OHIF needs inline
styles, WebAssembly (its image decoders) and blob: workers, still nothing from other
origins; it may be framed by the archive's own pages (teaching sessions).
"""

from __future__ import annotations

import mimetypes
import os
import re
from functools import lru_cache
from pathlib import Path

from archive.core import Ports
from archive.dicomweb import DicomWeb, Request, load_viewer_policy
from archive.paths import REPO_ROOT
from archive.web.app import Context, WebApp, WebResponse, route

VIEWER_DIR_ENV = "ARCHIVE_VIEWER_DIR"
VIEWER = "/teaching/ui/viewer"
VIEWER_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self' data: blob:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ico": "image/x-icon",
    ".png": "image/png",
}
HASHED = re.compile(r"\.(bundle\.[0-9a-f]{8,}\.js|[0-9a-f]{16}\.wasm)\Z|^[0-9a-f]{16}\.wasm\Z")


def viewer_dir() -> Path:
    return Path(os.environ.get(VIEWER_DIR_ENV) or REPO_ROOT / "vendor" / "ohif")


@lru_cache(maxsize=256)
def _static(root: str, rel: str) -> tuple[bytes, str] | None:
    base = Path(root).resolve()
    path = (base / rel).resolve()
    if base not in path.parents or not path.is_file():
        return None
    kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return path.read_bytes(), kind or "application/octet-stream"


def viewer_headers(cache: bool) -> list[tuple[str, str]]:
    return [
        ("Content-Security-Policy", VIEWER_CSP),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("Cache-Control", "private, max-age=86400, immutable" if cache else "no-cache"),
    ]


@route("GET", r"/viewer(/[A-Za-z0-9._/-]*)?")
def _viewer_file(app: WebApp, ctx: Context, groups) -> WebResponse:
    root = viewer_dir()
    if not (root / "index.html").is_file():
        return WebResponse(503, b"The viewer is not installed on this archive: run "
                           b"`make setup` (it installs OHIF into vendor/ohif), then reload.",
                           "text/plain; charset=utf-8")  # fmt: skip
    rel = (groups[0] or "/").lstrip("/")
    found = _static(str(root), rel) if rel else None
    if found is None:
        if "." in rel.rsplit("/", 1)[-1]:
            return WebResponse(404, b"no such file in the viewer", "text/plain; charset=utf-8")
        found = _static(str(root), "index.html")  # the viewer's own routes (SPA)
        assert found is not None
    body, kind = found
    name = rel.rsplit("/", 1)[-1]
    return WebResponse(200, body, kind, headers=viewer_headers(bool(HASHED.search(name))))


class _Audit:
    def __init__(self, record) -> None:
        self.append = record


def _dicomweb(app: WebApp) -> DicomWeb:
    service = getattr(app, "_dicomweb", None)
    if service is None:
        service = DicomWeb(load_viewer_policy(app.backend.policies_dir))
        app._dicomweb = service  # type: ignore[attr-defined]
    return service


def ports_of(app: WebApp) -> Ports:
    return Ports(db=app.backend.db(), audit=_Audit(app.backend.record),
                 policies_dir=app.backend.policies_dir, source="web")  # fmt: skip


@route("GET", r"/dicomweb(/[A-Za-z0-9.,/]*)")
def _dicomweb_route(app: WebApp, ctx: Context, groups) -> WebResponse:
    catalogue = app.backend.catalogue(ctx.principal)
    request = Request(
        path=groups[0],
        query=ctx.request.query,
        principal=ctx.principal,
        session=ctx.session_id,
        ip=ctx.request.ip,
        ports=ports_of(app),
        find_case=catalogue.case_for_study,
        ledger=app.backend.ledger(),
        read=app.backend.read_dicom,
    )
    answer = _dicomweb(app).handle(request)
    headers = [*answer.headers, ("Cache-Control", "private, no-store")]
    return WebResponse(answer.status, answer.body, answer.content_type, headers=headers)
