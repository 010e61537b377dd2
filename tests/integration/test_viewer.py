"""The browser viewer (issue 22) in a real headless Chromium against a real archive.

- OHIF (vendor/ohif, installed by make setup) opens a released CT series through the
  archive's own DICOMweb: the canvas shows non-blank pixels, scrolling changes the
  slice, a window/level preset changes the pixels; the study's opening is audited once,
  not once per frame.
- A registrar cannot fetch an unreleased (quarantined) study's DICOMweb URLs, nor a
  study UID the catalogue does not release: 403, audited.
- Quiz mode: a case a trainer presents as an unknown shows its history first; until the
  registrar reveals it, the diagnosis is absent from the page and from the viewer's
  DICOMweb metadata; the registrar's own answer is shown beside the answer after reveal,
  and another registrar still sees the case unrevealed.

Screenshots go to tests/artifacts/screenshots/ for review.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pydicom.data
import pytest

from archive import db
from archive.web.viewer import viewer_dir
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, new_archive, register_node
from tests.integration import test_web as web
from tests.integration.test_pulls import wait_for_cases
from tests.integration.test_web import CHROMIUM, DRIVER, click, login, shot

webdriver = pytest.importorskip("selenium.webdriver")
Image = pytest.importorskip("PIL.Image")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not (CHROMIUM.exists() and DRIVER.exists()), reason="no chromium"),
    pytest.mark.skipif(not (viewer_dir() / "index.html").exists(), reason="run make setup"),
]
browser = web.browser  # the web tests' fixture: fresh headless Chromium sessions
SLICES = 10
SECRET = "PNEUMOTHORAX"  # in the descriptions: must not reach a quiz-taker before reveal
DIAGNOSIS = "Tension pneumothorax with mediastinal shift"
HISTORY = "Sudden breathlessness after a fall."


def _ct(slices: int = SLICES) -> list[bytes]:
    """A CT series whose slices differ (a disk growing through the stack)."""
    series = make_ct_series(slices, rows=128, columns=128)
    yy, xx = np.mgrid[0:128, 0:128]
    for i, ds in enumerate(series):
        radius = 10 + i * 3
        disk = (yy - 64) ** 2 + (xx - 64) ** 2 < radius * radius
        img = np.where(disk, 1024 + 300, 1024 - 800).astype(np.uint16)
        img[:, :20] = 1024 + 50  # a soft-tissue band
        ds.PixelData = img.tobytes()
        ds.StudyDescription = f"CT chest {SECRET}"
        ds.SeriesDescription = f"Axial {SECRET}"
    return [to_bytes(d) for d in series]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    archive = new_archive(root / "home")
    register_node(archive, "suite-scu", "SUITE_SCU", store=True)
    for name, roles in (("trainer1", ["trainer"]), ("reg1", ["registrar"]),
                        ("reg2", ["registrar"]), ("board1", ["board_member"]),
                        ("pat", ["personnel"])):  # fmt: skip
        add_user(archive, name, roles)
    archive.start()
    try:
        files = write_files(root / "in", [*_ct(), *_ct(4), *_ct(4)])
        for _ in range(30):
            if storescu(archive.dicom_port, archive.aet, "SUITE_SCU", files).returncode == 0:
                break
            time.sleep(1)
        with client(archive, "pat") as rest:  # an RLE-compressed MR, kept compressed
            rle = Path(pydicom.data.get_testdata_file("MR_small_RLE.dcm")).read_bytes()
            stored = rest.post("/instances", content=rle,
                               headers={"content-type": "application/dicom"})  # fmt: skip
            assert stored.status_code == 200, stored.text
        wait_for_cases(archive, 4)
        yield archive, _roles_of_cases(archive)
    finally:
        archive.stop()


def _roles_of_cases(archive: RunningArchive) -> dict[str, str]:
    """viewer: the 10-slice CT; quiz and held: the 4-slice CTs; rle: the MR."""
    conn = db.connect(archive.config.home.db_path)
    try:
        rows = conn.execute(
            "SELECT case_id, modalities, instance_count FROM catalogue_cases ORDER BY case_id"
        ).fetchall()
    finally:
        conn.close()
    small = [r[0] for r in rows if "CT" in r[1] and r[2] == 4]
    return {
        "viewer": next(r[0] for r in rows if "CT" in r[1] and r[2] == SLICES),
        "quiz": small[0],
        "held": small[1],
        "rle": next(r[0] for r in rows if "MR" in r[1]),
    }


def _study_uid(archive: RunningArchive, case_id: str) -> str:
    conn = db.connect(archive.config.home.db_path)
    try:
        return conn.execute(
            "SELECT study_uid FROM catalogue_cases WHERE case_id = ?", (case_id,)
        ).fetchone()[0]
    finally:
        conn.close()


def _audit(archive: RunningArchive, action: str | None = None) -> list[dict]:
    time.sleep(0.3)  # group commit
    shown = archive.cli("audit", "show", "--json", *(("--action", action) if action else ()))
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


@contextmanager
def _session(archive: RunningArchive, user: str) -> Iterator[httpx.Client]:
    """A web session signed in through the sign-in form, as a browser would."""
    with httpx.Client(base_url=archive.url, timeout=60) as http:
        yield _sign_in(http, archive, user)


def _sign_in(http: httpx.Client, archive: RunningArchive, user: str) -> httpx.Client:
    page = http.get("/teaching/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = {"csrf": csrf, "user": user, "password": archive.passwords[user]}
    answer = http.post("/teaching/ui/login", data=form)
    assert answer.status_code == 303, answer.text[:300]
    return http


def _viewport(driver):
    canvas = driver.find_element(By.CSS_SELECTOR, "[data-cy=viewport-grid] canvas")
    image = Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("L")
    return np.asarray(image).astype(int), canvas


def _wait_for_image(driver, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pixels, canvas = _viewport(driver)
            if pixels.std() > 10:
                return pixels, canvas
        except Exception:  # noqa: BLE001, S110 - not rendered yet
            pass
        time.sleep(0.5)
    raise AssertionError("the viewer showed no image")


def _wait_for_change(driver, before, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        after, canvas = _viewport(driver)
        if np.abs(after - before).mean() > 0.5:
            return after, canvas
        time.sleep(0.3)
    raise AssertionError("the viewport did not change")


def _overlay(driver) -> str:
    """The viewport's overlay text without whitespace (e.g. "I:2(2/16)", "W:1500")."""
    return "".join(driver.find_element(By.CSS_SELECTOR, "[data-cy=viewport-grid]").text.split())


