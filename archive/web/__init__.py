"""The web interface: server-rendered, accessible HTML for trainers, approvers, the Board
and personnel, served under /teaching/ui by plugins/web.py.

Plain Python (no Orthanc): `app.WebApp` turns a `WebRequest` into a `WebResponse`; the
plugin only translates Orthanc's callback arguments and supplies a `Backend` for what
needs Orthanc (pulls, thumbnails, statistics). Sessions live in `web_sessions`
(`sessions`), every value is escaped by `markup.render`.
"""

from archive.web.app import Backend, WebApp, WebError, WebRequest, WebResponse
from archive.web.sessions import SessionStore, principal_for_cookie

__all__ = [
    "Backend",
    "SessionStore",
    "WebApp",
    "WebError",
    "WebRequest",
    "WebResponse",
    "principal_for_cookie",
]
