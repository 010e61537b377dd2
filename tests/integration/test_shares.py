"""Third-party sharing end to end (issue 9) through a real archive and a real recipient.

The recipient's DICOM node is a dcmtk storescp. Recipients are added with the CLI before
`archive serve` (their nodes become Orthanc modalities at start); the Board proposes and
decides over REST and the CLI; the signed undertaking is stored encrypted; personnel
execute by C-STORE and as an age package. What storescp wrote is compared with the
register (SOP instance UIDs, pixel data) and with what the archive stored (SHA-256).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pydicom
import pyrage
import pytest

from archive import db
from archive.audit import query as audit_query
from archive.export import open_package, verify_package
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, client, new_archive, register_node
from tests.integration.test_pulls import StoreSCP, wait_for_cases

SCU = "SUITE_SCU"
RECIPIENT_AET = "LEEDS_RAD"
TODAY = date.today().isoformat()


def _pw(archive: RunningArchive, user: str, where: Path) -> Path:
    path = where / f"{user}.pw"
    path.write_text(archive.passwords[user])
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("shares")
    archive = new_archive(root / "home")
    scp = StoreSCP(root / "recipient", aet=RECIPIENT_AET)
    identity = pyrage.x25519.Identity.generate()
    try:
        register_node(archive, "suite-scu", SCU, store=True)
        add_user(archive, "pers1", ["personnel"])
        for member in ("board1", "board2", "board3"):
            add_user(archive, member, ["board_member"])
        leeds = archive.cli(
            "recipients", "add", "Leeds School of Radiology", "--kind", "uk_radiology_school",
            "--contact", "Dr A Tutor, Leeds", "--aet", RECIPIENT_AET, "--host", "127.0.0.1",
            "--port", str(scp.port), "--agreement", "--json",
        )  # fmt: skip
        assert leeds.returncode == 0, leeds.stderr
        rcr = archive.cli(
            "recipients", "add", "Royal College of Radiologists", "--kind", "rcr_vca",
            "--contact", "VCA editor", "--public-key", str(identity.to_public()), "--json",
        )  # fmt: skip
        assert rcr.returncode == 0, rcr.stderr
        archive.start()
        series = make_ct_series(3, patient="SHARE^PATIENT", patient_id="PIDSHARE1")
        files = write_files(root / "in", [to_bytes(ds) for ds in series])
        for _ in range(30):  # the DICOM port may open a moment after /teaching/health
            sent = storescu(archive.dicom_port, archive.aet, SCU, files)
            if sent.returncode == 0:
                break
            time.sleep(1)
        assert sent.returncode == 0, sent.stderr
        case_id = wait_for_cases(archive, 1)[0]
        yield {
            "archive": archive,
            "scp": scp,
            "case": case_id,
            "leeds": json.loads(leeds.stdout)["id"],
            "rcr": json.loads(rcr.stdout)["id"],
            "identity": identity,
            "root": root,
        }
    finally:
        archive.stop()
        scp.stop()


def _set_level(archive: RunningArchive, case_id: str, level: str) -> None:
    conn = db.connect(archive.config.home.db_path)
    try:
        conn.execute("UPDATE catalogue_cases SET level = ? WHERE case_id = ?", (level, case_id))
    finally:
        conn.close()


def _post(archive, user, path, body):
    with client(archive, user) as http:
        return http.post(path, json=body)


def _propose(archive, user, case_id, recipient_id) -> int:
    made = _post(
        archive, user, "/teaching/shares",
        {"cases": [case_id], "recipient_id": recipient_id, "purpose": "radiology_training"},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    return made.json()["id"]


def _audited(archive, until, timeout: float = 30, **filters) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = audit_query(archive.config.home.audit_dir, **filters)
        if until(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _pixels(blob: bytes) -> tuple[str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob))
    return str(ds.SOPInstanceUID), hashlib.sha256(ds.PixelData).hexdigest()


def test_share_by_cstore_end_to_end(world) -> None:
    archive, scp, case_id, tmp = world["archive"], world["scp"], world["case"], world["root"]
    _set_level(archive, case_id, "limited-access")  # Leeds has an agreement on file
    pid = _propose(archive, "board1", case_id, world["leeds"])
    target = f"SHARE-{pid:06d}"

    # Nothing goes before the Board decides.
    early = _post(archive, "pers1", f"/teaching/shares/{pid}/execute", {"method": "cstore"})
    # A refusal of state (issue 21: 409) that says what is missing and what comes next.
    assert early.status_code == 409 and "not approved" in early.json()["error"]
    assert "Board" in early.json()["next"]

    # Issue 21: nobody votes in another's name. A body naming voters is refused with its
    # reason (REST), and so is --approver (CLI); nothing is recorded.
    decision = {
        "meeting_date": TODAY, "minute_reference": "SB/25/07",
        "decision_text": "Approved: 1 case to Leeds for registrar training.",
    }  # fmt: skip
    named = _post(archive, "board2", f"/teaching/shares/{pid}/decide",
                  {**decision, "approvers": ["board2", "board3"]})  # fmt: skip
    assert named.status_code == 400, named.text
    assert "own session" in named.json()["error"] and named.json()["next"]
    typed = archive.cli(
        "shares", "decide", str(pid), "--meeting-date", TODAY, "--minute", "SB/25/07",
        "--text", decision["decision_text"], "--approver", "board2", "--approver", "board3",
        "--as", "board1", "--password-file", str(_pw(archive, "board1", tmp)),
    )  # fmt: skip
    assert typed.returncode == 1 and "--approver is no longer accepted" in typed.stderr
    with client(archive, "board3") as http:
        assert http.get(f"/teaching/shares/{pid}").json()["decision"] is None

    # The proposer records the minuted decision: their vote is recorded, never counted.
    recorded = archive.cli(
        "shares", "decide", str(pid), "--meeting-date", TODAY, "--minute", "SB/25/07",
        "--text", decision["decision_text"], "--as", "board1",
        "--password-file", str(_pw(archive, "board1", tmp)), "--json",
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads(recorded.stdout)["quorum_counted"] == 0
    # board2 votes over REST, board3 from the CLI with their own password; each once.
    voted = _post(archive, "board2", f"/teaching/shares/{pid}/vote", {})
    assert voted.status_code == 200 and voted.json()["quorum_counted"] == 1
    assert not voted.json()["in_force"]
    again = _post(archive, "board2", f"/teaching/shares/{pid}/vote", {})
    assert again.status_code == 409 and "already voted" in again.json()["error"]
    wrong = tmp / "wrong.pw"
    wrong.write_text("not board3's password at all")
    impostor = archive.cli("shares", "vote", str(pid), "--as", "board3",
                           "--password-file", str(wrong))  # fmt: skip
    assert impostor.returncode == 1 and "password" in impostor.stderr
    assert "HTTP 403" not in impostor.stderr and len(impostor.stderr.splitlines()) == 1
    cast = archive.cli("shares", "vote", str(pid), "--as", "board3",
                       "--password-file", str(_pw(archive, "board3", tmp)), "--json")  # fmt: skip
    assert cast.returncode == 0, cast.stderr
    minutes = json.loads(cast.stdout)
    assert minutes["quorum_counted"] == 2 and minutes["in_force"]
    assert {a["member"]: (a["counted"], a["self_cast"]) for a in minutes["approvers"]} == {
        "board1": (False, True), "board2": (True, True), "board3": (True, True),
    }  # fmt: skip
    # One act, one audit record (issue 21): board1's decision is its own record (their
    # vote, recorded and not counted); board2 and board3 each voted themselves.
    votes = _audited(archive, lambda r: len(r) >= 2, action="governance.board.vote",
                     outcome="success")  # fmt: skip
    assert {v["actor"] for v in votes} == {"board2", "board3"}
    decided = _audited(archive, lambda r: bool(r), action="governance.share.decide",
                       outcome="success")  # fmt: skip
    assert [d["actor"] for d in decided] == ["board1"]

    # Approved but no signed undertaking: refused, and nothing reached the recipient.
    refused = archive.cli(
        "shares", "execute", str(pid), "--as", "pers1",
        "--password-file", str(_pw(archive, "pers1", tmp)),
    )  # fmt: skip
    assert refused.returncode != 0
    assert "undertaking" in refused.stderr
    assert scp.files() == []

    text_file = tmp / f"undertaking-{pid}.txt"
    rendered = archive.cli("shares", "undertaking", str(pid), "--out", str(text_file))
    assert rendered.returncode == 0, rendered.stderr
    text = text_file.read_text()
    assert "will not be sold on for commercial benefit" in text
    assert "Leeds School of Radiology" in text and case_id in text
    signed = tmp / f"signed-{pid}.pdf"
    signed.write_bytes(b"%PDF-1.4 signed scan " + text.encode() + b"\nSigned: Dr A Tutor")
    recorded = archive.cli(
        "shares", "undertaking", str(pid), "--signed", str(signed), "--signatory", "Dr A Tutor",
        "--role", "Training Programme Director", "--organisation", "Leeds School of Radiology",
        "--signed-on", TODAY, "--as", "board2",
        "--password-file", str(_pw(archive, "board2", tmp)), "--json",
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    undertaking = json.loads(recorded.stdout)
    assert undertaking["sha256"] == hashlib.sha256(signed.read_bytes()).hexdigest()
    vault = archive.config.home.data_dir / "undertakings"
    stored = [p for p in vault.rglob("*") if p.is_file()]
    assert len(stored) == 1 and b"Dr A Tutor" not in stored[0].read_bytes()

    done = archive.cli(
        "shares", "execute", str(pid), "--as", "pers1",
        "--password-file", str(_pw(archive, "pers1", tmp)), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["instances"] == 3 and result["method"] == "cstore"

    # The register matches what the recipient actually received and what we hold.
    log = archive.cli("shares", "log", "--json")
    assert log.returncode == 0, log.stderr
    entry = next(e for e in json.loads(log.stdout) if e["share_id"] == result["share_id"])
    listed = {i["sop_instance_uid"]: i["sha256"] for c in entry["manifest"] for i in c["instances"]}
    received = dict(_pixels(b) for b in scp.files())
    held = {_pixels(b)[0]: (hashlib.sha256(b).hexdigest(), _pixels(b)[1])
            for b in archive.stored_dicom()}  # fmt: skip
    assert set(listed) == set(received) == set(held) and len(listed) == 3
    for uid, digest in listed.items():
        assert held[uid] == (digest, received[uid])
    assert entry["recipient"] == "Leeds School of Radiology"
    assert entry["destination"] == f"{RECIPIENT_AET}@127.0.0.1:{scp.port}"
    assert entry["minute_reference"] == "SB/25/07"
    assert entry["approvers"] == ["board2", "board3"]
    assert entry["undertaking_sha256"] == undertaking["sha256"]
    assert entry["case_ids"] == [case_id]

    csv_out = archive.cli("shares", "log", "--csv")
    assert csv_out.returncode == 0
    header, *rows = csv_out.stdout.strip().splitlines()
    assert header.startswith("share_id,executed_at,recipient")
    assert any(r.startswith(f"{result['share_id']},") and "SB/25/07" in r for r in rows)

    # Revocation (CLI) and the recipient's confirmation (REST, a Board member).
    asked = archive.cli(
        "shares", "revoke", str(result["share_id"]), "--deletion",
        "--reason", "Patient withdrew consent", "--json",
        "--as", "pers1", "--password-file", str(_pw(archive, "pers1", tmp)),
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    rid = json.loads(asked.stdout)["request_id"]
    confirmed = _post(
        archive, "board2", f"/teaching/shares/requests/{rid}/confirm",
        {"confirmed_by": "Dr A Tutor, Leeds", "confirmed_on": TODAY, "evidence_ref": "letter 42"},
    )  # fmt: skip
    assert confirmed.status_code == 200, confirmed.text
    with client(archive, "board3") as http:
        register = http.get("/teaching/shares/log").json()["shares"]
    mine = next(e for e in register if e["share_id"] == result["share_id"])
    assert mine["status"] == "deletion confirmed"

    executed = _audited(
        archive, lambda r: bool(r), action="governance.share.execute", outcome="success",
        case=target,
    )  # fmt: skip
    assert executed and executed[-1]["actor"] == "pers1"
    assert executed[-1]["detail"]["share_id"] == result["share_id"]
    denials = _audited(
        archive, lambda r: len(r) >= 2, action="governance.share.execute", outcome="denied",
        case=target,
    )  # fmt: skip
    # Issue 21: each refusal is audited with its reason and code (state: a step missing).
    assert {d["detail"]["code"] for d in denials} == {"state"}
    assert any("undertaking" in d["detail"]["reason"] for d in denials)
    assert any("not approved" in d["detail"]["reason"] for d in denials)
    confirmations = _audited(archive, lambda r: bool(r), action="governance.share.confirm")
    assert confirmations and confirmations[-1]["actor"] == "board2"


def test_limited_access_without_agreement_refused_then_package_at_publication(world) -> None:
    archive, case_id = world["archive"], world["case"]
    _set_level(archive, case_id, "limited-access")
    # Issue 21: refused when proposed (no agreement on file), with the reason, on REST...
    early = _post(
        archive, "board2", "/teaching/shares",
        {"cases": [case_id], "recipient_id": world["rcr"], "purpose": "radiology_training"},
    )  # fmt: skip
    assert early.status_code == 400, early.text
    assert "no data-sharing agreement on file" in early.json()["error"]
    assert early.json()["next"]
    # ... and from the CLI, as one line.
    cli = archive.cli(
        "shares", "propose", case_id, "--recipient", str(world["rcr"]),
        "--purpose", "radiology_training", "--as", "board2",
        "--password-file", str(_pw(archive, "board2", world["root"])),
    )  # fmt: skip
    assert cli.returncode == 1 and "no data-sharing agreement on file" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
    with client(archive, "board2") as http:
        proposals = http.get("/teaching/shares").json()["proposals"]
    assert all(p["recipient_id"] != world["rcr"] for p in proposals)

    _set_level(archive, case_id, "publication")
    pid = _propose(archive, "board2", case_id, world["rcr"])
    _set_level(archive, case_id, "limited-access")
    ok = _post(
        archive, "board1", f"/teaching/shares/{pid}/decide",
        {"meeting_date": TODAY, "minute_reference": "SB/25/08",
         "decision_text": "Approved for the RCR Validated Case Archive."},
    )  # fmt: skip
    assert ok.status_code == 200, ok.text
    voted = _post(archive, "board3", f"/teaching/shares/{pid}/vote", {})
    assert voted.status_code == 200 and voted.json()["in_force"], voted.text
    signed = b"signed undertaking for the RCR"
    recorded = _post(
        archive, "board1", f"/teaching/shares/{pid}/undertaking",
        {"signed_base64": base64.b64encode(signed).decode(), "signatory": "VCA editor",
         "role": "Editor", "organisation": "Royal College of Radiologists", "signed_on": TODAY},
    )  # fmt: skip
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["undertaking"]["sha256"] == hashlib.sha256(signed).hexdigest()

    refused = _post(archive, "pers1", f"/teaching/shares/{pid}/execute", {"method": "package"})
    assert refused.status_code == 400
    assert "data-sharing agreement" in refused.json()["error"]
    with client(archive, "pers1") as http:
        before = http.get("/teaching/shares/log").json()["shares"]
    assert all(e["recipient"] != "Royal College of Radiologists" for e in before)

    _set_level(archive, case_id, "publication")
    try:
        sent = _post(archive, "pers1", f"/teaching/shares/{pid}/execute", {"method": "package"})
    finally:
        _set_level(archive, case_id, "limited-access")
    assert sent.status_code == 200, sent.text
    assert b"DICM" not in sent.content
    contents = open_package(sent.content, identity=str(world["identity"]))
    assert verify_package(contents) == []
    assert contents.manifest["approval"]["reference"] == f"SHARE-{pid:06d}"
    assert "will not be sold on for commercial benefit" in contents.terms
    held = {hashlib.sha256(b).hexdigest() for b in archive.stored_dicom()}
    listed = {i["sha256"] for c in contents.manifest["cases"] for i in c["instances"]}
    assert listed == held
    with client(archive, "pers1") as http:
        after = http.get("/teaching/shares/log").json()["shares"]
    entry = next(e for e in after if e["recipient"] == "Royal College of Radiologists")
    assert entry["method"] == "package"
    assert entry["manifest_sha256"] == contents.manifest["manifest_sha256"]


def test_commercial_recipient_refused(world) -> None:
    archive = world["archive"]
    cli = archive.cli(
        "recipients", "add", "Acme Imaging Ltd", "--kind", "commercial", "--contact", "sales",
        "--public-key", str(world["identity"].to_public()),
    )  # fmt: skip
    assert cli.returncode != 0 and "commercial" in cli.stderr
    assert "Traceback" not in cli.stderr
    rest = _post(
        archive, "pers1", "/teaching/recipients",
        {"organisation": "Acme AI", "kind": "vendor", "contact": "bd@acme.example",
         "public_key": str(world["identity"].to_public())},
    )  # fmt: skip
    assert rest.status_code == 400 and "commercial" in rest.json()["error"]
    # A Board member may not add recipients; personnel see the (unchanged) register.
    board = _post(archive, "board1", "/teaching/recipients", {"organisation": "x"})
    assert board.status_code == 403
    with client(archive, "pers1") as http:
        names = [r["organisation"] for r in http.get("/teaching/recipients").json()["recipients"]]
    assert sorted(names) == ["Leeds School of Radiology", "Royal College of Radiologists"]
    # A refusal by the HTTP filter (a bare 403) still reaches the CLI with its reason.
    personnel = archive.cli(
        "shares", "propose", world["case"], "--recipient", str(world["leeds"]),
        "--purpose", "radiology_training", "--as", "pers1",
        "--password-file", str(_pw(archive, "pers1", world["root"])),
    )  # fmt: skip
    assert personnel.returncode == 1 and "HTTP 403" not in personnel.stderr
    assert "pers1 may not POST /teaching/shares" in personnel.stderr
    assert "roles: personnel" in personnel.stderr
    # A commercial purpose is refused too, whoever the recipient.
    bad = _post(
        archive, "board1", "/teaching/shares",
        {"cases": [world["case"]], "recipient_id": world["leeds"], "purpose": "commercial_sale"},
    )  # fmt: skip
    assert bad.status_code == 400 and "commercial" in bad.json()["error"]
