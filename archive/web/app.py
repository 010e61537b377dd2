"""The web interface as plain Python: a WebRequest in, a WebResponse out.

Authorisation: the HTTP filter has already let the request through by route (GET pages
for every role, specific POSTs by role). Each page asks the one authorisation
(archive.core.authorise) about the actions it fronts (`PAGES`), and each act calls the
same use case as the REST route (issue 21), so the interface never grants more than the
use cases do; refusals are pages with the reason and the next step, and are audited.
Every POST needs the session's CSRF token; the sign-in form needs its own token bound to
a pre-session cookie (sessions.py). Failed sign-ins back off per
(account, client address) and per address: a client in its backoff gets 429 with
Retry-After and the reason (plugins/web.py sends it as 503, Orthanc 1.10.1 having no
429), and nothing locks the account itself (archive/access/throttle.py). Nothing
secret goes in a URL: the login form posts, search parameters are only catalogue
filters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode

from archive.access import AuthFailure, Principal
from archive.audit import AuditEvent
from archive.errors import ArchiveError
from archive.web import views
from archive.web.markup import Markup, page
from archive.web.sessions import (
    LOGIN_COOKIE,
    Session,
    SessionStore,
    check_csrf,
    clear_cookie,
    clear_login_cookie,
    cookie_header_of,
    new_login_nonce,
    principal_of_session,
    session_id_from,
    set_cookie,
    set_login_cookie,
    valid_nonce,
)

UI = "/teaching/ui"
MAX_FORM = 64 * 1024
SECURITY_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
     "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)  # fmt: skip

# page -> the actions it fronts (any one suffices): the one authorisation
# (archive.core.authorise, policies/access/actions.toml) decides who may open it, so the
# interface never grants more than the use cases behind it (issue 21).
PAGES: dict[str, tuple[str, ...]] = {
    "cases": ("case.view",),
    "teach/today": ("case.view",),  # the case of the day (issue 22)
    "removals": ("removal.request",),
    "approvals": ("removal.approve",),
    "shares": ("share.vote",),
    "users": ("user.manage", "user.training"),
    "quarantine": ("quarantine.view",),
    "audit": ("audit.view",),
    "closure": ("closure.view",),
    "pull": ("pull.create",),
    "workstation": ("workstation.sign_in",),  # archive/web/workstation.py (issue 23)
    # -- issue 22: the web for every role (archive/web/editing.py, board.py, ...)
    "collections": ("collection.view",),
    "board": ("share.propose", "share.undertaking"),
}
# A refusal's code -> the status of the page that shows it.
REFUSAL_STATUS = {"unauthenticated": 401, "not_found": 404, "state": 409, "conflict": 409,
                  "invalid": 400, "failed": 500, "unavailable": 502}  # fmt: skip


class WebError(Exception):
    """A refusal shown to the user as a page with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def outcome(result: Any) -> Any:
    """A use case's result, or its Refusal shown as a page: the reason and what to do."""
    from archive.core import Refusal

    if isinstance(result, Refusal):
        reason = result.reason[:1].upper() + result.reason[1:]
        message = f"{reason.rstrip('.')}. {result.next}".strip()
        raise WebError(REFUSAL_STATUS.get(result.code, 403), message)
    return result


@dataclass
class WebRequest:
    method: str
    path: str  # below /teaching/ui, e.g. "/cases/ABC"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lowercase names
    body: bytes = b""
    secure: bool = False
    ip: str = "unknown"
    # The principal the HTTP filter already found for this request's session cookie
    # (plugins/handoff.py): used instead of checking the session's account again.
    principal: Principal | None = None


@dataclass
class WebResponse:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    location: str | None = None  # a 303 redirect target


