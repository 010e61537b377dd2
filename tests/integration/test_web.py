"""The web interface in a real headless Chromium (Debian's chromium + chromedriver via
Selenium) against a real archive: sign in and search, request a removal as a trainer,
approve it as a TPD in another browser session, record a Board decision, a registrar
refused an approver's page, a forged form post without the CSRF token refused; the
sign-in form's own token, and old sessions ended by account changes through the CLI.

Screenshots of the main pages go to tests/artifacts/screenshots/ for review.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pyrage
import pytest

from archive import db
from archive.governance import BoardVote, Recipients, Shares, load_policy
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, new_archive, register_node
from tests.integration.test_pulls import wait_for_cases

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and DRIVER.exists()), reason="Debian's chromium is not installed"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[RunningArchive, str, int]]:
    root = tmp_path_factory.mktemp("web")
    archive = new_archive(root / "home")
    register_node(archive, "suite-scu", "SUITE_SCU", store=True)
    for name, roles in (("trainer1", ["trainer"]), ("tpd1", ["tpd"]), ("reg1", ["registrar"]),
                        ("board1", ["board_member"]), ("board2", ["board_member"]),
                        ("board3", ["board_member"])):  # fmt: skip
        add_user(archive, name, roles)
    archive.start()
    try:
        files = write_files(root / "in", [to_bytes(d) for d in make_ct_series(2)])
        for _ in range(30):  # the DICOM port may open after /teaching/health
            if storescu(archive.dicom_port, archive.aet, "SUITE_SCU", files).returncode == 0:
                break
            time.sleep(1)
        case_id = wait_for_cases(archive, 1)[0]
        yield archive, case_id, _share_proposal(archive, case_id)
    finally:
        archive.stop()


def _share_proposal(archive: RunningArchive, case_id: str) -> int:
    """A proposal from board1 to a school, made on the home as the CLI would."""
    conn = db.connect(archive.config.home.db_path)
    try:
        policy, now = load_policy(archive.config.policies_dir), datetime.now(UTC)
        recipient = Recipients(conn, policy).add(
            "Northern School of Radiology", "uk_radiology_school", "lead@example.org",
            public_key=pyrage.x25519.Identity.generate().to_public().__str__(),
            data_sharing_agreement=True, added_by="test", now=now,
        )  # fmt: skip
        shares = Shares(conn, policy)
        level = conn.execute(
            "SELECT level FROM catalogue_cases WHERE case_id = ?", (case_id,)
        ).fetchone()[0]
        return shares.propose(
            [case_id], recipient.id, policy.share_purposes[0],
            BoardVote.of("board1", ["board_member"]), case_levels={case_id: level}, now=now,
        ).id  # fmt: skip
    finally:
        conn.close()


@pytest.fixture
def browser() -> Iterator:
    """A factory of fresh, isolated headless Chromium sessions."""
    drivers, dirs = [], []

    def make():
        profile = tempfile.mkdtemp(prefix="chromium-")
        dirs.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    f"--user-data-dir={profile}", "--disable-dev-shm-usage"):  # fmt: skip
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(DRIVER)))
        driver.set_page_load_timeout(60)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()
    for profile in dirs:
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def login(driver, archive: RunningArchive, user: str) -> None:
    driver.get(archive.url + "/teaching/ui/login")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(archive.passwords[user])
    click(driver, "form button[type=submit]")
    assert "Signed in as" in driver.page_source, driver.page_source[:500]


def click(driver, css: str) -> None:
    """Submit and wait for the next page (never read the old page mid-navigation)."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(driver, 30).until(lambda _d: _gone(old))


def _gone(element) -> bool:
    """True once the old page's element has left the document.

    Selenium's staleness_of only knows StaleElementReferenceException; mid-navigation
    Chromium may instead answer "Node with given id does not belong to the document",
    which is the same fact (the old document is gone).
    """
    try:
        element.is_enabled()
    except WebDriverException:
        return True
    return False


def text(driver) -> str:
    assert "<main" in driver.page_source, driver.page_source[:2000]
    return driver.find_element(By.TAG_NAME, "main").text


