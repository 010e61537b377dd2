"""Web interface without Orthanc: escaping, sessions, login, CSRF and role refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archive import db
from archive.access import AccessStore, load_route_policy
from archive.paths import POLICIES_DIR
from archive.web import SessionStore, WebApp, WebRequest, principal_for_cookie
from archive.web.markup import Markup, render
from archive.web.sessions import IDLE_TIMEOUT, session_id_from

NOW = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


class FakeBackend:
    """Real access store and policy on a temporary DB; Orthanc-only parts refuse."""

    def __init__(self, path: Path) -> None:
        self.conn = db.connect(path)
        self.store = AccessStore(self.conn)
        self.route_policy = load_route_policy(POLICIES_DIR)
        self.events: list = []
        self.home = None
        self.governance_policy = None

    def db(self):
        return self.conn

    def access_store(self):
        return self.store

    def record(self, event) -> int:
        self.events.append(event)
        return len(self.events)


@pytest.fixture
def app(tmp_path: Path):
    backend = FakeBackend(tmp_path / "a.db")
    for name, roles in (("reg", ["registrar"]), ("tpd", ["tpd"])):
        backend.store.add_user(name, f"pw-{name}-long-enough-42", roles, NOW, by="t")
        backend.store.record_training(name, NOW.date(), NOW, by="t")
    return WebApp(backend, clock=lambda: NOW)


def _login(app: WebApp, user: str) -> tuple[str, str]:
    body = f"user={user}&password=pw-{user}-long-enough-42".encode()
    answer = app.handle(WebRequest("POST", "/login", body=body))
    assert answer.status == 303, answer.body
    cookie = dict(answer.headers)["Set-Cookie"]
    sid = session_id_from(cookie.split(";")[0])
    csrf = SessionStore(app.backend.db()).lookup(sid, NOW).csrf
    return f"archive_session={sid}", csrf


def test_render_escapes_every_value_but_markup() -> None:
    out = render('<a title="$t">$b</a>$m', t='"><script>', b="<b>&", m=Markup("<i>ok</i>"))
    assert out == '<a title="&quot;&gt;&lt;script&gt;">&lt;b&gt;&amp;</a><i>ok</i>'


def test_cookie_flags_and_headers(app: WebApp) -> None:
    body = b"user=reg&password=pw-reg-long-enough-42"
    answer = app.handle(WebRequest("POST", "/login", body=body, secure=True))
    cookie = dict(answer.headers)["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/teaching/ui", "Secure"):
        assert flag in cookie
    headers = dict(answer.headers)
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Secure" not in dict(_plain_login(app).headers)["Set-Cookie"]


def _plain_login(app):
    return app.handle(WebRequest("POST", "/login", body=b"user=reg&password=pw-reg-long-enough-42"))


def test_wrong_password_refused_and_audited(app: WebApp) -> None:
    answer = app.handle(WebRequest("POST", "/login", body=b"user=reg&password=nope"))
    assert answer.status == 401 and "Set-Cookie" not in dict(answer.headers)
    assert app.backend.events[-1].action == "web.login"
    assert app.backend.events[-1].outcome == "failure"


def test_session_stored_hashed_and_expires(app: WebApp) -> None:
    cookie, _ = _login(app, "reg")
    sid = cookie.split("=", 1)[1]
    stored = [r[0] for r in app.backend.db().execute("SELECT id_sha256 FROM web_sessions")]
    assert sid not in stored and len(stored) == 1
    principal = principal_for_cookie(app.backend.store, cookie, NOW)
    assert principal is not None and principal.user == "reg" and principal.method == "session"
    assert principal_for_cookie(app.backend.store, cookie, NOW + IDLE_TIMEOUT) is None
    assert principal_for_cookie(app.backend.store, "archive_session=forged", NOW) is None


def test_disabled_account_loses_its_session(app: WebApp) -> None:
    cookie, _ = _login(app, "reg")
    app.backend.store.disable("reg")
    assert principal_for_cookie(app.backend.store, cookie, NOW + timedelta(minutes=1)) is None


def test_post_without_csrf_refused(app: WebApp) -> None:
    cookie, csrf = _login(app, "tpd")
    forged = app.handle(WebRequest("POST", "/approvals/1/refuse", headers={"cookie": cookie},
                                   body=b"reason=no"))  # fmt: skip
    assert forged.status == 403
    assert app.backend.events[-1].action == "web.csrf"
    wrong = app.handle(WebRequest("POST", "/logout", headers={"cookie": cookie},
                                  body=b"csrf=" + b"x" * len(csrf)))  # fmt: skip
    assert wrong.status == 403
    ok = app.handle(WebRequest("POST", "/logout", headers={"cookie": cookie},
                               body=f"csrf={csrf}".encode()))  # fmt: skip
    assert ok.status == 303
    assert principal_for_cookie(app.backend.store, cookie, NOW) is None


def test_registrar_refused_approver_page(app: WebApp) -> None:
    cookie, _ = _login(app, "reg")
    answer = app.handle(WebRequest("GET", "/approvals", headers={"cookie": cookie}))
    assert answer.status == 403
    assert (app.backend.events[-1].action, app.backend.events[-1].outcome) == (
        "web.approvals",
        "denied",
    )
    home = app.handle(WebRequest("GET", "/", headers={"cookie": cookie})).body.decode()
    assert "/teaching/ui/cases" in home and "/teaching/ui/approvals" not in home


def test_no_session_redirects_to_login(app: WebApp) -> None:
    answer = app.handle(WebRequest("GET", "/cases"))
    assert answer.status == 303 and answer.location == "/teaching/ui/login"
    assert app.handle(WebRequest("POST", "/removals", body=b"csrf=x")).status == 401


def test_anonymous_reaches_only_the_ui_root_and_the_sign_in_page(app: WebApp) -> None:
    """Issue 21: the filter lets an anonymous GET of /teaching/ui(/) through, so the web
    answers the sign-in redirect instead of a blank 403; nothing else opens."""
    from archive.access import decide

    policy = app.backend.route_policy
    for uri in ("/teaching/ui", "/teaching/ui/", "/teaching/ui/login"):
        assert decide(policy, None, "GET", uri).allowed, uri
    for method, uri in (("GET", "/teaching/ui/cases"), ("POST", "/teaching/ui"),
                        ("GET", "/teaching/ui/shares"), ("GET", "/teaching/cases")):  # fmt: skip
        assert not decide(policy, None, method, uri).allowed, uri
    answer = app.handle(WebRequest("GET", "/"))
    assert answer.status == 303 and answer.location == "/teaching/ui/login"