def test_viewer_scrolls_and_windows_a_ct_series_audited_once(site, browser) -> None:
    archive, cases = site
    uid = _study_uid(archive, cases["viewer"])
    driver = browser()
    login(driver, archive, "reg1")
    driver.get(f"{archive.url}/teaching/ui/viewer/viewer?StudyInstanceUIDs={uid}")
    first, canvas = _wait_for_image(driver)
    assert first.max() > 100, "the canvas is blank"
    assert f"1/{SLICES}" in _overlay(driver)
    shot(driver, "20-viewer-ct")
    # No download button (configured out).
    assert not [b for b in driver.find_elements(By.CSS_SELECTOR, "[data-cy=Capture]")
                if b.is_displayed()]  # fmt: skip
    # Stack scrolling: the wheel moves to another slice and the pixels change.
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, 400).perform()
    scrolled, canvas = _wait_for_change(driver, first)
    assert f"1/{SLICES}" not in _overlay(driver)
    # Window/level: the lung preset (hotkey 2) changes the pixels of the same slice.
    ActionChains(driver).move_to_element(canvas).click().send_keys("2").perform()
    windowed, _ = _wait_for_change(driver, scrolled)
    assert "W:1500" in _overlay(driver)
    shot(driver, "21-viewer-lung-preset")
    # Everything came from the archive itself (works offline; the CSP allows nothing else).
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(u.startswith(archive.url) or u.startswith(("data:", "blob:"))
                          for u in loaded), loaded  # fmt: skip
    # A study stored RLE-compressed: its frames go to the browser as stored, OHIF decodes.
    rle = _study_uid(archive, cases["rle"])
    driver.get(f"{archive.url}/teaching/ui/viewer/viewer?StudyInstanceUIDs={rle}")
    pixels, _ = _wait_for_image(driver)
    assert pixels.max() > 100
    shot(driver, "22-viewer-rle-mr")
    opened = [r for r in _audit(archive, "viewer.open")
              if r["actor"] == "reg1" and r["target"] == cases["viewer"]]  # fmt: skip
    assert len(opened) == 1, opened  # one record for the study, not one per frame
    per_request = [r for r in _audit(archive, "access.decision") if r["actor"] == "reg1"
                   and "/dicomweb/" in r["detail"]["uri"]]  # fmt: skip
    assert per_request == []  # nor one filter line per frame
    assert opened[-1]["outcome"] == "success" and opened[-1]["target"] == cases["viewer"]