class Backend(Protocol):
    """What the interface needs from the running archive (plugins/web.py supplies it)."""

    home: Any
    route_policy: Any
    governance_policy: Any
    policies_dir: Any  # the action policy (archive.core) is read from here

    def db(self): ...
    def access_store(self): ...
    def record(self, event: AuditEvent) -> int: ...
    def catalogue(self, principal: Principal): ...
    def catalogue_room(self): ...  # archive.catalogue.usecases.CatalogueRoom
    def quarantine(self): ...
    def pull_room(self): ...  # archive.pulls.usecases.PullRoom
    def thumbnail(
        self, principal: Principal, case_id: str, number: int, size: int | None = None
    ) -> tuple[bytes, str]: ...
    def workstations(self) -> list[str]: ...
    def archive_totals(self) -> tuple[int, int]: ...
    def ledger(self): ...  # the viewer (issue 22): the vault's instance ledger
    def read_dicom(self, entry) -> bytes: ...

    # issue 22: the web for every role
    policies_dir: Any

    def release_quarantine(self, principal: Principal, item_id: str, note: str) -> dict: ...
    def export_removal(self, principal: Principal, rid: int, body: dict) -> tuple[bytes, str]: ...
    def undertaking_store(self): ...


@dataclass
class Context:
    request: WebRequest
    principal: Principal
    session: Session
    session_id: str
    form: dict[str, str]
    now: datetime


Handler = Callable[["WebApp", Context, tuple[str, ...]], WebResponse]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str):
    def wrap(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile(pattern + r"\Z"), fn))
        return fn

    return wrap


def _form(body: bytes) -> dict[str, str]:
    if len(body) > MAX_FORM:
        raise WebError(413, "The form is too large.")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise WebError(400, "The form could not be read.") from None
    return {k: v[0] for k, v in parsed.items()}


MAX_UPLOAD = 12 * 1024 * 1024  # a signed undertaking's scan, base64 in the form
UPLOADS = re.compile(r"/board/[0-9]{1,12}/undertaking\Z")


def _posted(request: WebRequest) -> dict[str, str]:
    """A POST's fields. Orthanc 1.10 takes multipart/form-data bodies for itself, so a
    file travels base64 in an ordinary field (static/upload.js), and only the routes in
    UPLOADS take a body that large."""
    if UPLOADS.search(request.path or "") and len(request.body) <= MAX_UPLOAD:
        try:
            parsed = parse_qs(request.body.decode("utf-8"), keep_blank_values=True,
                              max_num_fields=50)  # fmt: skip
        except (UnicodeDecodeError, ValueError):
            raise WebError(400, "The form could not be read.") from None
        return {k: v[0] for k, v in parsed.items()}
    return _form(request.body)


