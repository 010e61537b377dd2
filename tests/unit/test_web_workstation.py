"""The web page "I am at MacLab 3" (issue 23) without Orthanc: sign in at a workstation,
the session the DICOM front reads, sign out, and who may see the page."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest

from archive.access.nodes import workstations
from archive.dicom.sessions import SessionTable
from archive.paths import POLICIES_DIR
from archive.web import WebApp, WebRequest
from tests.unit.test_web import NOW, Clock, FakeBackend, _login


class Backend(FakeBackend):
    policies_dir = POLICIES_DIR

    def workstations(self) -> list[str]:
        return ["ws1", "ws3"]


@pytest.fixture
def app(tmp_path: Path) -> WebApp:
    backend = Backend(tmp_path / "a.db")
    for name, roles in (("trainer", ["trainer"]), ("board", ["board_member"])):
        backend.store.add_user(name, f"pw-{name}-long-enough-42", roles, NOW, by="t")
        backend.store.record_training(name, NOW.date(), NOW, by="t")
    for name in ("ws1", "ws3"):
        workstations(backend.conn).add(name, name.upper(), "10.0.0.3", 104, f"MacLab {name[-1]}",
                                       "t", NOW)  # fmt: skip
    return WebApp(backend, clock=Clock())


def _post(app: WebApp, cookie: str, path: str, **form: str):
    return app.handle(
        WebRequest("POST", path, headers={"cookie": cookie}, body=urlencode(form).encode())
    )


def test_a_trainer_signs_in_at_maclab_3_and_out_again(app: WebApp) -> None:
    cookie, csrf = _login(app, "trainer")
    page = app.handle(WebRequest("GET", "/workstation", headers={"cookie": cookie}))
    assert page.status == 200
    assert "MacLab 3 (ws3)" in page.body.decode()
    home = app.handle(WebRequest("GET", "/", headers={"cookie": cookie})).body.decode()
    assert "/teaching/ui/workstation" in home
    done = _post(app, cookie, "/workstation", csrf=csrf, workstation="ws3", minutes="60")
    assert done.status == 200, done.body
    assert "You are at ws3" in done.body.decode()
    session = SessionTable(app.backend.conn).active("ws3", NOW)
    assert session.user == "trainer" and (session.expires_at - NOW).seconds == 3600
    event = app.backend.events[-1]
    assert (event.action, event.outcome, event.actor, event.source) == (
        "workstation.sign_in", "success", "trainer", "web",
    )  # fmt: skip
    out = _post(app, cookie, "/workstation/end", csrf=csrf, workstation="ws3")
    assert out.status == 200 and "Signed out of ws3" in out.body.decode()
    assert SessionTable(app.backend.conn).active("ws3", NOW) is None


def test_refusals_show_why_and_what_next(app: WebApp) -> None:
    cookie, csrf = _login(app, "trainer")
    unknown = _post(app, cookie, "/workstation", csrf=csrf, workstation="nope")
    assert unknown.status == 404 and "not a registered suite workstation" in unknown.body.decode()
    too_long = _post(app, cookie, "/workstation", csrf=csrf, workstation="ws1", minutes="9999")
    assert too_long.status == 400 and "at most 720 minutes" in too_long.body.decode()
    forged = _post(app, cookie, "/workstation", workstation="ws1")  # no CSRF token
    assert forged.status == 403
    board, _ = _login(app, "board")
    page = app.handle(WebRequest("GET", "/workstation", headers={"cookie": board}))
    assert page.status == 403
    assert SessionTable(app.backend.conn).all_active(NOW) == []
