"""The whole closure on PostgreSQL (issue 27), with real processes: an archive whose index,
tables, audit chain and attachments are all in one real PostgreSQL (`[database]` and
`[storage] kind = "postgresql"`), plus a node on another host that joined it, goes
through plan, the Board's decision and votes, the transfer by C-STORE to a real receiver,
the receipt, two confirmations, the wipe of the joined node's home, then `archive close
wipe`. Afterwards PostgreSQL itself is inspected: no relation, large object or schema of
the archive's role is left in its database, no data file of that database holds a
canary after a CHECKPOINT, every keyring copy is gone from both homes, and the signed
certificate verifies and says what was done to the database (dropped, not overwritten),
to the joined node's home, and what is left to the database's operator.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from archive.config import load_config
from archive.vault.keyring import keyring_path
from archive.vault.wipe import find_plaintext
from tests import postgres
from tests.corpus import make_ct_series, to_bytes
from tests.harness import RunningArchive, add_user, client, free_port, new_archive, run_cli
from tests.integration.test_pulls import StoreSCP
from tests.integration.test_scaleout import _available_cases, _set_node, _wait

pytestmark = pytest.mark.skipif(
    not postgres.available(), reason="PostgreSQL 15 server binaries missing: run make setup"
)

RECEIVER_AET = "TRUST_PG"
TODAY = date.today().isoformat()


def _ok(done) -> dict:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}


def _owned(pg: postgres.PostgresServer) -> dict[str, int]:
    """What the archive's role owns in its database, counted by PostgreSQL itself."""
    sql = (
        "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid),"
        " (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid),"
        " (SELECT count(*) FROM pg_largeobject_metadata WHERE lomowner = r.oid),"
        " (SELECT count(*) FROM pg_namespace WHERE nspname = 'teaching_archive')"
        " FROM pg_roles r WHERE r.rolname = 'ROLE'"
    )
    row = pg.psql(sql.replace("ROLE", pg.user), database=pg.database).split("|")
    return dict(zip(("relations", "schemas", "large_objects", "archive_schema"),
                    map(int, row), strict=True))  # fmt: skip


def _database_files(pg: postgres.PostgresServer) -> Path:
    oid = pg.psql(f"SELECT oid FROM pg_database WHERE datname = '{pg.database}'")  # noqa: S608
    assert pg.data_dir is not None
    return pg.data_dir / "base" / oid