def test_trainer_searches_requests_tpd_approves(site, browser) -> None:
    archive, case_id, _ = site
    trainer = browser()
    trainer.get(archive.url + "/teaching/ui/login")
    shot(trainer, "01-login")
    login(trainer, archive, "trainer1")
    trainer.get(archive.url + "/teaching/ui/cases?modality=CT")
    assert "1 case(s) found" in text(trainer)
    img = trainer.find_element(By.CSS_SELECTOR, ".cards img")
    # A lazy thumbnail may still be loading after the page's load event: wait for the
    # browser to finish with it (a broken image is complete too, with no width).
    WebDriverWait(trainer, 30).until(
        lambda d: d.execute_script("return arguments[0].complete", img)
    )
    assert trainer.execute_script("return arguments[0].naturalWidth", img) > 0  # thumbnail
    shot(trainer, "02-search")
    click(trainer, f'a[href="/teaching/ui/cases/{case_id}"]')
    shot(trainer, "03-case")
    trainer.find_element(By.ID, "destination").send_keys("Regional teaching day <b>slides</b>")
    click(trainer, 'form[action="/teaching/ui/removals"] button')
    assert "waits for written approval" in text(trainer)
    assert "pending" in text(trainer) and "<b>slides</b>" in text(trainer)  # escaped, shown
    shot(trainer, "04-removals")

    tpd = browser()  # another browser, another session
    login(tpd, archive, "tpd1")
    tpd.get(archive.url + "/teaching/ui/approvals")
    assert case_id in text(tpd) and "trainer1" in text(tpd)
    shot(tpd, "05-approvals")
    tpd.find_element(By.CSS_SELECTOR, "form.approve textarea").send_keys("For the day only.")
    click(tpd, "form.approve button")
    assert "decided" in text(tpd) and "No removal request is waiting" in text(tpd)

    trainer.get(archive.url + "/teaching/ui/removals")
    assert "approved by tpd1" in text(trainer)


def test_board_records_a_decision_and_exports_register(site, browser) -> None:
    archive, _, proposal = site
    board = browser()
    login(board, archive, "board2")
    board.get(archive.url + "/teaching/ui/shares")
    assert f"SHARE-{proposal:06d}" in text(board)
    board.find_element(By.ID, f"date{proposal}").send_keys(date.today().strftime("%m%d%Y"))
    board.find_element(By.ID, f"minute{proposal}").send_keys("M-12")
    assert not board.find_elements(By.ID, f"approvers{proposal}")  # nobody names voters
    board.find_element(By.ID, f"text{proposal}").send_keys("Approved for teaching.")
    click(board, f'form[action$="/shares/{proposal}/decide"] button')
    assert f"Decision on proposal {proposal} recorded" in text(board), text(board)
    assert "approved, Board" in text(board)
    # Issue 21: recorded by board2, it counts board2 alone until others vote themselves.
    assert "(counted): board2 (1 of 2)" in text(board), text(board)
    # A forged form naming other voters is refused with its reason; nothing is counted.
    cookie = board.get_cookie("archive_session")["value"]
    with httpx.Client(base_url=archive.url, cookies={"archive_session": cookie}) as http:
        page = http.get("/teaching/ui/shares").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        forged = http.post(f"/teaching/ui/shares/{proposal}/vote",
                           data={"csrf": csrf, "approvers": "board3"})  # fmt: skip
        named = http.post(f"/teaching/ui/shares/{proposal}/decide",
                          data={"csrf": csrf, "approvers": "board3", "meeting_date": "2025-01-01",
                                "minute": "M", "text": "t", "outcome": "approved"})  # fmt: skip
    assert forged.status_code == 409 and "already voted" in forged.text  # state (issue 21)
    assert named.status_code == 400 and "their own vote" in named.text
    member = browser()
    login(member, archive, "board3")
    member.get(archive.url + "/teaching/ui/shares")
    click(member, f'form[action$="/shares/{proposal}/vote"] button')
    assert "board2, board3 (2 of 2)" in text(member), text(member)
    shot(board, "06-board")
    board.get(archive.url + "/teaching/ui/shares/register")
    assert "Every share" in text(board)


def test_anonymous_ui_goes_to_sign_in(site) -> None:
    archive, _, _ = site
    with httpx.Client(base_url=archive.url) as http:
        for path in ("/teaching/ui/", "/teaching/ui"):
            answer = http.get(path)
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"] == "/teaching/ui/login"
        assert http.get("/teaching/ui/login").status_code == 200
        assert http.get("/teaching/ui/cases").status_code == 403  # deny by default elsewhere
        assert http.post("/teaching/ui").status_code == 403


def test_refusal_pages_and_rest_bodies_say_why(site, browser) -> None:
    archive, _, proposal = site
    registrar = browser()
    login(registrar, archive, "reg1")
    registrar.get(archive.url + "/teaching/ui/shares")
    assert "Your roles (registrar) do not allow this page" in text(registrar)
    with httpx.Client(base_url=archive.url, auth=("board1", archive.passwords["board1"])) as http:
        answer = http.post(f"/teaching/shares/{proposal}/vote", json={"approvers": ["board3"]})
    assert answer.status_code == 400
    assert "own session" in answer.json()["error"] and answer.json()["next"]


