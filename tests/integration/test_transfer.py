"""Archive-to-archive transfer (issue 25) between two real archives (two homes, two
`archive serve`, different ports): the sender's closure decision names the receiver, the
sender packages the archive, the receiver imports it in one command and answers with a
signed receipt, and the sender verifies it. Compared case by case: case ids, teaching
metadata, collections and the stored files' hashes (identical bytes, so identical UIDs
and pixels). Tampered packages (a manifest byte, an instance byte, the signature, an
unregistered sender key) are refused with nothing stored. Then the sender is wiped: no
mount, no key file (https.pem included), no file, and the certificate states what the
verified receipt says.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from datetime import date
from pathlib import Path

from archive import db
from archive.catalogue import Catalogue
from archive.transfer import store as tstore
from tests.corpus import make_ct_series, to_bytes
from tests.harness import RunningArchive, add_user, client, new_archive
from tests.integration.test_pulls import wait_for_cases

TODAY = date.today().isoformat()
TRUST = "Northern Trust Teaching Collection"


def _ok(done) -> dict:
    assert done.returncode == 0, done.stderr
    text = done.stdout.strip()
    return json.loads(text) if text.startswith(("{", "[")) else {}


def _pw(archive: RunningArchive, user: str, where: Path) -> Path:
    path = where / f"{archive.home.name}-{user}.pw"
    path.write_text(archive.passwords[user])
    return path


def _flip(src: Path, dst: Path, member: str, at: int = 40) -> None:
    """Copy the package with one byte changed inside `member`."""
    shutil.copy(src, dst)
    with tarfile.open(src) as tar:
        info = tar.getmember(member)
    with open(dst, "r+b") as handle:
        handle.seek(info.offset_data + min(at, info.size - 1))
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))


def _catalogue(archive: RunningArchive) -> Catalogue:
    catalogue = Catalogue(db.connect(archive.config.home.db_path), archive.config.school_prefix)
    catalogue.conn = catalogue.repo.conn  # closed by the test
    return catalogue


def _hashes(archive: RunningArchive) -> set[str]:
    return {hashlib.sha256(d).hexdigest() for d in archive.stored_dicom()}


def test_transfer_import_receipt_and_wipe(tmp_path: Path) -> None:
    sender = new_archive(tmp_path / "sender", school_prefix="NSR")
    receiver = new_archive(tmp_path / "receiver", school_prefix="TRU")
    try:
        for user in ("pers1", "pers2"):
            add_user(sender, user, ["personnel"])
        for member in ("board1", "board2"):
            add_user(sender, member, ["board_member"])
        add_user(receiver, "rpers", ["personnel"])
        pw = {u: _pw(sender, u, tmp_path) for u in ("pers1", "pers2", "board1", "board2")}
        rpw = _pw(receiver, "rpers", tmp_path)
        as_pers1 = ("--as", "pers1", "--password-file", str(pw["pers1"]))
        as_rpers = ("--as", "rpers", "--password-file", str(rpw))

        # Each side registers the other's signing key; the Board names the receiver.
        theirs = _ok(receiver.cli("transfer", "identity", "--json"))
        ours = _ok(sender.cli("transfer", "identity", "--json"))
        assert (
            theirs["recipient"].startswith("age1") and theirs["fingerprint"] != ours["fingerprint"]
        )
        _ok(sender.cli("transfer", "peers", "add", TRUST, "--signing-key",
                       theirs["signing_key"], *as_pers1))  # fmt: skip
        _ok(receiver.cli("transfer", "peers", "add", "NSR", "--signing-key",
                         ours["signing_key"], *as_rpers))  # fmt: skip
        trust = _ok(sender.cli(
            "recipients", "add", TRUST, "--kind", "trust_teaching_collection",
            "--contact", "Dr B Keeper", "--public-key", theirs["recipient"], "--json",
        ))  # fmt: skip

        sender.start()
        receiver.start()
        with client(sender, "pers1") as http:
            for seed, pid in ((1, "P-A"), (2, "P-B")):
                for ds in make_ct_series(2, patient="MOVE^ME", patient_id=pid, seed=seed):
                    assert http.post("/instances", content=to_bytes(ds)).status_code == 200
        cases = wait_for_cases(sender, 2)
        cat = _catalogue(sender)
        cat.edit(cases[0], {"title": "Tension pneumothorax", "clinical_history": "Sudden "
                 "dyspnoea after a fall.", "findings": "Mediastinal shift.", "diagnosis":
                 "Tension pneumothorax", "discussion": "Decompress first.",
                 "keywords": ["chest", "trauma"]}, "pers1")  # fmt: skip
        cat.edit(cases[1], {"title": "Normal CT", "findings": "Nothing abnormal."}, "pers1")
        col = cat.create_collection("Exam set", "FRCR part 2", "pers1")
        cat.add_to_collection(col.collection_id, [cases[1], cases[0]], "pers1")
        cat.conn.close()

        decide = (
            "close",
            "decide",
            "--outcome",
            "transfer",
            "--recipient",
            str(trust["id"]),
            "--meeting-date",
            TODAY,
            "--minute",
            "SB/2026/7",
            "--text",
            "Transfer",
        )
        decision = _ok(sender.cli(*decide, "--as", "board1", "--password-file",
                                  str(pw["board1"]), "--json"))  # fmt: skip
        _ok(sender.cli("close", "vote", str(decision["decision_id"]), "--as", "board2",
                       "--password-file", str(pw["board2"])))  # fmt: skip

        package = tmp_path / "archive.tatp"
        sent = _ok(sender.cli("transfer", "export", "--out", str(package), *as_pers1, "--json"))
        assert sent["instance_count"] == 4 and sent["case_count"] == 2
        raw = package.read_bytes()
        assert b"MOVE^ME" not in raw and b"Tension" not in raw and cases[0].encode() not in raw

        # Tampered packages are refused and nothing is stored.
        bad = {
            "manifest": tmp_path / "bad-manifest.tatp",
            "instance": tmp_path / "bad-instance.tatp",
            "signature": tmp_path / "bad-signature.tatp",
        }
        _flip(package, bad["manifest"], "manifest.age", at=200)
        _flip(package, bad["instance"], "instances/000003.age", at=300)
        _flip(package, bad["signature"], "envelope.sig", at=3)
        for what, path in bad.items():
            refused = receiver.cli("import", str(path), "--receipt-out",
                                   str(tmp_path / f"r-{what}.json"), "--organisation", TRUST,
                                   *as_rpers)  # fmt: skip
            assert refused.returncode == 1, (what, refused.stdout)
            assert "refused" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
            assert not (tmp_path / f"r-{what}.json").exists()
        assert receiver.counts()["instances"] == 0
        # A package signed by a key the receiver never registered.
        conn = db.connect(receiver.config.home.db_path)
        conn.execute("DELETE FROM transfer_peers")
        tstore.add_peer(conn, "NSR", theirs["signing_key"], "test")  # the wrong key
        conn.close()
        stranger = receiver.cli("import", str(package), "--receipt-out",
                                str(tmp_path / "r-stranger.json"), "--organisation", TRUST,
                                *as_rpers)  # fmt: skip
        assert stranger.returncode == 1 and "not a registered sender" in stranger.stderr
        assert receiver.counts()["instances"] == 0
        _ok(receiver.cli("transfer", "peers", "add", "NSR", "--signing-key",
                         ours["signing_key"], *as_rpers))  # fmt: skip

        receipt = tmp_path / "receipt.json"
        done = _ok(receiver.cli("import", str(package), "--receipt-out", str(receipt),
                                "--organisation", TRUST, *as_rpers, "--json"))  # fmt: skip
        assert done["stored"] == 4 and done["held"] == 0 and done["text_held"] == []
        assert done["cases"] == {c: c for c in cases}  # the sender's ids are kept

        mapping = _ok(receiver.cli("transfer", "mapping", "--json"))
        assert sorted((m["sender_case_id"], m["case_id"]) for m in mapping) == sorted(
            (c, c) for c in cases for _ in range(2)
        )
        # Case by case: the same files (so UIDs and pixels), ids, teaching text, collection.
        assert _hashes(receiver) == _hashes(sender)
        wait_for_cases(receiver, 2)
        theirs_cat, ours_cat = _catalogue(receiver), _catalogue(sender)
        try:
            for case_id in cases:
                a, b = ours_cat.get(case_id), theirs_cat.get(case_id)
                for name in ("title", "clinical_history", "findings", "diagnosis",
                             "discussion", "keywords", "study_uid", "status",
                             "instance_count", "series_count"):  # fmt: skip
                    assert getattr(a, name) == getattr(b, name), (case_id, name)
            (listed,) = theirs_cat.list_collections()
            collection = theirs_cat.get_collection(listed.collection_id)
            assert collection.title == "Exam set"
            assert [i.case_id for i in collection.items] == [cases[1], cases[0]]
            assert done["collections"] == {col.collection_id: collection.collection_id}
        finally:
            theirs_cat.conn.close()
            ours_cat.conn.close()

        # The sender believes the receipt only as signed; an altered one is refused.
        forged = json.loads(receipt.read_text())
        forged["receipt"]["items"][0]["sha256"] = "0" * 64
        (tmp_path / "forged.json").write_text(json.dumps(forged))
        refused = sender.cli("transfer", "receipt", str(tmp_path / "forged.json"), *as_pers1)
        assert refused.returncode == 1 and "signature does not verify" in refused.stderr
        verified = _ok(sender.cli("transfer", "receipt", str(receipt), *as_pers1, "--json"))
        assert verified["stored"] == 4 and verified["held"] == []
        assert (
            "signed receipt" in verified["statement"]
            and "all 4 instance(s)" in (verified["statement"])
        )

        # The wipe leaves nothing, and the certificate says what the receipt verified.
        for user in ("pers1", "pers2"):
            _ok(sender.cli("close", "confirm", "--as", user, "--password-file", str(pw[user])))
        sender.stop()
        home = sender.config.home
        assert (home.keys_dir / "https.pem").exists()
        export = tmp_path / "export"
        wiped = _ok(sender.cli(
            "close", "wipe", "--export-dir", str(export), "--performed-by", "Ann Admin",
            "--validated-by", "Pat Person", "--canary", cases[0], "--json",
        ))  # fmt: skip
        assert wiped["verification"] == "passed"
        for said in ("mounts: ok", "key files: ok", "https.pem included", "files: ok",
                     "volume: ok", "plaintext: ok"):  # fmt: skip
            assert said in wiped["verification_details"], said
        left = [p for p in home.root.rglob("*") if not p.is_dir()]
        assert left == [home.config_file]
        assert not home.keys_dir.exists() and not home.data_dir.exists()
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(home.root) not in mounts
        shown = _ok(sender.cli("close", "certificate", "--export-dir", str(export), "--json"))
        (vault,) = [m for m in shown["certificate"]["media"] if "vault" in m["media_type"]]
        assert vault["data_backed_up"].startswith(f"Yes: {TRUST}'s signed receipt")
        assert "all 4 instance(s)" in vault["data_backed_up"]
        assert verified["receipt_sha256"] in vault["data_backed_up"]
    finally:
        sender.stop()
        receiver.stop()
