"""Closure of the suite (issue 10) with real processes: a real archive sends itself by
C-STORE to a real receiving node (dcmtk storescp), the receipt is recorded, two personnel
confirm, the stopped archive is wiped, and nothing readable remains; the certificate's
signature verifies with the exported audit public key. A wipe without a receipt, by one
person only, or while `archive serve` runs, is refused and leaves the home intact.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from archive import db
from archive.audit import query as audit_query
from archive.audit import verify
from archive.governance import PullInventory
from archive.vault.backup import known_backup_locations
from archive.vault.keyring import keyring_path
from archive.vault.volume import GOCRYPTFS_CONF
from archive.vault.wipe import find_plaintext
from tests.corpus import make_ct_series, to_bytes
from tests.harness import add_user, client, new_archive
from tests.integration.test_pulls import StoreSCP, wait_for_cases

RECEIVER_AET = "TRUST_TEACH"
TODAY = date.today().isoformat()


def _ok(done) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}


def test_full_closure_transfer_wipe_certificate(tmp_path: Path) -> None:
    archive = new_archive(tmp_path / "home")
    scp = StoreSCP(tmp_path / "receiver", aet=RECEIVER_AET)
    export = tmp_path / "export"
    try:
        for user in ("pers1", "pers2"):
            add_user(archive, user, ["personnel"])
        for member in ("board1", "board2", "board3"):
            add_user(archive, member, ["board_member"])
        pw = {}
        for user in ("pers1", "pers2", "board1", "board2", "board3"):
            pw[user] = tmp_path / f"{user}.pw"
            pw[user].write_text(archive.passwords[user])
        trust = _ok(archive.cli(
            "recipients", "add", "Northern Trust Teaching Collection",
            "--kind", "trust_teaching_collection", "--contact", "Dr B Keeper",
            "--aet", RECEIVER_AET, "--host", "127.0.0.1", "--port", str(scp.port), "--json",
        ))  # fmt: skip
        archive.start()
        with client(archive, "pers1") as http:
            for seed, pid in ((1, "P-A"), (2, "P-B")):
                for ds in make_ct_series(2, patient="CLOSE^ME", patient_id=pid, seed=seed):
                    assert http.post("/instances", content=to_bytes(ds)).status_code == 200
        cases = wait_for_cases(archive, 2)
        home = archive.config.home
        canary = cases[0]  # a value in clear in the live catalogue: must not survive
        assert find_plaintext(home.root, [canary.encode()])

        # A workstation that received pulls (as the pull route records it).
        conn = db.connect(home.db_path)
        try:
            PullInventory(conn).record_pull(cases[0], "imac-07", "pers1", datetime.now(UTC))
        finally:
            conn.close()

        plan = _ok(archive.cli("close", "plan", "--json"))
        assert plan["cases"] == 2 and plan["instances"] == 4 and plan["bytes"] > 0
        assert plan["workstations"] == {"imac-07": [cases[0]]}
        assert any(k["kind"] == "keyring" for k in plan["keys"])

        decide = ("close", "decide", "--outcome", "transfer", "--recipient", str(trust["id"]),
                  "--meeting-date", TODAY, "--minute", "SB/2025/12",
                  "--text", "Transfer on closure")  # fmt: skip
        # Issue 21: nobody records "local-operator" plus typed names any more.
        typed = archive.cli(*decide, "--approver", "board2", "--as", "board1",
                            "--password-file", str(pw["board1"]))  # fmt: skip
        assert typed.returncode == 1 and "--approver is no longer accepted" in typed.stderr
        impostor = archive.cli(*decide, "--as", "board1", "--password-file", str(pw["pers1"]))
        assert impostor.returncode == 1 and "board1 could not be authenticated" in impostor.stderr
        assert len(impostor.stderr.strip().splitlines()) == 1
        personnel = archive.cli(*decide, "--as", "pers1", "--password-file", str(pw["pers1"]))
        assert personnel.returncode == 1 and "School Board" in personnel.stderr
        assert len(personnel.stderr.strip().splitlines()) == 1  # the reason, then what to do
        decision = _ok(archive.cli(*decide, "--as", "board1", "--password-file",
                                   str(pw["board1"]), "--json"))  # fmt: skip
        assert decision["quorum_counted"] == 1 and not decision["in_force"]
        early = archive.cli("close", "transfer", "--as", "pers1", "--password-file",
                            str(pw["pers1"]))  # fmt: skip
        assert early.returncode == 1 and "no School Board decision" in early.stderr
        again = archive.cli("close", "vote", str(decision["decision_id"]), "--as", "board1",
                            "--password-file", str(pw["board1"]))  # fmt: skip
        assert again.returncode == 1 and "already voted" in again.stderr
        voted = _ok(archive.cli("close", "vote", str(decision["decision_id"]), "--as", "board2",
                                "--password-file", str(pw["board2"]), "--json"))  # fmt: skip
        assert voted["quorum_counted"] == 2 and voted["in_force"]
        # One act, one audit record (issue 21): the decision is board1's vote, counted.
        votes = audit_query(home.audit_dir, action="governance.board.vote", outcome="success")
        assert [v["actor"] for v in votes] == ["board2"]
        recorded = audit_query(home.audit_dir, action="closure.decision", outcome="success")
        assert [r["actor"] for r in recorded] == ["board1"]
        assert recorded[0]["detail"]["counted"] == 1
        sent = _ok(archive.cli(
            "close", "transfer", "--as", "pers1", "--password-file", str(pw["pers1"]),
            "--manifest-out", str(tmp_path / "manifest.json"), "--json", timeout=300,
        ))  # fmt: skip
        assert sent["instance_count"] == 4
        assert len(scp.files()) == 4  # the receiving node holds every instance

        _ok(archive.cli("close", "confirm", "--as", "pers1", "--password-file", str(pw["pers1"])))
        archive.stop()
        args = ("--export-dir", str(export), "--performed-by", "Ann Admin",
                "--validated-by", "Pat Person")  # fmt: skip
        refused = archive.cli("close", "wipe", *args)
        assert refused.returncode == 1
        assert "no receipt" in refused.stderr and "2 different staff" in refused.stderr
        assert keyring_path(home.keys_dir).exists() and home.storage_dir.is_dir()
        assert not export.exists()

        _ok(archive.cli(
            "close", "receipt", "--transfer", str(sent["transfer_id"]),
            "--manifest-file", str(tmp_path / "manifest.json"), "--received-by", "Dr B Keeper",
            "--organisation", "Northern Trust Teaching Collection", "--received-on", TODAY,
            "--as", "pers2", "--password-file", str(pw["pers2"]),
        ))  # fmt: skip
        # Still one person: refused.
        again = archive.cli("close", "wipe", *args)
        assert again.returncode == 1 and "2 different staff" in again.stderr
        assert "no receipt" not in again.stderr
        # The same person twice does not count as two.
        _ok(archive.cli("close", "confirm", "--as", "pers1", "--password-file", str(pw["pers1"])))
        assert "2 different staff" in archive.cli("close", "wipe", *args).stderr
        _ok(archive.cli("close", "confirm", "--as", "pers2", "--password-file", str(pw["pers2"])))
        # The workstation must be attested wiped first (the certificate needs it).
        blocked = archive.cli("close", "wipe", *args)
        assert blocked.returncode == 1 and "imac-07" in blocked.stderr
        typed = archive.cli("close", "attest-workstation", "imac-07", "--method", "nwipe",
                            "--attested-by", "Ian Tech")  # fmt: skip
        assert typed.returncode == 1 and "--attested-by is no longer accepted" in typed.stderr
        _ok(archive.cli("close", "attest-workstation", "imac-07", "--method", "nwipe 1 pass",
                        "--as", "pers2", "--password-file", str(pw["pers2"])))  # fmt: skip
        # Refused while the archive serves.
        archive.start()
        serving = archive.cli("close", "wipe", *args)
        assert serving.returncode == 1 and "stop the archive" in serving.stderr
        archive.stop()
        assert keyring_path(home.keys_dir).exists()

        backups = known_backup_locations(home.keys_dir)
        wiped = _ok(archive.cli("close", "wipe", *args, "--canary", canary, "--json"))
        assert wiped["verification"] == "passed" and wiped["keys_destroyed"] >= 1

        # Nothing readable remains.
        assert not keyring_path(home.keys_dir).exists()
        assert all(not p.exists() for p in backups)
        assert not home.storage_dir.exists() and not home.db_path.exists()
        assert not (home.volume_dir / GOCRYPTFS_CONF).exists()
        assert find_plaintext(home.root, [canary.encode()]) == []
        # The certificate verifies with the exported public key; the audit log too.
        shown = _ok(archive.cli("close", "certificate", "--export-dir", str(export), "--json"))
        assert shown["signature_valid"] and shown["public_key_matches_log"]
        cert = shown["certificate"]
        assert cert["steps"][0]["method_used"] == "Cryptographic Erase"
        assert cert["verification"]["result"] == "passed"
        assert [a["workstation"] for a in cert["workstation_attestations"]] == ["imac-07"]
        public = bytes.fromhex((export / "audit_public_key.hex").read_text().strip())
        assert verify(export / "audit", public).ok
        text = (export / "certificate.txt").read_text()
        assert "CERTIFICATE OF SANITIZATION" in text and "Ann Admin" in text
        # Tampering with the certificate is found.
        body = json.loads((export / "certificate.json").read_text())
        body["certificate"]["performed_by"]["name"] = "Someone Else"
        (export / "certificate.json").write_text(json.dumps(body))
        bad = archive.cli("close", "certificate", "--export-dir", str(export))
        assert bad.returncode == 1
    finally:
        archive.stop()
        scp.stop()