def test_viewer_shows_compressed_frames_as_stored(site) -> None:
    """Frames stored RLE-compressed are answered as stored (image/dicom-rle); the first
    test shows OHIF decoding them in the browser."""
    archive, cases = site
    uid = _study_uid(archive, cases["rle"])
    with _session(archive, "reg1") as http:
        base = f"/teaching/ui/dicomweb/studies/{uid}"
        meta = http.get(f"{base}/metadata").json()[0]
        series, sop = meta["0020000E"]["Value"][0], meta["00080018"]["Value"][0]
        frame = http.get(f"{base}/series/{series}/instances/{sop}/frames/1")
        assert frame.status_code == 200
        assert 'type="image/dicom-rle"' in frame.headers["content-type"]
        assert "transfer-syntax=1.2.840.10008.1.2.5" in frame.text[:300]


def test_registrar_refused_unreleased_study_403_audited(site) -> None:
    archive, cases = site
    uid = _study_uid(archive, cases["held"])
    conn = db.connect(archive.config.home.db_path)
    try:  # the study goes back under review: no longer released
        conn.execute("UPDATE catalogue_cases SET status = 'quarantined' WHERE case_id = ?",
                     (cases["held"],))  # fmt: skip
        conn.commit()
    finally:
        conn.close()
    with _session(archive, "reg1") as http:
        base = f"/teaching/ui/dicomweb/studies/{uid}"
        for path in (
            f"{base}/series",
            f"{base}/metadata",
            f"{base}/series/1.2/instances/1.3/frames/1",
        ):
            answer = http.get(path)
            assert answer.status_code == 403, (path, answer.status_code)
            assert answer.json()["next"]
        unknown = http.get("/teaching/ui/dicomweb/studies/1.2.3.4.5/metadata")
        assert unknown.status_code == 403
        # No whole DICOM files for browsers, whatever the study.
        assert http.get(f"{base}/series/1.2/instances/1.3").status_code in (403, 404)
    denied = [r for r in _audit(archive, "viewer.open")
              if r["outcome"] == "denied" and r["actor"] == "reg1"]  # fmt: skip
    assert any(r["target"] == cases["held"] and "available" in r["detail"]["reason"]
               for r in denied), denied  # fmt: skip
    assert any("not released" in r["detail"].get("reason", "") or r["target"] is None
               for r in denied)  # fmt: skip
    # HTTP Basic (no web session) and the Board (no view right) get nothing either.
    with client(archive, "reg1") as basic:
        answer = basic.get(f"/teaching/ui/dicomweb/studies/{uid}/series")
        assert answer.status_code == 303 and answer.headers["location"].endswith("/login")
    with _session(archive, "board1") as board:
        other = _study_uid(archive, cases["viewer"])
        assert board.get(f"/teaching/ui/dicomweb/studies/{other}/series").status_code == 403


def _metadata_text(http: httpx.Client, uid: str) -> str:
    base = f"/teaching/ui/dicomweb/studies/{uid}"
    parts = [http.get(f"/teaching/ui/dicomweb/studies?StudyInstanceUID={uid}"),
             http.get(f"{base}/series"), http.get(f"{base}/metadata")]  # fmt: skip
    assert all(p.status_code == 200 for p in parts), [p.status_code for p in parts]
    return " ".join(p.text for p in parts)