class WebApp:
    def __init__(self, backend: Backend, clock: Callable[[], datetime] | None = None) -> None:
        self.backend = backend
        self.clock = clock or (lambda: datetime.now(UTC))

    # -- plumbing -----------------------------------------------------------------
    def audit(self, principal, action: str, outcome: str, target=None, ip="", **detail) -> None:
        self.backend.record(
            AuditEvent(
                action=action,
                outcome=outcome,
                actor=principal.user if principal else "anonymous",
                roles=tuple(principal.roles) if principal else (),
                source="web",
                target=target,
                detail={**detail, **({"ip": ip} if ip else {})},
            )
        )

    def refusal(self, principal: Principal, page_name: str):
        """None if any action the page fronts is the principal's, else the first
        refusal (a state the resource is not yet in does not hide the page: the act
        itself is then refused with why)."""
        from archive.core import authorise, load_action_policy

        policy = load_action_policy(self.backend.policies_dir)
        first = None
        for action in PAGES[page_name]:
            verdict = authorise(policy, principal, action)
            if verdict or verdict.code == "state":
                return None
            first = first or verdict
        return first

    def may(self, principal: Principal, page_name: str) -> bool:
        return self.refusal(principal, page_name) is None

    def require(self, ctx: Context, page_name: str) -> None:
        refused = self.refusal(ctx.principal, page_name)
        if refused is not None:
            self.audit(ctx.principal, f"web.{page_name}", "denied", ip=ctx.request.ip,
                       reason=refused.reason)  # fmt: skip
            raise WebError(
                403,
                f"Your roles ({', '.join(ctx.principal.roles) or 'none'}) do not allow this "
                f"page: {refused.reason}. {refused.next or 'Ask school personnel.'}",
            )

    def ports(self):
        """The use cases' ports for an act from the web (archive.core.Ports)."""
        from archive.core import Ports

        audit = type("WebAudit", (), {"append": staticmethod(self.backend.record)})()
        return Ports(db=self.backend.db(), audit=audit,
                     policies_dir=self.backend.policies_dir, source="web")  # fmt: skip

    def pages_for(self, principal: Principal) -> list[str]:
        return [p for p in PAGES if p != "pull" and self.may(principal, p)]

    def html(self, ctx: Context | None, title: str, body: Markup, status: int = 200,
             flash: str = "", error: bool = False) -> WebResponse:  # fmt: skip
        doc = page(
            title,
            body,
            user=ctx.principal.user if ctx else None,
            pages=self.pages_for(ctx.principal) if ctx else (),
            csrf=ctx.session.csrf if ctx else "",
            flash=flash,
            error=error,
        )
        return WebResponse(status, doc.encode())

    @staticmethod
    def redirect(path: str, headers: list[tuple[str, str]] | None = None) -> WebResponse:
        return WebResponse(303, b"", headers=headers or [], location=UI + path)

    def finish(self, response: WebResponse) -> WebResponse:
        # A page that sets one of these itself (the viewer's CSP) keeps its own.
        own = {name.lower() for name, _ in response.headers}
        extra = [h for h in SECURITY_HEADERS if h[0].lower() not in own]
        response.headers = [*response.headers, *extra]
        return response

    # -- entry --------------------------------------------------------------------
    def handle(self, request: WebRequest) -> WebResponse:
        try:
            return self.finish(self._handle(request))
        except WebError as exc:
            return self.finish(
                WebResponse(exc.status, views.error_page(exc.status, exc.message).encode())
            )

    def _handle(self, request: WebRequest) -> WebResponse:
        now = self.clock()
        path = request.path or "/"
        if path.startswith("/static/") and request.method == "GET":
            return views.static_file(path[len("/static/") :]) or WebResponse(
                404, b"no such file", "text/plain; charset=utf-8"
            )
        if path == "/login":
            return self._login(request, now)
        sessions = SessionStore(self.backend.db())
        sid = session_id_from(cookie_header_of(request.headers))
        session = sessions.lookup(sid, now)
        principal = None
        if session is not None and request.principal is not None:
            if request.principal.user == session.user:
                principal = request.principal
        if session is not None and principal is None:
            principal = principal_of_session(self.backend.access_store(), session, now)
        if session is not None and principal is None:
            sessions.end(sid)  # ended by an account change, lapsed training, ...
        if session is None or principal is None or sid is None:
            if request.method == "GET":
                return self.redirect("/login")
            raise WebError(401, "Your session has ended; sign in again.")
        form: dict[str, str] = {}
        if request.method == "POST":
            form = _posted(request)
            if not check_csrf(session, form.get("csrf")):
                self.audit(principal, "web.csrf", "denied", ip=request.ip, path=path[:100])
                raise WebError(403, "The form's security token is missing or wrong; reload "
                               "the page and try again.")  # fmt: skip
        ctx = Context(request, principal, session, sid, form, now)
        for method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match and method == request.method:
                try:
                    return handler(self, ctx, match.groups())
                except ArchiveError as exc:
                    return self.html(ctx, "Not done", Markup(""), 400, str(exc), error=True)
        raise WebError(404, "There is no such page.")

    def _login_form(self, request: WebRequest, now: datetime, status: int = 200,
                    message: str = "", extra: list | None = None) -> WebResponse:  # fmt: skip
        """The sign-in form with a fresh CSRF token bound to this browser's pre-session
        cookie (set here if it has none)."""
        nonce = session_id_from(cookie_header_of(request.headers), LOGIN_COOKIE)
        if not valid_nonce(nonce):
            nonce = new_login_nonce()
        token = SessionStore(self.backend.db()).login_token(nonce, now)
        body = views.login_page(message, csrf=token).encode()
        cookie = ("Set-Cookie", set_login_cookie(nonce, request.secure))
        return WebResponse(status, body, headers=[cookie, *(extra or [])])

    def _login_refused(self, name: str, request: WebRequest, reason: str, **detail) -> None:
        self.backend.record(
            AuditEvent(action="web.login", outcome="failure", actor=name[:64] or "anonymous",
                       source="web", detail={"reason": reason, "ip": request.ip, **detail})
        )  # fmt: skip

    def _login(self, request: WebRequest, now: datetime) -> WebResponse:
        if request.method == "GET":
            return self._login_form(request, now)
        if request.method != "POST":
            raise WebError(405, "Use the sign-in form.")
        form = _form(request.body)
        name, password = form.get("user", "").strip(), form.get("password", "")
        sessions = SessionStore(self.backend.db())
        nonce = session_id_from(cookie_header_of(request.headers), LOGIN_COOKIE)
        if not sessions.check_login_token(nonce, form.get("csrf"), now):
            self._login_refused(name, request, "csrf")
            return self._login_form(request, now, 403, "The sign-in form had expired or did "
                                    "not come from this archive. Sign in again below.")  # fmt: skip
        store = self.backend.access_store()
        epoch = store.session_epoch(name) if name else None  # before the password check
        result: Principal | AuthFailure = (
            store.authenticate_basic(name, password, now, address=request.ip)
            if name and password
            else AuthFailure("malformed", name or None)
        )
        if not isinstance(result, Principal):
            extra: dict[str, Any] = {}
            if result.retry_after:
                extra.update(retry_after=result.retry_after, throttle=result.detail)
            if result.alert:
                extra["account_alert"] = True  # many failures on this account, everywhere
            self._login_refused(name, request, result.reason, **extra)
            if result.reason == "throttled":
                wait = int(result.retry_after or 1)
                return self._login_form(
                    request, now, 429,
                    f"Sign-in refused: {result.detail}. Wait {wait} seconds, then try again "
                    "(other addresses are not affected).",
                    [("Retry-After", str(wait))],
                )  # fmt: skip
            return self._login_form(request, now, 401, "The user name or password is wrong, "
                                    "or the account is disabled or expired.")  # fmt: skip
        sid, _session = sessions.create(result.user, now, -1 if epoch is None else epoch,
                                        result.trained)  # fmt: skip
        self.audit(result, "web.login", "success", ip=request.ip)
        return self.redirect("/", [("Set-Cookie", clear_login_cookie(request.secure)),
                                   ("Set-Cookie", set_cookie(sid, request.secure))])  # fmt: skip


