"""The web for every role (issue 22) in a real headless Chromium against a real archive:
thumbnails for every stored object (JPEG 2000 NM, RT plan, SR, CT) and sharp previews;
a trainer edits teaching text and a collection while others only read; personnel draw
mask rectangles on the preview, run the OCR check and release as themselves; a requester
downloads an approved package once through a one-time link; a Board member proposes a
share and records a signed undertaking (a file upload); the audit page filters and no
page makes the browser ask for /favicon.ico. Wrong roles see the reason on the page.

Screenshots go to tests/artifacts/screenshots/ (22-*.png) for review.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import pydicom
import pydicom.data
import pyrage
import pytest
from PIL import Image

from archive import db
from archive.audit.query import iter_records
from archive.governance import Recipients, RemovalRequests, load_policy
from tests.corpus import make_ct_series, make_nm_j2k, make_rt_plan, make_sr_instance, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, base_env, new_archive, register_node
from tests.integration.test_pulls import wait_for_cases
from tests.integration.test_web import (
    CHROMIUM,
    DRIVER,
    _signed_in,
    browser,
    click,
    login,
    shot,
    text,
)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

__all__ = ["browser"]  # the fixture, shared with test_web.py
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and DRIVER.exists()), reason="Debian's chromium is not installed"
)
UI = "/teaching/ui"
USERS = {
    "trainer1": ["trainer"], "trainer2": ["trainer"], "reg1": ["registrar"], "tpd1": ["tpd"],
    "pers1": ["personnel"], "board1": ["board_member"],
}  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[RunningArchive, str]]:
    root = tmp_path_factory.mktemp("web-roles")
    archive = new_archive(root / "home")
    register_node(archive, "suite-scu", "SUITE_SCU", store=True)
    for name, roles in USERS.items():
        add_user(archive, name, roles)
    archive.start()
    try:
        study = pydicom.uid.generate_uid()
        us = pydicom.dcmread(pydicom.data.get_testdata_file("US1_UNCR.dcm"))
        us.Manufacturer = "Unknown Devices Ltd"  # no masking template: held for review
        plain = [*make_ct_series(2, study_uid=study), us]
        files = write_files(root / "in", [to_bytes(d) for d in plain])
        for _ in range(30):  # the DICOM port may open after /teaching/health
            if storescu(archive.dicom_port, archive.aet, "SUITE_SCU", files).returncode == 0:
                break
            time.sleep(1)
        # JPEG 2000 as it is, an RT plan and (its own study) an SR: dcmsend proposes each
        # file's own transfer syntax, as a modality or PACS sending them would.
        others = [make_nm_j2k(8, study_uid=study), make_rt_plan(study_uid=study),
                  make_sr_instance()]  # fmt: skip
        sent = subprocess.run(
            ["dcmsend", "-aet", "SUITE_SCU", "-aec", archive.aet, "127.0.0.1",
             str(archive.dicom_port), *map(str, write_files(root / "more",
                                                              [to_bytes(d) for d in others]))],
            capture_output=True, text=True, env=base_env(), timeout=120, check=False,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        wait_for_cases(archive, 2)  # the CT + RT plan study, the SR study
        yield archive, _case_of(archive, 2)  # the NM waits in quarantine for review
    finally:
        archive.stop()


@pytest.fixture(scope="module")
def registrar(site) -> Iterator[httpx.Client]:
    """reg1 signed in once through the form: the wrong role for most pages here."""
    http = _signed_in(site[0], "reg1")
    try:
        yield http
    finally:
        http.close()


def _db(archive: RunningArchive):
    return db.connect(archive.config.home.db_path)


def _case_of(archive: RunningArchive, series: int) -> str:
    """The CT study's case once `series` series are catalogued (a released NM joins it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = _db(archive)
        try:
            rows = conn.execute(
                "SELECT case_id, series_count FROM catalogue_cases WHERE status = 'available'"
                " AND modalities LIKE '%CT%'"
            ).fetchall()
        finally:
            conn.close()
        if rows and rows[0][1] >= series:
            return rows[0][0]
        time.sleep(0.5)
    raise AssertionError(f"no CT case with {series} series: {rows}; log:\n{archive.log_tail()}")


