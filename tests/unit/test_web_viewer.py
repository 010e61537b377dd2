"""The viewer's files in the web app (archive/web/viewer.py), without Orthanc: served only
in a session, with the viewer's own CSP (framable by the archive's pages, nothing from
other origins), the viewer's routes answered by its index, nothing outside its folder,
and a clear 503 when make setup has not installed it."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.web import WebApp, WebRequest
from archive.web.viewer import VIEWER_DIR_ENV
from tests.unit.test_web import NOW, Clock, FakeBackend, _login


@pytest.fixture
def app(tmp_path: Path, monkeypatch):
    viewer = tmp_path / "ohif"
    viewer.mkdir()
    (viewer / "index.html").write_text("<html>viewer index</html>")
    (viewer / "app.bundle.0123456789abcdef.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside")
    monkeypatch.setenv(VIEWER_DIR_ENV, str(viewer))
    backend = FakeBackend(tmp_path / "a.db")
    backend.store.add_user("reg", "pw-reg-long-enough-42", ["registrar"], NOW, by="t")
    backend.store.record_training("reg", NOW.date(), NOW, by="t")
    return WebApp(backend, clock=Clock())


def _get(app: WebApp, path: str, cookie: str | None):
    return app.handle(WebRequest("GET", path, headers={"cookie": cookie} if cookie else {}))


def test_viewer_files_need_a_session_and_carry_the_viewer_csp(app):
    assert _get(app, "/viewer/", None).status == 303  # to the sign-in page
    cookie, _ = _login(app, "reg")
    page = _get(app, "/viewer/viewer", cookie)  # one of the viewer's own routes
    headers = dict(page.headers)
    assert page.status == 200 and b"viewer index" in page.body
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert [n for n, _ in page.headers].count("Content-Security-Policy") == 1
    bundle = _get(app, "/viewer/app.bundle.0123456789abcdef.js", cookie)
    assert bundle.status == 200 and bundle.content_type.startswith("text/javascript")
    assert "immutable" in dict(bundle.headers)["Cache-Control"]
    assert _get(app, "/viewer/missing.js", cookie).status == 404
    assert _get(app, "/viewer/../secret.txt", cookie).status == 404


def test_viewer_not_installed_says_what_to_do(app, monkeypatch, tmp_path):
    cookie, _ = _login(app, "reg")
    monkeypatch.setenv(VIEWER_DIR_ENV, str(tmp_path / "nowhere"))
    answer = _get(app, "/viewer/", cookie)
    assert answer.status == 503 and b"make setup" in answer.body