def test_closure_on_postgresql_wipes_database_and_joined_node(tmp_path: Path) -> None:
    with postgres.PostgresServer(fsync=False) as pg:
        a = new_archive(tmp_path / "a")
        secret = pg.write_password_file(tmp_path / "pg.password")
        postgres.use_postgresql(a.config.home.config_file, pg, secret)
        _set_node(a.config.home.config_file, "127.0.0.2", {"kind": "postgresql"})
        a.config = load_config(a.home)
        scp = StoreSCP(tmp_path / "receiver", aet=RECEIVER_AET)
        export = tmp_path / "export"
        b = None
        pg.psql(f"GRANT pg_checkpoint TO {pg.user}")  # so the wipe can force one
        try:
            pw = {}
            for user, role in (("pers1", "personnel"), ("pers2", "personnel"),
                               ("board1", "board_member"), ("board2", "board_member"),
                               ("board3", "board_member")):  # fmt: skip
                add_user(a, user, [role])
                pw[user] = tmp_path / f"{user}.pw"
                pw[user].write_text(a.passwords[user])
            trust = _ok(a.cli(
                "recipients", "add", "Northern Trust Teaching Collection",
                "--kind", "trust_teaching_collection", "--contact", "Dr B Keeper",
                "--aet", RECEIVER_AET, "--host", "127.0.0.1", "--port", str(scp.port), "--json",
            ))  # fmt: skip
            a.start()
            joined = run_cli(
                "node", "join", "--home", str(tmp_path / "b"), "--from", str(a.home),
                "--http-host", "127.0.0.3", "--http-port", str(free_port()),
                "--dicom-host", "127.0.0.3", "--dicom-port", str(free_port()), "--json",
                env=a.env,
            )  # fmt: skip
            assert joined.returncode == 0, joined.stdout + joined.stderr
            b = RunningArchive(
                home=tmp_path / "b",
                config=load_config(tmp_path / "b"),
                serve_args=a.serve_args,
                env=a.env,
                passwords=a.passwords,
            )
            b.start()
            with client(a, "pers1") as http:
                for seed, pid in ((31, "PG-A"), (32, "PG-B")):
                    for ds in make_ct_series(2, patient="CLOSE^PG", patient_id=pid, seed=seed):
                        assert http.post("/instances", content=to_bytes(ds)).status_code == 200
            # An instance with burnt-in text from an unknown device, held on B's host.
            us = pydicom.dcmread(pydicom.data.get_testdata_file("US1_UNCR.dcm"))
            us.Manufacturer = "Unknown Devices Ltd"
            with client(b, "pers1") as http:
                http.post("/instances", content=to_bytes(us))
            held = b.config.home.quarantine_dir
            _wait(lambda: any(p.is_file() for p in held.rglob("*")), 90, "B's quarantine")
            b.stop()
            _wait(lambda: len(_available_cases(a.config)) == 2, 90, "two cases")
            cases = sorted(case for case, _uid in _available_cases(a.config))
            canary = cases[0]  # in clear in the catalogue's rows and the audit chain

            # Everything is in PostgreSQL: the attachments too, nothing under data/storage.
            blobs = pg.query("SELECT count(*) FROM teaching_archive.vault_blob")
            assert int(blobs[0][0]) >= 4
            assert not any(p.is_file() for p in a.config.home.storage_dir.rglob("*"))
            assert not a.config.home.db_path.exists()

            plan = _ok(a.cli("close", "plan", "--json"))
            assert plan["cases"] == 2 and plan["instances"] == 4
            (copy,) = [k for k in plan["keys"] if "joined node" in str(k["kind"])]
            assert "127.0.0.3" in str(copy["file"])
            decision = _ok(a.cli(
                "close", "decide", "--outcome", "transfer", "--recipient", str(trust["id"]),
                "--meeting-date", TODAY, "--minute", "SB/2026/27", "--text", "Transfer",
                "--as", "board1", "--password-file", str(pw["board1"]), "--json",
            ))  # fmt: skip
            _ok(a.cli("close", "vote", str(decision["decision_id"]), "--as", "board2",
                      "--password-file", str(pw["board2"])))  # fmt: skip
            sent = _ok(a.cli(
                "close", "transfer", "--as", "pers1", "--password-file", str(pw["pers1"]),
                "--manifest-out", str(tmp_path / "manifest.json"), "--json", timeout=300,
            ))  # fmt: skip
            assert sent["instance_count"] == 4 and len(scp.files()) == 4
            _ok(a.cli(
                "close", "receipt", "--transfer", str(sent["transfer_id"]),
                "--manifest-file", str(tmp_path / "manifest.json"),
                "--received-by", "Dr B Keeper",
                "--organisation", "Northern Trust Teaching Collection", "--received-on", TODAY,
                "--as", "pers2", "--password-file", str(pw["pers2"]),
            ))  # fmt: skip
            for user in ("pers1", "pers2"):
                _ok(a.cli("close", "confirm", "--as", user, "--password-file", str(pw[user])))
        finally:
            if b is not None:
                b.stop()
            a.stop()
            scp.stop()

        before = _owned(pg)
        assert before["relations"] > 20 and before["archive_schema"] == 1
        args = ("--export-dir", str(export), "--performed-by", "Ann Admin",
                "--validated-by", "Pat Person", "--canary", canary, "--json")  # fmt: skip
        # B holds a copy of the keyring and its own quarantine files: A's wipe waits for B.
        refused = a.cli("close", "wipe", *args)
        assert refused.returncode == 1 and "127.0.0.3" in refused.stderr, refused.stderr
        assert "wipe-node" in refused.stderr and not export.exists()
        assert keyring_path(a.config.home.keys_dir).exists() and _owned(pg) == before
        first = a.cli("close", "wipe-node")
        assert first.returncode == 1 and "first home" in first.stderr
        wrong_end = b.cli("close", "wipe", *args)
        assert wrong_end.returncode == 1 and "joined the archive" in wrong_end.stderr
        node = _ok(b.cli("close", "wipe-node", "--json"))
        assert node["verification"] == "passed" and node["keys_destroyed"] >= 1
        assert not keyring_path(b.config.home.keys_dir).exists()
        assert not held.exists() and not b.config.home.data_dir.exists()
        assert [p.name for p in b.config.home.root.rglob("*")] == ["archive.toml"]

        wiped = _ok(a.cli("close", "wipe", *args))
        assert wiped["verification"] == "passed"
        assert wiped["database"]["left"] == {"relations": 0, "schemas": 0, "large_objects": 0}
        assert wiped["database"]["rows"]["teaching_archive.vault_blob"] >= 4
        assert "CHECKPOINT forced" in wiped["database"]["checkpoint"]

        # PostgreSQL, inspected as its superuser: nothing of the archive's role is left.
        after = _owned(pg)
        assert after == {"relations": 0, "schemas": 0, "large_objects": 0,
                         "archive_schema": 0}, after  # fmt: skip
        tables = pg.psql(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN"
            " ('pg_catalog', 'information_schema')",
            database=pg.database,
        )
        assert tables == "0"  # neither Orthanc's index (public) nor the archive's schema
        # The role forced a CHECKPOINT, so the dropped relations' files are unlinked now.
        assert find_plaintext(_database_files(pg), [canary.encode()]) == []
        # Both homes: no keyring copy, no data.
        home = a.config.home
        assert not keyring_path(home.keys_dir).exists()
        assert find_plaintext(home.root, [canary.encode()]) == []

        shown = _ok(a.cli("close", "certificate", "--export-dir", str(export), "--json"))
        assert shown["signature_valid"] and shown["public_key_matches_log"]
        cert = shown["certificate"]
        assert cert["verification"]["result"] == "passed"
        (database,) = [m for m in cert["media"] if m["media_type"].startswith("PostgreSQL")]
        assert pg.database in database["identifier"] and str(pg.port) in database["identifier"]
        steps = {s["method_used"]: s for s in cert["steps"]}
        dropped = steps["Drop the database role's objects"]
        assert dropped["method_type"] == "Clear"
        assert f"{before['relations']} relation(s)" in dropped["details"]
        assert "not overwritten" in dropped["details"]
        assert "operator" in cert["notes"] and "WAL" in cert["notes"]
        assert "database server's storage stays" in cert["post_sanitization_classification"]
        assert "CHECKPOINT forced" in dropped["details"]
        (b_home,) = [m for m in cert["media"] if m["media_type"].startswith("Node home")]
        assert b_home["identifier"] == str(b.config.home.root)
        assert "127.0.0.3" in b_home["source"]
        assert any("joined nodes' keyring" in s["method_used"] for s in cert["steps"])
        # The node's wipe is in the exported, verified chain, signed like every record.
        lines = (export / "audit" / "audit.jsonl").read_text().splitlines()
        node_wipes = [json.loads(x) for x in lines if "closure.node_wipe" in x]
        # The refused wipe-node on A (not a joined node) is recorded, then B's two stages.
        assert [(r["outcome"], r["detail"].get("stage")) for r in node_wipes] == [
            ("denied", None),
            ("success", "authorised"),
            ("success", "wiped"),
        ]
        assert node_wipes[0]["detail"]["reason"] == "not a joined node"
        assert "127.0.0.2" in node_wipes[0]["detail"]["http"]
