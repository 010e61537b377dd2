"""The HTTP filter hands its principal to the route (plugins/handoff.py): a request is
authenticated once, by the filter; without the filter's handoff a route refuses."""

from __future__ import annotations

import pytest

from archive.access.credentials import Credentials
from plugins import handoff, health, http_filter, rest, web
from tests.unit.plugin_fixtures import basic, fake, runtime, services  # noqa: F401


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every authentication, whoever asks for it."""
    calls: list[str] = []
    real_basic, real_bearer = Credentials.authenticate_basic, Credentials.authenticate_bearer

    def spy_basic(self, name, *args, **kwargs):
        calls.append(f"basic:{name}")
        return real_basic(self, name, *args, **kwargs)

    def spy_bearer(self, token, *args, **kwargs):
        calls.append("bearer")
        return real_bearer(self, token, *args, **kwargs)

    monkeypatch.setattr(Credentials, "authenticate_basic", spy_basic)
    monkeypatch.setattr(Credentials, "authenticate_bearer", spy_bearer)
    return calls


def _me_route(services):  # noqa: F811
    def me(request, **_):
        first = rest.principal_of(services, request)
        again = rest.principal_of(services, request)  # a route may ask twice
        assert again is first
        return {"user": first.user, "roles": list(first.roles)}

    rest.route(services, "/teaching/me", {"GET": me})


def test_a_route_does_not_authenticate_again(fake, services, counted) -> None:  # noqa: F811
    http_filter.register(fake, services)
    _me_route(services)
    answer = fake.call("GET", "/teaching/me", headers=basic("pat"))
    assert answer.status == 200 and answer.json() == {"user": "pat", "roles": ["personnel"]}
    assert counted == ["basic:pat"]  # the filter's, and only the filter's


def test_without_the_filters_handoff_the_route_refuses(fake, services, counted) -> None:  # noqa: F811
    _me_route(services)  # no filter registered: nothing is handed over
    answer = fake.call("GET", "/teaching/me", headers=basic("pat"))
    assert answer.status == 401 and answer.json()["next"]
    assert counted == []  # refused, never re-authenticated


def test_a_handoff_is_for_its_own_request_and_taken_once(fake, services) -> None:  # noqa: F811
    http_filter.register(fake, services)
    check = fake.filter
    assert check("/teaching/me", method=1, ip="10.0.0.9", headers=basic("pat"), get={})
    other = basic("tom")  # another request's credentials on the same thread
    assert handoff.take("GET", "/teaching/me", other) == (False, None)
    assert check("/teaching/me", method=1, ip="10.0.0.9", headers=basic("pat"), get={})
    assert handoff.take("POST", "/teaching/me", basic("pat")) == (False, None)
    assert check("/teaching/me", method=1, ip="10.0.0.9", headers=basic("pat"), get={})
    found, principal = handoff.take("GET", "/teaching/me", basic("pat"))
    assert found and principal.user == "pat"
    assert handoff.take("GET", "/teaching/me", basic("pat")) == (False, None)


def test_a_refused_request_hands_nothing_over(fake, services) -> None:  # noqa: F811
    http_filter.register(fake, services)
    assert fake.filter("/teaching/me", method=1, ip="10.0.0.9", headers=basic("pat"), get={})
    # the next request on the thread is refused: the last one's principal is gone
    wrong = basic("pat", "not the password")
    assert not fake.filter("/teaching/me", method=1, ip="10.0.0.9", headers=wrong, get={})
    assert handoff.take("GET", "/teaching/me", basic("pat")) == (False, None)


def test_health_details_from_the_handed_principal(fake, services, counted) -> None:  # noqa: F811
    http_filter.register(fake, services)
    health.register(fake, services)
    assert fake.call("GET", "/teaching/health").json() == {"status": "ok"}
    detailed = fake.call("GET", "/teaching/health", headers=basic("pat")).json()
    assert detailed["status"] == "ok" and "counts" in detailed
    assert fake.call("GET", "/teaching/health", headers=basic("tom")).json() == {"status": "ok"}
    assert counted == ["basic:pat", "basic:tom"]  # once per request, by the filter


def test_the_web_app_takes_the_filters_principal(fake, services, monkeypatch) -> None:  # noqa: F811
    from archive.web import app as web_app
    from archive.web.sessions import SessionStore

    store = services.access_store()
    sid, _ = SessionStore(store.conn).create("pat", _now(), store.session_epoch("pat"))
    http_filter.register(fake, services)
    web.register(fake, services)
    cookie = {"cookie": f"{_cookie_name()}={sid}"}
    seen = []
    real = web_app.principal_of_session
    monkeypatch.setattr(web_app, "principal_of_session", lambda *a: seen.append(a) or real(*a))
    answer = fake.call("GET", "/teaching/ui/", headers=cookie)
    assert answer.status == 200, answer.text
    assert seen == []  # the filter read the session; the web app did not again


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _cookie_name() -> str:
    from archive.web import sessions

    return sessions.COOKIE
