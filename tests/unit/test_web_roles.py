"""The web for every role (issue 22), with the app's test client and real domain rooms on
a temporary database: trainers edit teaching text and collections, personnel review the
quarantine (preview, mask, OCR check, release, reject), a requester downloads an approved
package through a one-time link, Board members propose and record undertakings, search
facets are selects, the audit page filters and hides the per-request lines, and every
page links a favicon. Each act works as the right role and is refused, with its reason
on the page and in the audit log, for a wrong one."""

from __future__ import annotations

import base64
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pyrage
import pytest

from archive import db
from archive.access import AccessStore, load_route_policy
from archive.audit.log import AuditLog
from archive.catalogue import Catalogue
from archive.catalogue.model import SeriesSummary, StudySummary
from archive.governance import Recipients, RemovalRequests, Shares, load_policy
from archive.paths import POLICIES_DIR, HomePaths
from archive.quarantine import QuarantineStore
from archive.vault import Keyring
from archive.vault.sealing import KdfParams
from archive.web import SessionStore, WebApp, WebRequest
from archive.web.sessions import session_id_from
from tests.corpus import make_ct_series, to_bytes

NOW = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
PASS = "a passphrase for unit tests only"
FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
USERS = {
    "trainer1": ["trainer"],
    "trainer2": ["trainer"],
    "reg": ["registrar"],
    "tpd": ["tpd"],
    "pers": ["personnel"],
    "pers2": ["personnel"],
    "board1": ["board_member"],
}