def test_registrar_refused_approver_page(site, browser) -> None:
    archive, _, _ = site
    registrar = browser()
    login(registrar, archive, "reg1")
    assert "Approvals" not in registrar.find_element(By.TAG_NAME, "nav").text
    registrar.get(archive.url + "/teaching/ui/approvals")
    assert "Refused" in registrar.find_element(By.TAG_NAME, "h1").text
    shot(registrar, "07-refused")


def test_forged_post_without_csrf_refused(site, browser) -> None:
    archive, case_id, _ = site
    trainer = browser()
    login(trainer, archive, "trainer1")
    cookie = trainer.get_cookie("archive_session")
    assert (
        cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/teaching/ui"
    )
    form = {"cases": case_id, "purpose": "teaching_materials", "destination": "forged"}
    with httpx.Client(base_url=archive.url, cookies={"archive_session": cookie["value"]}) as http:
        page = http.get("/teaching/ui/removals")
        assert page.status_code == 200  # the cookie alone is a valid session ...
        forged = http.post("/teaching/ui/removals", data=form)
        assert forged.status_code == 403  # ... but a post without the token is refused
        mine = http.get("/teaching/ui/removals").text
    assert "forged" not in mine
    # the cookie does not open the REST API (Path and filter both keep it to /teaching/ui)
    with httpx.Client(base_url=archive.url, cookies={"archive_session": cookie["value"]}) as http:
        assert http.get("/teaching/cases").status_code in (401, 403)


def _signed_in(archive: RunningArchive, user: str, password: str | None = None) -> httpx.Client:
    """A browser-like client signed in through the form (its token and pre-session
    cookie), holding the session cookie."""
    http = httpx.Client(base_url=archive.url, timeout=60)
    form = http.get("/teaching/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    answer = http.post(
        "/teaching/ui/login",
        data={"user": user, "password": password or archive.passwords[user], "csrf": token},
    )
    assert answer.status_code == 303, answer.text[:300]
    return http


def _alive(http: httpx.Client) -> bool:
    answer = http.get("/teaching/ui/")
    return answer.status_code == 200 and "Signed in as" in answer.text


def test_sign_in_without_the_form_token_is_refused(site) -> None:
    archive, _, _ = site
    creds = {"user": "trainer1", "password": archive.passwords["trainer1"]}
    with httpx.Client(base_url=archive.url, timeout=60) as http:
        bare = http.post("/teaching/ui/login", data=creds)
        assert bare.status_code == 403 and "archive_session" not in str(bare.headers)
        form = http.get("/teaching/ui/login")  # the form's token, but not its cookie:
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    with httpx.Client(base_url=archive.url, timeout=60) as forger:
        forged = forger.post("/teaching/ui/login", data={**creds, "csrf": token})
        assert forged.status_code == 403 and "archive_session" not in str(forged.headers)


@pytest.mark.parametrize("change", ["reset-password", "disable", "roles", "training"])
def test_old_session_ends_on_account_change_and_stays_ended(site, change: str) -> None:
    """Finding 7: after `users reset-password` the old web session still worked, and
    disable + enable revived sessions. Each change through the CLI, on the running
    archive: the old session dies at once, and re-enabling does not revive it."""
    archive, _, _ = site
    name = f"sess-{change.split('-')[0]}"
    if name not in archive.passwords:
        add_user(archive, name, ["registrar"])
    http = _signed_in(archive, name)
    bystander = _signed_in(archive, "tpd1")
    try:
        assert _alive(http)
        if change == "reset-password":
            new = "a brand new password 42"
            done = archive.cli("users", "reset-password", name, "--password-stdin",
                               input_text=new + "\n")  # fmt: skip
        elif change == "disable":
            done = archive.cli("users", "disable", name)
        elif change == "roles":
            done = archive.cli("users", "roles", name, "--role", "trainer")
        else:  # training withdrawn: a record that is not valid today
            done = archive.cli("users", "train", name, "--no-suite-use")
        assert done.returncode == 0, done.stderr
        assert "web sessions ended" in done.stdout
        assert not _alive(http)
        enabled = archive.cli("users", "disable", name, "--enable")
        assert enabled.returncode == 0, enabled.stderr
        assert not _alive(http)  # re-enabling never revives an old session
        assert _alive(bystander)  # nobody else was signed out
        if change == "reset-password":
            archive.passwords[name] = new
        if change != "training":
            assert _alive(_signed_in(archive, name))  # a new sign-in works
    finally:
        http.close()
        bystander.close()
