"""Scale-out: two Orthanc nodes with the plugin on one PostgreSQL ingest at once.

A real PostgreSQL (tests/postgres.py) in a temporary directory; node 1 and node 2 of
one home share Orthanc's index and the archive's own tables (both on PostgreSQL), the
encrypted storage area and the audit chain. Two storescu batches run concurrently, one
per node, with one study on each node only, one study split across both and some
identical instances sent to both. Afterwards nothing is lost or duplicated, the
catalogue (read from PostgreSQL) has one case per study, a user added while both nodes
run can sign in on both, no archive.db was ever created, and the single audit chain
verifies.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import httpx
import pydicom
import pytest
from sqlalchemy import select

from archive import db
from archive.access import AccessStore
from archive.catalogue.tables import cases as catalogue_cases
from archive.config import NODE_ENV, ArchiveConfig, load_config
from tests import postgres
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, free_port, new_archive

pytestmark = pytest.mark.skipif(
    not postgres.available(), reason="PostgreSQL 15 server binaries missing: run make setup"
)

SCU = "SCALE_SCU"


@dataclass
class NodeArchive(RunningArchive):
    """Another node of the same home; RunningArchive.start reloads the config, which
    then has to be this node's view (its ports and run directory)."""

    node: int = 2

    def start(self, timeout: float = 90) -> RunningArchive:
        with mock.patch.dict(os.environ, {NODE_ENV: str(self.node)}):
            return super().start(timeout)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _resource_counts(pg: postgres.PostgresServer) -> dict[int, int]:
    rows = pg.query("SELECT resourcetype, count(*) FROM resources GROUP BY resourcetype")
    return {int(kind): int(count) for kind, count in rows}


def _case_study_uids(config: ArchiveConfig) -> list[str]:
    conn = db.open_database(config)
    try:
        return conn.execute(select(catalogue_cases.c.study_uid)).scalars()
    finally:
        conn.close()


def _access(config: ArchiveConfig) -> AccessStore:
    """The access room on the archive's PostgreSQL tables (what `archive users` uses)."""
    return AccessStore(db.open_database(config))


def _signs_in(archive: RunningArchive, user: str, password: str) -> bool:
    with httpx.Client(base_url=archive.url, auth=(user, password), timeout=30) as http:
        return http.get("/teaching/cases").status_code == 200