def test_quiz_hides_the_diagnosis_until_reveal(site, browser) -> None:
    archive, cases = site
    case_id, uid = cases["quiz"], _study_uid(archive, cases["quiz"])
    with client(archive, "trainer1") as rest:
        edited = rest.put(f"/teaching/cases/{case_id}", json={
            "title": "Pneumothorax on CT", "clinical_history": HISTORY,
            "findings": "Large left pneumothorax.", "diagnosis": DIAGNOSIS,
            "discussion": "Decompress first."})  # fmt: skip
        assert edited.status_code == 200, edited.text
    with _session(archive, "trainer1") as trainer:  # the trainer's own web session
        catalogue_page = trainer.get(f"/teaching/ui/cases/{case_id}").text
        assert f'href="/teaching/ui/teach/cases/{case_id}"' in catalogue_page
        assert 'href="/teaching/ui/teach/today"' in catalogue_page  # in the navigation
        page = trainer.get(f"/teaching/ui/teach/cases/{case_id}").text
        assert DIAGNOSIS in page  # not yet an unknown
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        marked = trainer.post(f"/teaching/ui/teach/cases/{case_id}/unknown",
                              data={"csrf": csrf, "on": "1"})  # fmt: skip
        chosen = trainer.post("/teaching/ui/teach/today", data={"csrf": csrf, "case": case_id})
        assert marked.status_code == chosen.status_code == 303

    registrar = browser()
    login(registrar, archive, "reg2")
    registrar.get(f"{archive.url}/teaching/ui/cases/{case_id}")  # the catalogue page...
    assert f"/teach/cases/{case_id}" in registrar.current_url  # ...sends to the quiz
    registrar.get(f"{archive.url}/teaching/ui/cases?modality=CT")  # search: no title
    assert "Unknown case" in registrar.page_source
    assert "Pneumothorax on CT" not in registrar.page_source
    registrar.get(f"{archive.url}/teaching/ui/teach/today")
    page = registrar.page_source
    assert HISTORY in page and "Unknown case" in page
    for secret in (DIAGNOSIS, SECRET, "Pneumothorax", "Decompress", "Large left"):
        assert secret.lower() not in page.lower(), secret
    shot(registrar, "23-quiz-before-reveal")
    cookie = registrar.get_cookie("archive_session")["value"]
    with httpx.Client(base_url=archive.url, cookies={"archive_session": cookie}) as http:
        metadata = _metadata_text(http, uid)
    assert SECRET not in metadata and "Unknown case" in metadata and "Series 1" in metadata

    registrar.find_element(By.ID, "answer").send_keys("Left pneumothorax, tension")
    click(registrar, f'form[action="/teaching/ui/teach/cases/{case_id}/answer"] button')
    assert "Your answer is saved" in registrar.page_source
    assert DIAGNOSIS not in registrar.page_source
    click(registrar, f'form[action="/teaching/ui/teach/cases/{case_id}/reveal"] button')
    page = registrar.page_source
    assert DIAGNOSIS in page and "Decompress first." in page
    assert "Left pneumothorax, tension" in registrar.find_element(By.CSS_SELECTOR, ".mine").text
    shot(registrar, "24-quiz-revealed")
    with httpx.Client(base_url=archive.url, cookies={"archive_session": cookie}) as http:
        assert SECRET in _metadata_text(http, uid)

    # Nor over REST (the catalogue's own routes), for a registrar who has not revealed it.
    with client(archive, "reg1") as rest:
        shown = rest.get(f"/teaching/cases/{case_id}")
        assert shown.status_code == 200 and shown.json()["title"] == "Unknown case"
        assert DIAGNOSIS not in shown.text and SECRET not in shown.text
        found = rest.get("/teaching/cases", params={"modality": "CT"}).json()["items"]
        listed = next(c for c in found if c["case_id"] == case_id)
        assert listed["title"] == "Unknown case" and DIAGNOSIS not in json.dumps(listed)
        assert SECRET not in json.dumps(listed)
    # The reveal and the answer are private: another registrar still sees an unknown.
    with _session(archive, "reg1") as other:
        page = other.get(f"/teaching/ui/teach/cases/{case_id}").text
        assert DIAGNOSIS not in page and "Left pneumothorax" not in page
        assert SECRET not in _metadata_text(other, uid)
    records = [r for r in _audit(archive) if r["target"] == case_id]
    acts = {(r["action"], r["actor"]) for r in records if r["outcome"] == "success"}
    assert {("quiz.mark", "trainer1"), ("case_of_day.choose", "trainer1"),
            ("quiz.answer", "reg2"), ("quiz.reveal", "reg2")} <= acts  # fmt: skip
    assert all("Left pneumothorax" not in json.dumps(r) for r in records)  # private


def test_teaching_session_presents_a_collection_in_order(site) -> None:
    """A trainer's collection, presented one case at a time with the viewer filling the
    window; an unknown in it shows no title or diagnosis to a registrar who has not
    revealed it. (Runs after the quiz test: the quiz case is an unknown to reg1.)"""
    archive, cases = site
    with client(archive, "trainer1") as rest:
        made = rest.post("/teaching/collections", json={"title": "Chest emergencies"})
        assert made.status_code == 200, made.text
        col = made.json()["collection_id"]
        added = rest.post(f"/teaching/collections/{col}/items",
                          json={"cases": [cases["viewer"], cases["quiz"]]})  # fmt: skip
        assert added.status_code == 200, added.text
    with _session(archive, "reg1") as http:
        first = http.get(f"/teaching/ui/teach/sessions/{col}")
        assert first.status_code == 200 and "1 of 2" in first.text
        assert f"StudyInstanceUIDs={_study_uid(archive, cases['viewer'])}" in first.text
        assert 'class="session-viewer"' in first.text and "?step=2" in first.text
        second = http.get(f"/teaching/ui/teach/sessions/{col}?step=2").text
        assert "2 of 2" in second and "Unknown case" in second and HISTORY in second
        assert DIAGNOSIS not in second and "Pneumothorax on CT" not in second
        script = http.get("/teaching/ui/teach/static/session.js")
        assert script.status_code == 200 and "requestFullscreen" in script.text
