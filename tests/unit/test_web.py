"""Web interface without Orthanc: escaping, sessions, login (with its CSRF token and
the per-address backoff), sessions ended by account changes, CSRF and role refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from archive import db
from archive.access import AccessStore, load_route_policy
from archive.paths import POLICIES_DIR
from archive.web import SessionStore, WebApp, WebRequest, principal_for_cookie
from archive.web.markup import Markup, render
from archive.web.sessions import IDLE_TIMEOUT, LOGIN_FORM_LIFETIME, session_id_from

NOW = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


class FakeBackend:
    """Real access store and policy on a temporary DB; Orthanc-only parts refuse."""

    def __init__(self, path: Path) -> None:
        self.conn = db.connect(path)
        self.store = AccessStore(self.conn)
        self.route_policy = load_route_policy(POLICIES_DIR)
        self.policies_dir = POLICIES_DIR
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


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def app(tmp_path: Path):
    backend = FakeBackend(tmp_path / "a.db")
    for name, roles in (("reg", ["registrar"]), ("tpd", ["tpd"])):
        backend.store.add_user(name, f"pw-{name}-long-enough-42", roles, NOW, by="t")
        backend.store.record_training(name, NOW.date(), NOW, by="t")
    return WebApp(backend, clock=Clock())


def _form(app: WebApp, ip: str = "10.0.0.1") -> tuple[str, str]:
    """GET the sign-in form like a browser: (its pre-session cookie, its CSRF token)."""
    page = app.handle(WebRequest("GET", "/login", ip=ip))
    assert page.status == 200
    cookie = dict(page.headers)["Set-Cookie"].split(";")[0]
    token = re.search(r'name="csrf" value="([^"]+)"', page.body.decode()).group(1)
    return cookie, token


def _post_login(app: WebApp, user: str, password: str, ip: str = "10.0.0.1", secure=False):
    cookie, token = _form(app, ip)
    body = urlencode({"user": user, "password": password, "csrf": token}).encode()
    return app.handle(WebRequest("POST", "/login", headers={"cookie": cookie}, body=body,
                                 ip=ip, secure=secure))  # fmt: skip


def _login(app: WebApp, user: str, ip: str = "10.0.0.1") -> tuple[str, str]:
    answer = _post_login(app, user, f"pw-{user}-long-enough-42", ip)
    assert answer.status == 303, answer.body
    cookie = dict(answer.headers)["Set-Cookie"]
    sid = session_id_from(cookie.split(";")[0])
    csrf = SessionStore(app.backend.db()).lookup(sid, app.clock()).csrf
    return f"archive_session={sid}", csrf


def test_render_escapes_every_value_but_markup() -> None:
    out = render('<a title="$t">$b</a>$m', t='"><script>', b="<b>&", m=Markup("<i>ok</i>"))
    assert out == '<a title="&quot;&gt;&lt;script&gt;">&lt;b&gt;&amp;</a><i>ok</i>'


def test_cookie_flags_and_headers(app: WebApp) -> None:
    answer = _post_login(app, "reg", "pw-reg-long-enough-42", secure=True)
    cookie = dict(answer.headers)["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/teaching/ui", "Secure"):
        assert flag in cookie
    headers = dict(answer.headers)
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Secure" not in dict(_plain_login(app).headers)["Set-Cookie"]


def _plain_login(app):
    return _post_login(app, "reg", "pw-reg-long-enough-42")


def test_wrong_password_refused_and_audited(app: WebApp) -> None:
    answer = _post_login(app, "reg", "nope")
    assert answer.status == 401
    assert "archive_session" not in str(answer.headers)
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


def _alive(app: WebApp, cookie: str) -> bool:
    answer = app.handle(WebRequest("GET", "/", headers={"cookie": cookie}))
    return answer.status == 200 and principal_for_cookie(app.backend.store, cookie, app.clock())


@pytest.mark.parametrize("change", ["reset_password", "disable", "roles", "training", "expiry"])
def test_account_change_ends_old_sessions_for_good(app: WebApp, change: str) -> None:
    """Finding 7: after a password reset (or disable, role change, training withdrawn,
    expiry) the old session still worked, and disable + enable revived it."""
    store = app.backend.store
    cookie, _ = _login(app, "reg")
    other, _ = _login(app, "tpd")
    assert _alive(app, cookie)
    if change == "reset_password":
        store.reset_password("reg", "a new password, long enough", NOW)
    elif change == "disable":
        store.disable("reg")
        store.disable("reg", False)  # re-enabled at once: the old session stays dead
    elif change == "roles":
        store.set_roles("reg", ["trainer"], NOW, by="t")
    elif change == "training":
        store.record_training("reg", NOW.date(), NOW, by="t", suite_use=False)
    else:
        store.expire_account("reg", NOW + timedelta(days=30))
    assert not _alive(app, cookie)
    assert SessionStore(app.backend.db()).lookup(cookie.split("=", 1)[1], NOW) is None  # gone
    store.disable("reg", False)
    assert not _alive(app, cookie)
    assert _alive(app, other)  # nobody else is signed out
    if change == "reset_password":
        assert _post_login(app, "reg", "a new password, long enough").status == 303


def test_training_lapse_by_the_calendar_ends_the_session(app: WebApp) -> None:
    store = app.backend.store
    store.record_training("reg", NOW.date() - timedelta(days=364), NOW, by="t")
    expires = store.get_user("reg").training.expires_on  # tomorrow
    app.clock.now = datetime.combine(expires, NOW.timetz()).replace(hour=0) - timedelta(minutes=10)
    cookie, _ = _login(app, "reg")
    app.clock.now += timedelta(minutes=5)
    assert app.handle(WebRequest("GET", "/", headers={"cookie": cookie})).status == 200
    app.clock.now += timedelta(minutes=10)  # past midnight: training lapsed
    assert not _alive(app, cookie)
    store.record_training("reg", app.clock.now.date(), app.clock.now, by="t")
    assert not _alive(app, cookie)  # renewed training: a new sign-in, not the old session


def test_login_without_a_valid_csrf_token_is_refused(app: WebApp) -> None:
    creds = {"user": "reg", "password": "pw-reg-long-enough-42"}
    bare = app.handle(WebRequest("POST", "/login", body=urlencode(creds).encode()))
    assert bare.status == 403 and "archive_session" not in str(bare.headers)
    assert (app.backend.events[-1].action, app.backend.events[-1].detail["reason"]) == (
        "web.login",
        "csrf",
    )
    cookie, token = _form(app)
    other_cookie, _ = _form(app)  # a token from another browser's form
    forged = urlencode({**creds, "csrf": token}).encode()
    assert app.handle(WebRequest("POST", "/login", headers={"cookie": other_cookie},
                                 body=forged)).status == 403  # fmt: skip
    no_token = urlencode(creds).encode()
    assert app.handle(WebRequest("POST", "/login", headers={"cookie": cookie},
                                 body=no_token)).status == 403  # fmt: skip
    app.clock.now = NOW + LOGIN_FORM_LIFETIME + timedelta(minutes=1)
    stale = app.handle(WebRequest("POST", "/login", headers={"cookie": cookie}, body=forged))
    assert stale.status == 403 and b'name="csrf"' in stale.body  # a fresh form to retry
    assert (
        SessionStore(app.backend.db())
        .conn.execute("SELECT count(*) FROM web_sessions")
        .fetchone()[0]
        == 0
    )
    app.clock.now = NOW
    ok = app.handle(WebRequest("POST", "/login", headers={"cookie": cookie}, body=forged))
    assert ok.status == 303


def test_failed_sign_ins_back_off_per_address_with_429(app: WebApp) -> None:
    """Twenty wrong passwords for one account from one address: that address waits,
    with a growing Retry-After; the person signs in from another address."""
    app.backend.store.add_user("pers", "pw-pers-long-enough-42", ["personnel"], NOW, by="t")
    waits = []
    for _ in range(20):
        answer = _post_login(app, "pers", "wrong password!", ip="203.0.113.9")
        if answer.status == 429:
            headers = dict(answer.headers)
            waits.append(int(headers["Retry-After"]))
            assert b"Wait" in answer.body and b"address" in answer.body
            app.clock.now += timedelta(seconds=int(headers["Retry-After"]))
        else:
            assert answer.status == 401
    assert waits and waits == sorted(waits) and waits[-1] > waits[0]  # it grows
    assert app.backend.store.get_user("pers").locked_until is None
    assert _post_login(app, "pers", "pw-pers-long-enough-42", ip="10.1.1.1").status == 303
    refused = [e for e in app.backend.events if e.detail.get("reason") == "throttled"]
    assert refused and all(e.detail["retry_after"] >= 1 for e in refused)


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