def test_two_nodes_ingest_concurrently_into_one_index_and_one_chain(tmp_path: Path) -> None:
    with postgres.PostgresServer(fsync=False) as pg:
        node1 = new_archive(tmp_path / "home")
        secret = pg.write_password_file(tmp_path / "pg.password")
        postgres.use_postgresql(
            node1.config.home.config_file,
            pg,
            secret,
            nodes=[{"id": 2, "http_port": free_port(), "dicom_port": free_port()}],
        )
        config = load_config(node1.home)
        assert config.database.shared
        store = _access(config)
        try:
            store.add_dicom_node("scale-scu", SCU, "127.0.0.1", 104, may_store=True)
        finally:
            store.conn.close()
        node2 = NodeArchive(
            home=node1.home,
            config=node1.config,
            serve_args=[*node1.serve_args, "--node", "2"],
            env=node1.env,
        )
        only1 = make_ct_series(12, patient="ONE^NODE", patient_id="S1", seed=1)
        only2 = make_ct_series(12, patient="TWO^NODE", patient_id="S2", seed=2)
        split = make_ct_series(16, patient="BOTH^NODES", patient_id="S3", seed=3)
        # split[6:10] goes to both nodes: identical instances racing into one index.
        batch1 = write_files(tmp_path / "b1", [to_bytes(d) for d in only1 + split[:10]])
        batch2 = write_files(tmp_path / "b2", [to_bytes(d) for d in only2 + split[6:]])
        expected = len(only1) + len(only2) + len(split)
        try:
            node1.start()
            node2.start()
            assert node2.dicom_port != node1.dicom_port
            assert node2.log == node1.home / "run" / "node-2" / "orthanc.log"

            results: dict[int, object] = {}

            def send(index: int, archive: RunningArchive, files: list[Path]) -> None:
                results[index] = storescu(archive.dicom_port, archive.aet, SCU, files)

            senders = [
                threading.Thread(target=send, args=(1, node1, batch1)),
                threading.Thread(target=send, args=(2, node2, batch2)),
            ]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join(timeout=120)
            for index, result in results.items():
                assert result.returncode == 0, f"batch {index}: {result.stderr[-800:]}"
            assert len(results) == 2

            _wait(lambda: _resource_counts(pg).get(3) == expected, 30, "all instances indexed")
            _wait(lambda: len(_case_study_uids(config)) >= 3, 45, "three catalogue cases")
            time.sleep(1.0)  # a late duplicate case would show up now
            # Orthanc's index (PostgreSQL): 3 patients, 3 studies, 3 series, 40 instances.
            assert _resource_counts(pg) == {0: 3, 1: 3, 2: 3, 3: expected}
            files = pg.query("SELECT count(*) FROM attachedfiles WHERE filetype = 1")
            assert int(files[0][0]) == expected

            stored = [pydicom.dcmread(io.BytesIO(b)) for b in node1.stored_dicom()]
            sops = [str(ds.SOPInstanceUID) for ds in stored]
            assert len(sops) == expected and len(set(sops)) == expected
            studies = {str(ds.StudyInstanceUID) for ds in stored}
            cases = _case_study_uids(config)
            assert len(cases) == 3 and set(cases) == studies
            # The catalogue's tables are in the archive's schema on PostgreSQL.
            rows = pg.query(
                "SELECT count(*) FROM teaching_archive.catalogue_cases"
                " UNION ALL SELECT count(DISTINCT study_uid) FROM teaching_archive.catalogue_cases"
            )
            assert [int(r[0]) for r in rows] == [3, 3]

            # A user added while both nodes run is seen by both (access change counter).
            password = "pw-late-trainer-long-enough-42"
            now = datetime.now(UTC)
            store = _access(config)
            try:
                store.add_user("late", password, ["trainer"], now, by="test")
                store.record_training("late", now.date(), now, by="test")
            finally:
                store.conn.close()
            for archive in (node1, node2):
                _wait(lambda a=archive: _signs_in(a, "late", password), 20, "the new user")
            assert not _signs_in(node2, "late", "wrong-password-long-enough-1")
        finally:
            node2.stop()
            node1.stop()

        verify = node1.cli("audit", "verify", "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # The archive's tables never touched the home's SQLite file.
        assert not config.home.db_path.exists()
        # The PostgreSQL password is in no generated config and no log.
        home = node1.config.home
        for path in (
            home.orthanc_config,
            home.orthanc_dir / "orthanc-node-2.json",
            home.orthanc_log,
            home.run_dir / "node-2" / "orthanc.log",
        ):
            assert pg.password not in path.read_text(errors="replace"), path
        rendered = json.loads((home.orthanc_dir / "orthanc-node-2.json").read_text())
        assert rendered["PostgreSQL"]["Lock"] is False
        assert rendered["DicomPort"] == node2.dicom_port
        assert not (home.run_dir / "node-2" / "pgpass").exists()  # removed at stop


# -- nodes on separate hosts (issue 27): two homes, 127.0.0.2 and 127.0.0.3 -------------
SRC_AET, WS_AET = "HOSTS_SRC", "HOSTS_WS"


def _set_node(config_file: Path, host: str, storage: dict | None = None) -> None:
    import tomllib

    import tomli_w

    raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    raw.setdefault("http", {})["host"] = host
    raw.setdefault("dicom", {})["host"] = host
    if storage is not None:
        raw["storage"] = storage
    config_file.write_text(tomli_w.dumps(raw), encoding="utf-8")


def _available_cases(config: ArchiveConfig) -> list[tuple[str, str]]:
    conn = db.open_database(config)
    try:
        return [
            (row[0], row[1])
            for row in conn.execute(
                select(catalogue_cases.c.case_id, catalogue_cases.c.study_uid).where(
                    catalogue_cases.c.status == "available"
                )
            )
        ]
    except db.DatabaseError:  # the catalogue's table not created yet
        return []
    finally:
        conn.close()


def _getscu(archive: RunningArchive, host: str, study_uid: str, out: Path) -> list[int]:
    """C-GET a study from the node at `host` as the registered workstation; the Instance
    Numbers received, sorted (UIDs are pseudonymised on the way in; numbers are kept)."""
    import subprocess

    from tests.harness import base_env

    out.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(
        ["getscu", "-aet", WS_AET, "-aec", archive.aet, "-S", "--output-directory", str(out),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
         host, str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=180, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr[-800:]
    return sorted(int(pydicom.dcmread(p).InstanceNumber) for p in out.iterdir())


def _send_one_by_one(host: str, port: int, aet: str, datasets, after: int, then) -> list[int]:
    """C-STORE each dataset in one association, calling `then()` (in another thread)
    after `after` acknowledgements, so it lands while stores are in flight; two stores
    later the sender waits for it to be done (so the association always breaks before
    the end, however slow the machine). Returns the Instance Numbers acknowledged with
    success before the association broke."""
    from pynetdicom import AE

    ae = AE(ae_title=SRC_AET)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate(host, port, ae_title=aet)
    assert assoc.is_established
    acknowledged: list[int] = []
    killer: threading.Thread | None = None
    try:
        for ds in datasets:
            if killer is not None and len(acknowledged) >= after + 2:
                killer.join(timeout=60)
            if not assoc.is_established:
                break
            status = assoc.send_c_store(ds)
            if status is None or "Status" not in status:
                break
            if int(status.Status) == 0x0000:
                acknowledged.append(int(ds.InstanceNumber))
                if len(acknowledged) == after:
                    killer = threading.Thread(target=then)
                    killer.start()
    except Exception:  # noqa: BLE001,S110 - the node died mid-association
        pass
    finally:
        if assoc.is_established:
            assoc.abort()
        if killer is not None:
            killer.join(timeout=60)
    return acknowledged


def test_nodes_on_separate_hosts_share_database_storage_and_audit_chain(tmp_path: Path) -> None:
    from tests.harness import add_user, client, run_cli

    with postgres.PostgresServer(fsync=False) as pg:
        a = new_archive(tmp_path / "a")
        secret = pg.write_password_file(tmp_path / "pg.password")
        postgres.use_postgresql(a.config.home.config_file, pg, secret)
        _set_node(a.config.home.config_file, "127.0.0.2", {"kind": "postgresql"})
        a.config = load_config(a.home)
        store = _access(a.config)
        ws_dir = tmp_path / "ws-unused"
        try:
            store.add_dicom_node("hosts-src", SRC_AET, "127.0.0.1", 104, may_store=True)
        finally:
            store.conn.close()
        added = a.cli("workstations", "add", "ws-hosts", "--aet", WS_AET, "--host",
                      "127.0.0.1", "--port", "11112", "--location", "Suite")  # fmt: skip
        assert added.returncode == 0, added.stderr
        b = None
        try:
            a.start()
            joined = run_cli(
                "node", "join", "--home", str(tmp_path / "b"), "--from", str(a.home),
                "--http-host", "127.0.0.3", "--http-port", str(free_port()),
                "--dicom-host", "127.0.0.3", "--dicom-port", str(free_port()), "--json",
                env=a.env,
            )  # fmt: skip
            assert joined.returncode == 0, joined.stdout + joined.stderr
            assert json.loads(joined.stdout)["storage"] == "postgresql"
            b = RunningArchive(home=tmp_path / "b", config=load_config(tmp_path / "b"),
                               serve_args=a.serve_args, env=a.env)  # fmt: skip
            b.start()
            assert b.url.startswith("http://127.0.0.3:") and a.url.startswith("http://127.0.0.2:")

            # Ingest on A, search and pull from B.
            first = make_ct_series(4, patient="HOSTS^ONE", patient_id="H1", seed=21)
            sent = storescu(a.dicom_port, a.aet, SRC_AET,
                            write_files(tmp_path / "first", [to_bytes(d) for d in first]),
                            host="127.0.0.2")  # fmt: skip
            assert sent.returncode == 0, sent.stderr[-800:]
            _wait(lambda: len(_available_cases(a.config)) == 1, 90, "the first case")
            ((case_id, study_uid),) = _available_cases(b.config)
            add_user(b, "hosts-trainer", ["trainer"])
            with client(b, "hosts-trainer") as http:
                found = http.get("/teaching/cases", params={"q": ""})
                assert found.status_code == 200, found.text
                assert case_id in {c["case_id"] for c in found.json()["items"]}
            got = _getscu(b, "127.0.0.3", study_uid, tmp_path / "got-first")
            assert got == sorted(int(d.InstanceNumber) for d in first)

            # kill -9 A mid-ingest: every instance A acknowledged is served by B.
            second = make_ct_series(30, patient="HOSTS^TWO", patient_id="H2", seed=22)
            acknowledged = _send_one_by_one("127.0.0.2", a.dicom_port, a.aet, second, 6, a.kill)
            assert 6 <= len(acknowledged) <= 8, len(acknowledged)
            assert b.health() is not None  # B keeps serving
            # The sender fails over to B with what A never acknowledged.
            rest = [d for d in second if int(d.InstanceNumber) not in set(acknowledged)]
            resent = storescu(b.dicom_port, b.aet, SRC_AET,
                              write_files(tmp_path / "rest", [to_bytes(d) for d in rest]),
                              host="127.0.0.3")  # fmt: skip
            assert resent.returncode == 0, resent.stderr[-800:]
            _wait(lambda: len(_available_cases(b.config)) == 2, 90, "the second case")
            (uid2,) = {uid for _, uid in _available_cases(b.config)} - {study_uid}
            got2 = _getscu(b, "127.0.0.3", uid2, tmp_path / "got-second")
            assert set(acknowledged) <= set(got2)
            assert got2 == sorted(int(d.InstanceNumber) for d in second)  # once each
        finally:
            if b is not None:
                b.stop()
            a.stop()
        del ws_dir

        # One chain in PostgreSQL for both homes, verified from either; no file chain.
        for home in (a, b):
            verified = home.cli("audit", "verify", "--json")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert not (home.config.home.audit_dir / "audit.jsonl").exists()
        # Nothing of the instances in either home: the storage is the database's.
        for home in (a, b):
            assert not any(p.is_file() for p in home.config.home.storage_dir.rglob("*"))
        blobs = pg.query("SELECT count(*) FROM teaching_archive.vault_blob WHERE content_type = 1")
        assert int(blobs[0][0]) >= len(first) + len(second)
        _fsck_backup_restore_on_postgresql(tmp_path, pg, a)


def _fsck_backup_restore_on_postgresql(tmp_path: Path, pg, a: RunningArchive) -> None:
    """fsck, backup (pg_dump of both schemas, in the encrypted bundle) and restore into an
    empty database, on the stopped archive (issue 27: instead of refusing)."""
    from tests.harness import run_cli

    checked = a.cli("fsck", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] and report["checked"]["attachments"] >= 34
    # An envelope row no index entry points to (written just before a crash): found,
    # and --repair moves it (still encrypted) to lost+found.
    pg.psql(
        "INSERT INTO teaching_archive.vault_blob (uuid, content_type, envelope) SELECT"
        " 'orphan-0000-1111', 1, envelope FROM teaching_archive.vault_blob LIMIT 1",
        database=pg.database,
    )
    found = json.loads(a.cli("fsck", "--json").stdout)
    assert [f["kind"] for f in found["findings"]] == ["orphan_file"], found
    repaired = a.cli("fsck", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert json.loads(repaired.stdout)["lost_and_found"]
    assert a.cli("fsck", "--json").returncode == 0

    secret = tmp_path / "recovery"
    secret.write_text("recovery passphrase kept in the School safe")
    secret.chmod(0o600)
    kb = a.cli("keys", "backup", "--to", str(tmp_path / "safe" / "kb.json"),
               "--recovery-passphrase-file", str(secret))  # fmt: skip
    assert kb.returncode == 0, kb.stderr
    made = a.cli("backup", "create", "--to", str(tmp_path / "media"), "--json")
    assert made.returncode == 0, made.stdout + made.stderr
    chain_rows = int(pg.query("SELECT count(*) FROM teaching_archive.audit_chain")[0][0])
    assert json.loads(made.stdout)["audit_last_seq"] == chain_rows - 1  # then backup.create
    verified = a.cli("backup", "verify", str(tmp_path / "media"), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Restore: refused over the live database, done into an empty one.
    restore = ["backup", "restore", str(tmp_path / "media"),
               "--keyring-backup", str(tmp_path / "safe" / "kb.json"),
               "--recovery-passphrase-file", str(secret),
               "--passphrase-file", a.env["ARCHIVE_KEYRING_PASSPHRASE_FILE"],
               "--http-port", str(free_port()), "--dicom-port", str(free_port()),
               "--json"]  # fmt: skip
    refused = run_cli(*restore, home=tmp_path / "c-refused", env=a.env)
    assert refused.returncode == 1 and "not empty" in refused.stderr, refused.stderr
    assert not (tmp_path / "c-refused").exists()
    pg.psql(f"CREATE DATABASE restored OWNER {pg.user}")
    done = run_cli(*restore, "--database", "restored", home=tmp_path / "c", env=a.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["instances_checked"] >= 34  # each decrypted, MD5 checked
    restored = pg.psql(
        "SELECT (SELECT count(*) FROM teaching_archive.audit_chain),"
        " (SELECT count(*) FROM teaching_archive.vault_blob),"
        " (SELECT count(*) FROM public.resources WHERE resourcetype = 3)",
        database="restored",
    ).split("|")
    assert int(restored[0]) == chain_rows  # the dumped chain and the restore's own record
    assert int(restored[2]) == 34
    c = RunningArchive(home=tmp_path / "c", config=load_config(tmp_path / "c"),
                       serve_args=a.serve_args, env=a.env)  # fmt: skip
    assert c.config.database.database == "restored"
    verify_c = c.cli("audit", "verify", "--keyring", "--json")
    assert verify_c.returncode == 0, verify_c.stdout + verify_c.stderr