class MemoryStore:
    """Stands in for the vault store of signed undertakings."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, int], bytes] = {}

    def write(self, uuid: str, content_type: int, data: bytes) -> None:
        self.files[(uuid, content_type)] = data


class Backend:
    """Real access, catalogue, quarantine, governance and audit log on temporary files;
    what needs Orthanc (release, export) is recorded instead."""

    def __init__(self, root: Path) -> None:
        self.conn = db.connect(root / "a.db")
        self.store = AccessStore(self.conn)
        self.route_policy = load_route_policy(POLICIES_DIR)
        self.governance_policy = load_policy(POLICIES_DIR)
        self.policies_dir = POLICIES_DIR
        self.home = HomePaths(root / "home")
        self.home.audit_dir.mkdir(parents=True)
        self.log = AuditLog(self.home.audit_dir, durable=False)
        self.ring = Keyring.create(root / "keys" / "keyring.json", PASS, kdf=FAST)
        self.events: list = []
        self.released: list = []
        self.exports: list = []
        self.vault = MemoryStore()

    def db(self):
        return self.conn

    def access_store(self):
        return self.store

    def record(self, event) -> int:
        self.events.append(event)
        return self.log.append(event)

    def catalogue_room(self):
        from archive.catalogue.usecases import CatalogueRoom
        from archive.core import Ports

        ports = Ports(db=self.conn, audit=self, policies_dir=POLICIES_DIR, source="web")
        return CatalogueRoom(ports, "TST")

    def append(self, event) -> int:  # the audit port of the use cases
        return self.record(event)

    def catalogue(self, principal):
        return self.catalogue_room().catalogue()

    def quarantine(self):
        return QuarantineStore(self.home, self.ring, self.conn)

    def release_quarantine(self, principal, item_id, note):
        """The real release use case; storing into Orthanc is recorded instead."""
        from archive.core import Ports
        from archive.pixels import load_masking_policy
        from archive.quarantine import usecases as uq
        from archive.web.app import outcome

        ports = Ports(db=self.conn, audit=self, policies_dir=POLICIES_DIR, source="web")
        room = uq.QuarantineRoom(ports, self.quarantine(), load_masking_policy(POLICIES_DIR))

        def store(data: bytes) -> dict:
            self.released.append((principal.user, item_id, note))
            return {"ID": "orthanc-id"}

        return outcome(uq.release_item(
            room, principal, item_id, note, mint=lambda item, data, who: "nonce",
            store_instance=store, redeemed=lambda nonce: True,
            record_flags=lambda item, flags: None,
        ))  # fmt: skip

    def export_removal(self, principal, rid, body):
        self.exports.append((principal.user, rid, body))
        return b"age-encrypted package", f"REM-{rid:06d}"

    def undertaking_store(self):
        return self.vault

    def workstations(self):
        return []


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def accounts(tmp_path_factory) -> Path:
    """The users once per module (password hashing is slow); each test copies the file."""
    path = tmp_path_factory.mktemp("accounts") / "a.db"
    conn = db.connect(path)
    store = AccessStore(conn)
    for name, roles in USERS.items():
        store.add_user(name, f"pw-{name}-long-enough-42", roles, NOW, by="t")
        store.record_training(name, NOW.date(), NOW, by="t")
    conn.close()
    return path


@pytest.fixture
def app(tmp_path: Path, accounts: Path) -> WebApp:
    shutil.copyfile(accounts, tmp_path / "a.db")
    return WebApp(Backend(tmp_path), clock=Clock())


def _case(app: WebApp, n: int = 1, status: str = "available") -> str:
    uid = f"2.25.{1000 + n}"
    summary = StudySummary(
        study_uid=uid,
        patient_pseudonym=f"PSN{n}",
        modalities=["CT"],
        body_part="CHEST",
        series_count=1,
        instance_count=2,
        age_band="40-44",
        sex="F",
        level="publication",
        intake="dicom",
        series=[SeriesSummary(f"{uid}.1", "CT", "axial", 2, f"s{n}")],
    )
    return (
        Catalogue(app.backend.conn, "TST")
        .upsert_from_study(summary, f"o{n}", NOW, status=status)
        .case_id
    )


class Browser:
    """A signed-in session: GET and POST (with the session's CSRF token) like a browser."""

    def __init__(self, app: WebApp, user: str) -> None:
        self.app = app
        page = app.handle(WebRequest("GET", "/login"))
        cookie = dict(page.headers)["Set-Cookie"].split(";")[0]
        token = re.search(r'name="csrf" value="([^"]+)"', page.body.decode()).group(1)
        body = urlencode({"user": user, "password": f"pw-{user}-long-enough-42", "csrf": token})
        answer = app.handle(
            WebRequest("POST", "/login", headers={"cookie": cookie}, body=body.encode())
        )
        assert answer.status == 303, answer.body
        sid = session_id_from(dict(answer.headers)["Set-Cookie"].split(";")[0])
        self.cookie = f"archive_session={sid}"
        self.csrf = SessionStore(app.backend.db()).lookup(sid, app.clock()).csrf

    def get(self, path: str, **query: str):
        return self.app.handle(
            WebRequest("GET", path, query=query, headers={"cookie": self.cookie})
        )

    def post(self, path: str, **form: str):
        body = urlencode({"csrf": self.csrf, **form}).encode()
        return self.app.handle(WebRequest("POST", path, headers={"cookie": self.cookie}, body=body))


def _last(app: WebApp, action: str):
    return [e for e in app.backend.events if e.action == action][-1]


def _text(answer) -> str:
    return answer.body.decode()


# -- trainers: teaching text ---------------------------------------------------------------
def test_trainer_edits_teaching_text_in_one_audited_act(app: WebApp) -> None:
    case_id = _case(app)
    trainer = Browser(app, "trainer1")
    page = trainer.get(f"/cases/{case_id}")
    assert f'href="/teaching/ui/cases/{case_id}/edit"' in _text(page)
    form = trainer.get(f"/cases/{case_id}/edit")
    assert form.status == 200 and 'name="diagnosis"' in _text(form)
    assert '<select id="category"' in _text(form) and 'value="thoracic"' in _text(form)
    before = len(app.backend.events)
    done = trainer.post(
        f"/cases/{case_id}/edit",
        title="Lung nodule",
        clinical_history="Cough.",
        findings="A 9 mm nodule.",
        diagnosis="Hamartoma",
        discussion="Popcorn.",
        keywords="nodule, chest",
        category="thoracic",
        difficulty="primary",
    )
    assert done.status == 303, _text(done)
    case = Catalogue(app.backend.conn, "TST").get(case_id)
    assert (case.title, case.diagnosis, case.keywords) == (
        "Lung nodule",
        "Hamartoma",
        ["nodule", "chest"],
    )
    assert case.edited_by == "trainer1" and case.category == "thoracic"
    new = app.backend.events[before:]
    assert [(e.action, e.outcome, e.actor) for e in new] == [
        ("catalogue.case.edit", "success", "trainer1")
    ]


def test_registrar_is_refused_the_edit_form_with_the_reason(app: WebApp) -> None:
    case_id = _case(app)
    reg = Browser(app, "reg")
    assert "/edit" not in _text(reg.get(f"/cases/{case_id}"))
    page = reg.get(f"/cases/{case_id}/edit")
    assert page.status == 403
    assert "does not allow case.edit" in _text(page) and "ask a trainer" in _text(page)
    assert (_last(app, "case.edit").outcome, _last(app, "case.edit").actor) == ("denied", "reg")


def test_an_identifier_in_the_text_is_refused_and_what_was_typed_is_kept(app: WebApp) -> None:
    case_id = _case(app)
    trainer = Browser(app, "trainer1")
    answer = trainer.post(
        f"/cases/{case_id}/edit", title="Nodule", findings="Seen before, NHS number 943 476 5919."
    )
    assert answer.status == 400
    assert "NHS number" in _text(answer) and "943 476 5919" in _text(answer)  # shown again
    assert Catalogue(app.backend.conn, "TST").get(case_id).title == ""  # nothing saved
    assert _last(app, "catalogue.case.edit").outcome == "denied"


# -- trainers: collections -----------------------------------------------------------------
def test_collections_owner_edits_others_read(app: WebApp) -> None:
    a, b, c = _case(app, 1), _case(app, 2), _case(app, 3)
    owner = Browser(app, "trainer1")
    made = owner.post("/collections", title="FRCR 2B chest", description="Exam set")
    assert made.status == 303
    col = made.location.rsplit("/", 1)[1].split("?")[0]
    assert owner.post(f"/collections/{col}/add", cases=f"{a}, {b}, {c}").status == 303
    assert owner.post(f"/collections/{col}/move", case=c, position="1").status == 303
    assert owner.post(f"/collections/{col}/remove", case=b).status == 303
    assert owner.post(f"/collections/{col}/rename", title="Chest set", description="").status == 303
    collection = Catalogue(app.backend.conn, "TST").get_collection(col)
    assert [i.case_id for i in collection.items] == [c, a] and collection.title == "Chest set"
    assert collection.owner == "trainer1"
    page = _text(owner.get(f"/collections/{col}"))
    assert f'action="/teaching/ui/collections/{col}/add"' in page and "Share editing" in page

    other = Browser(app, "trainer2")
    refused = other.post(f"/collections/{col}/add", cases=b)
    assert refused.status == 403 and "nly the owner of collection" in _text(refused)
    assert "ask the owner" in _text(refused)
    assert _last(app, "catalogue.collection.add").outcome == "denied"
    reg = Browser(app, "reg")
    view = _text(reg.get(f"/collections/{col}"))
    assert "You may read this collection" in view and "/add" not in view
    assert reg.get("/collections").status == 200
    assert "Collections" in _text(reg.get("/"))


def test_owner_shares_editing(app: WebApp) -> None:
    repo = Catalogue(app.backend.conn, "TST").repo
    if not hasattr(repo, "set_collection_editors"):
        pytest.skip("the catalogue has no collection editors yet (K1's ownership, issue 22)")
    a = _case(app, 1)
    owner = Browser(app, "trainer1")
    col = owner.post("/collections", title="Shared").location.rsplit("/", 1)[1].split("?")[0]
    other = Browser(app, "trainer2")
    assert other.post(f"/collections/{col}/add", cases=a).status == 403
    assert other.post(f"/collections/{col}/editors", editors="trainer2").status == 403
    assert owner.post(f"/collections/{col}/editors", editors="trainer2").status == 303
    assert other.post(f"/collections/{col}/add", cases=a).status == 303
    assert [i.case_id for i in Catalogue(app.backend.conn, "TST").get_collection(col).items] == [a]


# -- personnel: quarantine review -------------------------------------------------------------
def _held(app: WebApp, ingested_by: str = "rest:pers2") -> str:
    ds = make_ct_series(1, rows=64, columns=64)[0]
    return app.backend.quarantine().hold(
        to_bytes(ds),
        "burnt-in text suspected",
        raw=False,
        intake="rest",
        modality="CT",
        study_uid=str(ds.StudyInstanceUID),
        ingested_by=ingested_by,
        kind="pixels",
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
    )


def test_personnel_reviews_masks_checks_and_rejects_as_themselves(app: WebApp) -> None:
    item = _held(app)
    pers = Browser(app, "pers")
    listing = _text(pers.get("/quarantine"))
    assert f'href="/teaching/ui/quarantine/{item}"' in listing
    page = pers.get(f"/quarantine/{item}")
    assert page.status == 200
    html = _text(page)
    assert 'id="q-canvas"' in html and "/teaching/ui/static/mask.js" in html
    assert 'data-columns="64" data-rows="64"' in html and "Release as pers" in html
    assert 'name="reviewer"' not in html  # the reviewer is the signed-in person
    preview = pers.get(f"/quarantine/{item}/preview", size="large")
    assert preview.status == 200 and preview.body[:4] == b"\x89PNG"
    assert pers.get("/static/mask.js").status == 200

    masked = pers.post(f"/quarantine/{item}/mask", regions="0,0,20,10;30,40,10,10")
    assert masked.status == 303 and "masked=" in masked.location
    held = app.backend.quarantine().get(item)
    assert held.mask_regions == ((0, 0, 20, 10), (30, 40, 10, 10)) and held.masked_by == "pers"
    assert held.ocr_words_left is not None
    event = _last(app, "quarantine.mask")
    assert (event.outcome, event.actor) == ("success", "pers")
    checked = pers.post(f"/quarantine/{item}/ocr")
    assert checked.status == 303 and re.search(r"ocr=\d+", checked.location)
    assert "OCR check" in _text(pers.get(f"/quarantine/{item}", ocr="0"))
    bad = pers.post(f"/quarantine/{item}/mask", regions="0,0,-5,10")
    assert bad.status == 400 and "positive size" in _text(bad)

    rejected = pers.post(f"/quarantine/{item}/reject", note="text over the face")
    assert rejected.status == 303
    done = app.backend.quarantine().get(item)
    assert (done.status, done.decided_by) == ("rejected", "pers")


def test_release_is_by_the_signed_in_reviewer_never_the_ingester(app: WebApp) -> None:
    item = _held(app, ingested_by="rest:pers2")
    own = Browser(app, "pers2").post(f"/quarantine/{item}/release")
    assert own.status == 403 and "cannot decide on your own request" in _text(own)
    assert app.backend.released == []
    assert _last(app, "quarantine.release").outcome == "denied"
    ok = Browser(app, "pers").post(f"/quarantine/{item}/release", note="masked, clean")
    assert ok.status == 303
    assert app.backend.released == [("pers", item, "masked, clean")]


def test_wrong_role_is_refused_the_quarantine_with_the_reason(app: WebApp) -> None:
    item = _held(app)
    trainer = Browser(app, "trainer1")
    for answer in (
        trainer.get("/quarantine"),
        trainer.get(f"/quarantine/{item}"),
        trainer.get(f"/quarantine/{item}/preview"),
        trainer.post(f"/quarantine/{item}/reject", note="x"),
    ):
        assert answer.status == 403
        assert "Only personnel review held studies" in _text(answer)
    assert app.backend.quarantine().get(item).status == "held"


# -- approvers' packages: one-time links -------------------------------------------------------
def _approved_removal(app: WebApp, case_id: str, requester: str = "trainer1") -> int:
    registry = RemovalRequests(app.backend.conn, app.backend.governance_policy)
    purpose = app.backend.governance_policy.removal_purposes[0]
    made = registry.create(
        [case_id],
        purpose,
        "teaching day",
        requester,
        USERS[requester],
        case_levels={case_id: "publication"},
        now=NOW,
    )
    registry.approve(made.id, "tpd", ["tpd"], "For the day only.", now=NOW)
    return made.id


def test_one_time_download_link(app: WebApp) -> None:
    rid = _approved_removal(app, _case(app))
    key = str(pyrage.x25519.Identity.generate().to_public())
    trainer = Browser(app, "trainer1")
    assert f'action="/teaching/ui/removals/{rid}/link"' in _text(trainer.get("/removals"))
    assert trainer.post(f"/removals/{rid}/link", recipient="not a key").status == 400
    made = trainer.post(f"/removals/{rid}/link", recipient=key)
    assert made.status == 200, _text(made)
    link = re.search(r'href="/teaching/ui(/removals/\d+/download/[^"]+)"', _text(made)).group(1)
    token = link.rsplit("/", 1)[1]
    stored = [r[0] for r in app.backend.conn.execute("SELECT token_sha256 FROM web_download_links")]
    assert token not in stored and len(stored) == 1  # only its hash is kept

    stranger = Browser(app, "reg").get(link)
    assert stranger.status in (403, 409) and app.backend.exports == []
    first = trainer.get(link)
    assert first.status == 200 and first.body == b"age-encrypted package"
    assert ("Content-Disposition", f'attachment; filename="REM-{rid:06d}.tar.age"') in first.headers
    assert app.backend.exports == [("trainer1", rid, {"recipient": key})]
    again = trainer.get(link)
    assert again.status == 409 and "used already" in _text(again) and "new link" in _text(again)
    assert len(app.backend.exports) == 1
    uses = [e for e in app.backend.events if e.action == "removal.link"]
    assert [(e.detail.get("step"), e.outcome) for e in uses][-2:] == [
        ("use", "success"),
        ("use", "denied"),
    ]


def test_link_expires_and_is_only_for_the_requester(app: WebApp) -> None:
    rid = _approved_removal(app, _case(app))
    key = str(pyrage.x25519.Identity.generate().to_public())
    other = Browser(app, "trainer2").post(f"/removals/{rid}/link", recipient=key)
    assert other.status == 403 and "Only the requester" in _text(other)
    trainer = Browser(app, "trainer1")
    made = _text(trainer.post(f"/removals/{rid}/link", recipient=key))
    link = re.search(r'href="/teaching/ui(/removals/\d+/download/[^"]+)"', made).group(1)
    app.clock.now = NOW + timedelta(minutes=16)
    late = trainer.get(link)
    assert late.status == 409 and "expired" in _text(late) and app.backend.exports == []


# -- the Board ------------------------------------------------------------------------------------
def _recipient(app: WebApp) -> int:
    return (
        Recipients(app.backend.conn, app.backend.governance_policy)
        .add(
            "Northern School of Radiology",
            "uk_radiology_school",
            "lead@example.org",
            public_key=str(pyrage.x25519.Identity.generate().to_public()),
            data_sharing_agreement=True,
            added_by="t",
            now=NOW,
        )
        .id
    )


def test_board_member_proposes_in_their_own_name_and_records_an_undertaking(app: WebApp) -> None:
    case_id, rid = _case(app), _recipient(app)
    board = Browser(app, "board1")
    page = _text(board.get("/board"))
    assert 'action="/teaching/ui/board/propose"' in page and "Northern School" in page
    purpose = app.backend.governance_policy.share_purposes[0]
    named = board.post(
        "/board/propose",
        cases=case_id,
        recipient=str(rid),
        purpose=purpose,
        proposer="someone-else",
    )
    assert named.status == 400 and "is not accepted" in _text(named), _text(named)[-900:]
    done = board.post("/board/propose", cases=case_id, recipient=str(rid), purpose=purpose)
    assert done.status == 303, _text(done)
    shares = Shares(app.backend.conn, app.backend.governance_policy)
    (proposal,) = shares.list()
    assert proposal.proposer == "board1" and proposal.case_ids == (case_id,)
    assert _last(app, "governance.share.propose").outcome == "success"

    page = _text(board.get("/board"))
    assert f'action="/teaching/ui/board/{proposal.id}/undertaking"' in page
    assert 'name="signed_base64"' in page and "/static/upload.js" in page
    signed = base64.b64encode(b"%PDF-1.4 signed").decode()
    form = {"signatory": "Dr A", "role": "Head", "signed_on": "2025-02-27"}
    wrong = board.post(f"/board/{proposal.id}/undertaking", **form, organisation="Elsewhere",
                       signed_base64=signed)  # fmt: skip
    assert wrong.status in (400, 403) and "signed on the recipient" in _text(wrong)
    missing = board.post(f"/board/{proposal.id}/undertaking", **form,
                         organisation="Northern School of Radiology")  # fmt: skip
    assert missing.status == 400 and "Attach the signed copy" in _text(missing)
    recorded = board.post(
        f"/board/{proposal.id}/undertaking",
        **form,
        organisation="Northern School of Radiology",
        signed_base64=signed,
    )
    assert recorded.status == 303, _text(recorded)
    undertaking = shares.undertaking_for(proposal.id)
    assert undertaking.recorded_by == "board1" and undertaking.signatory_name == "Dr A"
    assert list(app.backend.vault.files.values()) == [b"%PDF-1.4 signed"]
    assert "No proposal is waiting" in _text(board.get("/board"))


def test_registrar_is_refused_the_board_page_with_the_reason(app: WebApp) -> None:
    reg = Browser(app, "reg")
    page = reg.get("/board")
    assert page.status == 403 and "Only members of the School Board" in _text(page)
    assert _last(app, "share.propose").outcome == "denied"
    # a trainer forging the post is refused by the same rule, and nothing is proposed
    forged = Browser(app, "trainer1").post("/board/propose", cases=_case(app), recipient="1")
    assert forged.status == 403
    assert Shares(app.backend.conn, app.backend.governance_policy).list() == []


# -- search, audit, favicon ---------------------------------------------------------------
def test_search_facets_are_selects_from_the_vocabulary(app: WebApp) -> None:
    _case(app)
    page = _text(Browser(app, "reg").get("/cases", modality="CT"))
    for name in ("modality", "body_part", "category", "difficulty", "level"):
        assert f'<select id="{name}" name="{name}">' in page, name
    assert '<option value="CT" selected>CT</option>' in page
    assert '<option value="thoracic">' in page and '<option value="CHEST">' in page
    assert "1 case(s) found" in page


def test_audit_page_filters_and_leaves_out_per_request_lines(app: WebApp) -> None:
    from archive.audit import AuditEvent

    for i in range(3):
        app.backend.record(
            AuditEvent(
                action="access.decision",
                outcome="success",
                actor="reg",
                source="http",
                detail={"uri": f"/favicon{i}.ico"},
            )
        )
    app.backend.record(
        AuditEvent(
            action="governance.removal.approve",
            outcome="success",
            actor="tpd",
            source="rest",
            target="7",
            detail={"reference": "REM-7"},
        )
    )
    pers = Browser(app, "pers")
    page = _text(pers.get("/audit"))
    assert "governance.removal.approve" in page and "reference=REM-7" in page  # detail column
    assert "/favicon0.ico" not in page
    with_requests = _text(pers.get("/audit", requests="1"))
    assert "/favicon0.ico" in with_requests
    who = _text(pers.get("/audit", user="tpd", outcome="success"))
    assert "REM-7" in who and "<td>web.login</td>" not in who
    assert 'name="since"' in page and '<select id="outcome"' in page
    later = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()  # the log's own clock
    assert "REM-7" not in _text(pers.get("/audit", since=later))
    assert "REM-7" in _text(pers.get("/audit", until=datetime.now(UTC).date().isoformat()))
    assert pers.get("/audit", since="not a date").status == 400
    refused = Browser(app, "reg").get("/audit")
    assert refused.status == 403 and "Ask personnel or the Head of School" in _text(refused)


def test_every_page_links_a_favicon_so_browsers_never_ask_for_favicon_ico(app: WebApp) -> None:
    icon = app.handle(WebRequest("GET", "/static/favicon.png"))  # anonymous, like style.css
    assert icon.status == 200 and icon.content_type == "image/png"
    assert icon.body[:4] == b"\x89PNG"
    assert app.handle(WebRequest("GET", "/static/../app.py")).status == 404
    login = _text(app.handle(WebRequest("GET", "/login")))
    assert 'rel="icon"' in login and "/teaching/ui/static/favicon.png" in login
    assert 'rel="icon"' in _text(Browser(app, "reg").get("/"))


def test_the_approver_downloads_with_a_one_time_link(app: WebApp) -> None:
    """Issue 22: approvers download an approved package with a one-time, audited link;
    the approver who signed this permission may, besides the requester."""
    rid = _approved_removal(app, _case(app))
    key = str(pyrage.x25519.Identity.generate().to_public())
    approver = Browser(app, "tpd")
    made = _text(approver.post(f"/removals/{rid}/link", recipient=key))
    link = re.search(r'href="/teaching/ui(/removals/\d+/download/[^"]+)"', made).group(1)
    got = approver.get(link)
    assert got.status == 200 and app.backend.exports == [("tpd", rid, {"recipient": key})]
    assert approver.get(link).status == 409  # one time
