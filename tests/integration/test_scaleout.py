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

from archive import db
from archive.access import AccessStore
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
        return [row[0] for row in conn.execute("SELECT study_uid FROM catalogue_cases")]
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