# -- pages ------------------------------------------------------------------------------
@route("POST", r"/logout")
def _logout(app: WebApp, ctx: Context, groups) -> WebResponse:
    SessionStore(app.backend.db()).end(ctx.session_id)
    app.audit(ctx.principal, "web.logout", "success", ip=ctx.request.ip)
    return app.redirect("/login", [("Set-Cookie", clear_cookie(ctx.request.secure))])


@route("GET", r"/?")
def _home(app: WebApp, ctx: Context, groups) -> WebResponse:
    return app.html(ctx, "Welcome", views.home(ctx.principal, app.pages_for(ctx.principal)))


FILTERS = ("modality", "body_part", "category", "difficulty", "level")


@route("GET", r"/cases")
def _search(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.catalogue import usecases as uc

    app.require(ctx, "cases")
    q = ctx.request.query
    chosen = {f: [v.strip() for v in q.get(f, "").split(",") if v.strip()] for f in FILTERS}
    try:
        number = max(1, int(q.get("page") or 1))
    except ValueError:
        number = 1
    found = outcome(uc.search_cases(app.backend.catalogue_room(), ctx.principal,
                                    q.get("q", ""), chosen, page=number, per_page=20))  # fmt: skip
    found = replace(found, page=_teach.mask_unknowns(app, ctx, found.page))  # issue 22
    params = {k: q[k] for k in ("q", *FILTERS) if q.get(k)}
    choices = views.facet_choices(app.backend.catalogue(ctx.principal).vocabulary)
    return app.html(ctx, "Catalogue", views.search(q, found.page, params, choices))


@route("GET", r"/cases/([A-Za-z0-9-]{1,64})")
def _show_case(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.catalogue import usecases as uc

    app.require(ctx, "cases")
    case = outcome(uc.view_case(app.backend.catalogue_room(), ctx.principal, groups[0])).case
    if _teach.hidden_for(app, ctx, case.case_id):  # an unknown: its teaching page (issue 22)
        return app.redirect(f"/teach/cases/{case.case_id}")
    body = views.case(
        case,
        csrf=ctx.session.csrf,
        workstations=app.backend.workstations() if app.may(ctx.principal, "pull") else None,
        purposes=app.backend.governance_policy.removal_purposes
        if app.may(ctx.principal, "removals")
        else None,
    )
    body = Markup(_teach.case_links(case) + body)  # viewer and teaching page (issue 22)
    from archive.web import acts

    if acts.allowed(app, ctx.principal, "case.edit"):  # issue 22: trainers edit the text
        body = Markup(views.edit_link(case.case_id) + body)
    flash = "Teaching text saved." if ctx.request.query.get("edited") else ""
    return app.html(ctx, case.title or f"Case {case.case_id}", body, flash=flash)


@route("GET", r"/cases/([A-Za-z0-9-]{1,64})/series/([0-9]{1,4})/thumbnail")
def _thumb(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "cases")
    from archive.render import PREVIEW_SIZE

    case_id, number = groups[0].upper(), int(groups[1])
    if ctx.request.query.get("size") == "preview":  # sharp, up to 1024 px (issue 22)
        image, mime = app.backend.thumbnail(ctx.principal, case_id, number, PREVIEW_SIZE)
    else:
        image, mime = app.backend.thumbnail(ctx.principal, case_id, number)
    return WebResponse(200, image, mime)


@route("POST", r"/pulls")
def _pull(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.pulls.usecases import pull_cases

    app.require(ctx, "pull")
    case_id, ws = ctx.form.get("case", ""), ctx.form.get("workstation", "")
    result = outcome(pull_cases(app.backend.pull_room(), ctx.principal, ws, [case_id]))
    sent = sum(int(r.get("instances", 0)) for r in result.pulled)
    msg = f"Case {case_id} sent to {ws} ({sent} images)."
    return app.html(ctx, "Pulled", views.back_to_case(case_id), flash=msg)


@route("POST", r"/removals")
def _request_removal(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance.removals import usecases as removals

    app.require(ctx, "removals")
    cases = [c.strip().upper() for c in ctx.form.get("cases", "").split(",") if c.strip()]
    purpose, destination = ctx.form.get("purpose", ""), ctx.form.get("destination", "")
    made = _shown(removals.request(_ports(app, ctx), ctx.principal, cases, purpose, destination))
    return app.redirect(f"/removals?made={int(made.id)}")


def _removal_rows(app: WebApp, now: datetime, status: str | None = None) -> list:
    from archive.governance import RemovalRequests

    registry = RemovalRequests(app.backend.db(), app.backend.governance_policy)
    return [(r, r.status_at(now)) for r in registry.list(status)]


@route("GET", r"/removals")
def _removals(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "removals")
    mine = [
        (r, s)
        for r, s in _removal_rows(app, ctx.now)
        if r.requester.casefold() == ctx.principal.user.casefold()
    ]
    made = ctx.request.query.get("made", "")
    flash = f"Removal request {made} recorded; it waits for written approval." if made else ""
    return app.html(ctx, "My removal requests", views.removals(mine, ctx.session.csrf),
                    flash=flash)  # fmt: skip


@route("GET", r"/approvals")
def _approvals(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "approvals")
    pending = [r for r, _ in _removal_rows(app, ctx.now, "pending")]
    catalogue = app.backend.catalogue(ctx.principal)
    cases = {}
    for r in pending:
        for cid in r.case_ids:
            try:
                cases[cid] = catalogue.get(cid)
            except ArchiveError:
                cases[cid] = None
    done = ctx.request.query.get("done", "")
    return app.html(ctx, "Pending removal requests",
                    views.approvals(pending, cases, ctx.session.csrf),
                    flash=f"Request {done} decided." if done else "")  # fmt: skip


@route("POST", r"/approvals/([0-9]{1,12})/(approve|refuse)")
def _decide_removal(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance.removals import usecases as removals

    app.require(ctx, "approvals")
    rid, kind = int(groups[0]), groups[1]
    ports = _ports(app, ctx)
    if kind == "approve":
        _shown(removals.approve(ports, ctx.principal, rid, ctx.form.get("text", "")))
    else:
        _shown(removals.refuse_request(ports, ctx.principal, rid, ctx.form.get("reason", "")))
    return app.redirect(f"/approvals?done={rid}")


def _shares(app: WebApp):
    from archive.governance import Shares

    return Shares(app.backend.db(), app.backend.governance_policy)


@route("GET", r"/shares")
def _share_list(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "shares")
    shares = _shares(app)
    proposals = [(p, shares.decision_for(p.id)) for p in shares.list()]
    done = ctx.request.query.get("done", "")
    return app.html(ctx, "Share proposals", views.shares(proposals, ctx.session.csrf),
                    flash=f"Decision on proposal {done} recorded." if done else "")  # fmt: skip


def _ports(app: WebApp, ctx: Context):
    """The ports of a governance use case for this web request (issue 21: the web calls
    the use cases directly, as the signed-in person)."""
    from archive.core import Ports
    from archive.paths import POLICIES_DIR

    backend = app.backend
    return Ports(db=backend.db(), audit=_AuditPort(backend),
                 policies_dir=getattr(backend, "policies_dir", POLICIES_DIR), clock=app.clock,
                 source="web", extra={"governance": backend.governance_policy,
                                      "catalogue": backend.catalogue(ctx.principal)})  # fmt: skip


class _AuditPort:
    def __init__(self, backend) -> None:
        self.backend = backend

    def append(self, event) -> int:
        return self.backend.record(event)


def _shown(result):
    """A use case's result, or its refusal as a page with its reason and next step."""
    from archive.core import Refusal
    from archive.governance.usecase import status_of

    if isinstance(result, Refusal):
        raise WebError(status_of(result), f"{result.reason}. {result.next}".strip())
    return result


@route("POST", r"/shares/([0-9]{1,12})/decide")
def _share_decide(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance.sharing import usecases as sharing

    app.require(ctx, "shares")
    pid = int(groups[0])
    try:
        meeting = date.fromisoformat(ctx.form.get("meeting_date", ""))
    except ValueError:
        raise WebError(400, "Give the meeting date as YYYY-MM-DD.") from None
    named = {"approvers": 1} if ctx.form.get("approvers", "").strip() else {}
    _shown(sharing.decide(
        _ports(app, ctx), ctx.principal, pid, meeting_date=meeting,
        minute_reference=ctx.form.get("minute", ""), decision_text=ctx.form.get("text", ""),
        approved=ctx.form.get("outcome") == "approved", fields=named,
    ))  # fmt: skip
    return app.redirect(f"/shares?done={pid}")


@route("POST", r"/shares/([0-9]{1,12})/vote")
def _share_vote(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance.sharing import usecases as sharing

    app.require(ctx, "shares")
    pid = int(groups[0])
    _shown(sharing.vote(_ports(app, ctx), ctx.principal, pid))
    return app.redirect(f"/shares?done={pid}")


@route("GET", r"/shares/register")
def _register(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "shares")
    log = _shares(app).share_log()
    app.audit(ctx.principal, "governance.share.register", "success", rows=len(log))
    return app.html(ctx, "Share register", views.register(log))


@route("GET", r"/shares/register\.csv")
def _register_csv(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance import share_log_csv

    app.require(ctx, "shares")
    log = _shares(app).share_log()
    app.audit(ctx.principal, "governance.share.register.export", "success", rows=len(log))
    disposition = ("Content-Disposition", 'attachment; filename="share-register.csv"')
    return WebResponse(200, share_log_csv(log).encode(), "text/csv; charset=utf-8", [disposition])


@route("GET", r"/users")
def _users(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "users")
    users = app.backend.access_store().list_users()
    done = ctx.request.query.get("done", "")
    return app.html(ctx, "Users and training", views.users(users, ctx.now, ctx.session.csrf),
                    flash=f"Training recorded for {done}." if done else "")  # fmt: skip


@route("POST", r"/users/([A-Za-z0-9._-]{1,64})/training")
def _training(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.access import usecases as people

    app.require(ctx, "users")
    try:
        day = date.fromisoformat(ctx.form.get("trained_on", ""))
    except ValueError:
        raise WebError(400, "Give the training date as YYYY-MM-DD.") from None
    room = people.PeopleRoom(app.ports(), app.backend.access_store())
    outcome(people.record_training(room, ctx.principal, groups[0], day))
    return app.redirect("/users?" + urlencode({"done": groups[0]}))


# /quarantine pages: archive/web/quarantine.py (issue 22).


# GET /audit: archive/web/audit_page.py (issue 22).


@route("GET", r"/audit/verify")
def _audit_verify(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.audit import home_chain, verify

    app.require(ctx, "audit")
    report = verify(app.backend.home.audit_dir, chain=home_chain(app.backend.home))
    app.audit(ctx.principal, "audit.verify", "success" if report.ok else "failure",
              records=report.records)  # fmt: skip
    return app.html(ctx, "Audit log verification", views.verify(report))


@route("GET", r"/closure")
def _closure(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance.closure import usecases as closure
    from archive.governance.closure.records import ClosureRecords

    app.require(ctx, "closure")
    plan = _shown(closure.plan(_ports(app, ctx), ctx.principal, app.backend.home,
                               getattr(app.backend, "volume_kind", None)))  # fmt: skip
    decisions = ClosureRecords(app.backend.db(), app.backend.governance_policy).decisions()
    done = ctx.request.query.get("voted", "")
    return app.html(ctx, "Closure plan", views.closure(plan, decisions, ctx.session.csrf),
                    flash=f"Your vote on decision {done} is recorded." if done else "")  # fmt: skip


@route("POST", r"/closure/([0-9]{1,12})/vote")
def _closure_vote(app: WebApp, ctx: Context, groups) -> WebResponse:
    """A Board member votes for themselves on a recorded closure decision (issue 21)."""
    from archive.governance.closure import usecases as closure

    app.require(ctx, "closure")
    did = int(groups[0])
    _shown(closure.vote(_ports(app, ctx), ctx.principal, did))
    return app.redirect(f"/closure?voted={did}")


# -- the viewer and teaching modes (issue 22): their routes register themselves ---------
# -- issue 22: each page in a module of its own; importing it registers its routes.
from archive.web import (  # noqa: E402, F401
    audit_page,
    board,
    downloads,
    editing,
    quarantine,
)
from archive.web import teach as _teach  # noqa: E402, F401
from archive.web import viewer as _viewer  # noqa: E402, F401

# Pages kept in their own modules (registered on import).
from archive.web import workstation as _workstation  # noqa: E402, F401