def _held_count(archive: RunningArchive) -> int:
    conn = _db(archive)
    try:
        return conn.execute("SELECT count(*) FROM quarantine_items WHERE status = 'held'")\
            .fetchone()[0]  # fmt: skip
    finally:
        conn.close()


def _held(archive: RunningArchive, modality: str) -> str:
    conn = _db(archive)
    try:
        return conn.execute(
            "SELECT id FROM quarantine_items WHERE modality = ? AND status = 'held'", (modality,)
        ).fetchone()[0]
    finally:
        conn.close()


def _session(driver, archive: RunningArchive) -> httpx.Client:
    """An HTTP client holding the browser's session cookie (for binary answers)."""
    cookie = driver.get_cookie("archive_session")["value"]
    return httpx.Client(base_url=archive.url, cookies={"archive_session": cookie}, timeout=60)


def _csrf(http: httpx.Client, path: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', http.get(path).text).group(1)


def test_trainer_edits_text_and_a_collection_others_read(site, browser, registrar) -> None:
    archive, case_id = site
    trainer = browser()
    login(trainer, archive, "trainer1")
    trainer.get(f"{archive.url}{UI}/cases/{case_id}")
    click(trainer, "a.edit")
    trainer.find_element(By.ID, "title").send_keys("Bone scan and CT")
    trainer.find_element(By.ID, "diagnosis").send_keys("Metastatic disease")
    trainer.find_element(By.ID, "keywords").send_keys("bone, metastases")
    Select(trainer.find_element(By.ID, "category")).select_by_value("nuclear-medicine")
    shot(trainer, "22-edit")
    click(trainer, "form.edit-case button[type=submit]")
    page = text(trainer)
    assert "Teaching text saved" in page and "Metastatic disease" in page

    trainer.get(f"{archive.url}{UI}/collections")
    trainer.find_element(By.ID, "title").send_keys("Oncology set")
    click(trainer, f'form[action="{UI}/collections"] button')
    assert "Collection created; you own it" in text(trainer)
    trainer.find_element(By.ID, "cases").send_keys(case_id)
    click(trainer, 'form[action$="/add"] button')
    assert case_id in text(trainer) and "Added" in text(trainer)
    collection = trainer.current_url.rsplit("/", 1)[1].split("?")[0]
    shot(trainer, "22-collection")

    other = _signed_in(archive, "trainer2")  # another trainer: reads, cannot change
    try:
        page = other.get(f"{UI}/collections/{collection}").text
        assert "You may read this collection" in page and case_id in page
        csrf = _csrf(other, f"{UI}/collections/{collection}")
        forged = other.post(f"{UI}/collections/{collection}/remove",
                            data={"csrf": csrf, "case": case_id})  # fmt: skip
    finally:
        other.close()
    assert forged.status_code == 403 and "nly the owner" in forged.text
    refused = registrar.get(f"{UI}/cases/{case_id}/edit")
    assert refused.status_code == 403 and "does not allow case.edit" in refused.text


def test_personnel_draws_masks_checks_ocr_and_releases(site, browser, registrar) -> None:
    archive, _ = site
    pers = browser()
    login(pers, archive, "pers1")
    pers.get(f"{archive.url}{UI}/quarantine")
    held = _held_count(archive)  # the US without a template (and the NM, if NM is held)
    assert held in (1, 2) and f"{held} held item(s)" in text(pers)
    click(pers, f"table a[href$='/quarantine/{_held(archive, 'US')}']")
    canvas = pers.find_element(By.ID, "q-canvas")
    pers.execute_script("arguments[0].scrollIntoView()", canvas)
    width = pers.execute_script("return arguments[0].width", canvas)
    assert width > 100
    # drag a rectangle over the top band: the field gets it in the image's own pixels
    pers.find_element(By.ID, "regions").clear()
    top_left_x, top_left_y = -width // 2 + 1, -canvas.size["height"] // 2 + 1
    ActionChains(pers).move_to_element_with_offset(canvas, top_left_x, top_left_y).click_and_hold()\
        .move_by_offset(width - 2, width // 6).release().perform()  # fmt: skip
    drawn = pers.find_element(By.ID, "regions").get_attribute("value")
    x, y, w, h = (int(v) for v in drawn.split(","))
    assert x <= 2 and y <= 2 and w >= 600 and 50 <= h <= 150, drawn  # 640 x 480 pixels
    shot(pers, "22-mask")
    for field, value in (("regions", "0,0,640,108;0,345,640,135"), ("image_area", "0,108,640,237")):
        box = pers.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    click(pers, "#mask-form button[type=submit]")
    assert "Masked; OCR finds 0 word(s) left" in text(pers), text(pers)
    click(pers, "#ocr-check")
    assert "no words left outside the masked regions" in text(pers)
    click(pers, "#release")
    assert "released" in text(pers) and f"{held - 1} held item(s)" in text(pers)
    if held == 2:  # the JPEG 2000 NM: its preview decodes; a nominal mask, OCR clean
        nm = _held(archive, "NM")
        with _session(pers, archive) as http:
            preview = http.get(f"{UI}/quarantine/{nm}/preview", params={"size": "large"})
            assert preview.status_code == 200 and preview.content[:4] == b"\x89PNG"
            csrf = _csrf(http, f"{UI}/quarantine/{nm}")
            masked = http.post(f"{UI}/quarantine/{nm}/mask",
                               data={"csrf": csrf, "regions": "0,0,2,2"})  # fmt: skip
            assert masked.status_code == 303, masked.text[:300]
            released = http.post(f"{UI}/quarantine/{nm}/release", data={"csrf": csrf})
            assert released.status_code == 303, released.text[:300]
    pers.get(f"{archive.url}{UI}/quarantine")
    assert "0 held item(s)" in text(pers)
    item = [r for r in iter_records(archive.config.home.audit_dir)
            if r["action"] == "quarantine.release"][-1]  # fmt: skip
    assert (item["actor"], item["outcome"]) == ("pers1", "success")

    refused = registrar.get(f"{UI}/quarantine")
    assert refused.status_code == 403 and "Only personnel review held studies" in refused.text


def test_every_stored_object_has_a_thumbnail_and_a_sharp_preview(site, browser) -> None:
    archive, _ = site
    case_id = _case_of(archive, 3)  # CT, RT plan and the NM (released above if held)
    reg = browser()
    login(reg, archive, "reg1")
    reg.get(f"{archive.url}{UI}/cases/{case_id}")
    images = reg.find_elements(By.CSS_SELECTOR, ".thumbs img")
    assert len(images) >= 3
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    for img in images:  # lazy images do not hold up the page's load event: wait for each
        WebDriverWait(reg, 30).until(lambda d, img=img: d.execute_script(loaded, img))
    shot(reg, "22-thumbnails")
    kinds = {}
    with _session(reg, archive) as http:
        for n in range(1, len(images) + 1):
            answer = http.get(f"{UI}/cases/{case_id}/series/{n}/thumbnail")
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
            image = Image.open(io.BytesIO(answer.content))
            icon = image.mode == "RGB" and image.getpixel((0, 0)) == (38, 50, 64)
            kinds[n] = "icon" if icon else "image"
            big = http.get(f"{UI}/cases/{case_id}/series/{n}/thumbnail", params={"size": "preview"})
            assert big.status_code == 200
            assert max(Image.open(io.BytesIO(big.content)).size) == 1024  # not a blown-up 64 px
    # CT and the JPEG 2000 NM are images; the RT plan is a typed icon
    assert sorted(kinds.values()) == ["icon", "image", "image"], kinds


def test_requester_downloads_an_approved_package_once(site, browser, registrar) -> None:
    archive, case_id = site
    conn = _db(archive)
    try:
        policy, now = load_policy(archive.config.policies_dir), datetime.now(UTC)
        registry = RemovalRequests(conn, policy)
        level = conn.execute("SELECT level FROM catalogue_cases WHERE case_id = ?",
                             (case_id,)).fetchone()[0]  # fmt: skip
        made = registry.create(
            [case_id], policy.removal_purposes[0], "Teaching day", "trainer1", ["trainer"],
            case_levels={case_id: level}, now=now,
        )  # fmt: skip
        registry.approve(made.id, "tpd1", ["tpd"], "For the day only.", now=now)
    finally:
        conn.close()
    identity = pyrage.x25519.Identity.generate()
    trainer = browser()
    login(trainer, archive, "trainer1")
    trainer.get(f"{archive.url}{UI}/removals")
    trainer.find_element(By.ID, f"key{made.id}").send_keys(str(identity.to_public()))
    click(trainer, f'form[action$="/removals/{made.id}/link"] button')
    link = trainer.find_element(By.ID, "download-link").get_attribute("href")
    shot(trainer, "22-link")
    with _session(trainer, archive) as http:
        first = http.get(link)
        assert first.status_code == 200, first.text[:300]
        assert "attachment" in first.headers["content-disposition"]
        with tarfile.open(fileobj=io.BytesIO(pyrage.decrypt(first.content, [identity]))) as tar:
            assert any(n.endswith(".dcm") for n in tar.getnames())
        again = http.get(link)
        assert again.status_code == 409 and "used already" in again.text
    assert registrar.get(link).status_code in (403, 409)  # bound to the requester


def test_board_member_proposes_and_records_an_undertaking(
    site, browser, registrar, tmp_path
) -> None:
    archive, case_id = site
    conn = _db(archive)
    try:
        policy = load_policy(archive.config.policies_dir)
        Recipients(conn, policy).add(
            "Northern School of Radiology", "uk_radiology_school", "lead@example.org",
            public_key=str(pyrage.x25519.Identity.generate().to_public()),
            data_sharing_agreement=True, added_by="test", now=datetime.now(UTC),
        )  # fmt: skip
    finally:
        conn.close()
    board = browser()
    login(board, archive, "board1")
    board.get(f"{archive.url}{UI}/board")
    board.find_element(By.ID, "cases").send_keys(case_id)
    click(board, f'form[action="{UI}/board/propose"] button')
    assert "recorded in your name" in text(board), text(board)
    signed = tmp_path / "signed-undertaking.pdf"
    signed.write_bytes(b"%PDF-1.4 signed by the recipient")
    form = board.find_element(By.CSS_SELECTOR, "form.undertaking")
    form.find_element(By.NAME, "signatory").send_keys("Dr A Lead")
    form.find_element(By.NAME, "role").send_keys("Head of School")
    board.execute_script(
        "arguments[0].value = '2025-02-27'", form.find_element(By.NAME, "signed_on")
    )
    form.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(signed))
    shot(board, "22-board")
    click(board, "form.undertaking button")
    assert "Signed undertaking for SHARE-" in text(board), text(board)
    refused = registrar.get(f"{UI}/board")
    assert refused.status_code == 403 and "Only members of the School Board" in refused.text


def test_audit_page_filters_and_no_favicon_ico_denials(site, browser) -> None:
    archive, _ = site
    pers = browser()
    login(pers, archive, "pers1")
    pers.get(f"{archive.url}{UI}/audit")
    page = text(pers)
    assert "Detail" in page and "access.decision" not in page.split("Newest", 1)[1]
    Select(pers.find_element(By.ID, "outcome")).select_by_value("denied")
    click(pers, 'form[action$="/audit"] button')
    rows = pers.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert rows and all("denied" in r.text for r in rows)
    shot(pers, "22-audit")
    records = iter_records(archive.config.home.audit_dir)
    favicon = [r for r in records if (r.get("detail") or {}).get("uri") == "/favicon.ico"]
    assert favicon == []
    icon = [r for r in records
            if (r.get("detail") or {}).get("uri") == f"{UI}/static/favicon.png"]  # fmt: skip
    assert icon and all(r["outcome"] == "success" for r in icon)
    assert np  # numpy imported for the pixel checks above
