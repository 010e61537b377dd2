"""Make tests/unit/old_homes/postgres_5c809bb.sql: the archive's schema on PostgreSQL
as the code at 5c809bb (the last commit before the rooms moved to SQLAlchemy Core:
the parent of 9757573 "Merge L3") left it - every room's tables made by the regex
translator (archive/db/postgres.py) from the SQLite scripts - with synthetic rows in
every room, dumped with pg_dump.

Not collected by pytest and not importable with today's code: it runs the OLD code.

    git worktree add /tmp/old5c809bb 5c809bb
    cd /tmp/old5c809bb && PYTHONPATH=/tmp/old5c809bb /work/h44/.venv/bin/python \
        /work/h44/tests/unit/old_homes/make_postgres_5c809bb.py OUT.sql

Every value is synthetic; password hashes are of the test-only passphrase below.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

SCHEMA = "old_home"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PASSPHRASE = "old-home test passphrase"  # test-only  # noqa: S105


def main(out: Path) -> None:
    from argon2 import PasswordHasher

    from archive.db import Connection
    from archive.db.engine import postgres_engine
    from tests import postgres

    with postgres.PostgresServer(fsync=False) as server:

        def connect() -> Connection:
            return Connection(
                postgres_engine(
                    host="127.0.0.1",
                    port=server.port,
                    database=server.database,
                    user=server.user,
                    password=server.password,
                    schema=SCHEMA,
                )
            )

        conn = connect()
        cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        populate(conn, cheap)
        conn.close()
        dump = subprocess.run(
            [
                str(postgres.PG_BIN / "pg_dump"),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                server.user,
                "--schema",
                SCHEMA,
                "--no-owner",
                "--no-privileges",
                server.database,
            ],
            env={"PGPASSWORD": server.password, "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
            text=True,
        )
        out.write_text(dump.stdout)


def populate(conn, hasher) -> None:  # noqa: PLR0915 - one room after another
    # -- access: users, roles, training, a token, a DICOM node -------------------------
    from archive.access import AccessStore, AccountPolicy

    access = AccessStore(conn, AccountPolicy(), hasher=hasher)
    access.add_user("boss", PASSPHRASE, ["personnel"], T0, "root")
    access.add_user("alice", PASSPHRASE, ["trainer"], T0, "boss")
    access.add_user("bob", PASSPHRASE, ["registrar"], T0, "boss")
    access.record_training("alice", date(2025, 2, 1), T0, "boss")
    access.create_token("alice", T0, days=30, label="old token")
    access.add_dicom_node("ws-01", "WS01", "127.0.0.9", 11112, may_query=True)

    # -- catalogue: cases with series, a collection ------------------------------------
    from archive.catalogue import Catalogue
    from tests.unit.test_catalogue import fake_scan, study

    cat = Catalogue(conn, "OLD", scanner=fake_scan)
    for n in (1, 2, 3):
        cat.upsert_from_study(study(n), f"orthanc-{n}", T0 + timedelta(hours=n))
    coll = cat.create_collection("Chest basics", "Synthetic teaching set", "alice", T0)
    print("collection", coll.collection_id)

    # -- quarantine: raw SQL (the store needs a home and a keyring for its files) ----
    from archive import db
    from archive.quarantine.store import SCHEMA as Q_SCHEMA

    db.migrate(conn, "quarantine", Q_SCHEMA)

    # -- web sessions ---------------------------------------------------------------
    from archive.web.sessions import SessionStore

    SessionStore(conn).create("alice", T0, epoch=0, trained=True)

    # -- ledger -------------------------------------------------------------------
    from archive.vault.ledger import InstanceLedger, LedgerEntry

    ledger = InstanceLedger(conn)
    for n in (1, 2):
        ledger.record(
            LedgerEntry(
                uuid=f"00000000-0000-4000-8000-00000000000{n}",
                orthanc_instance_id=f"inst-{n}",
                orthanc_series_id="series-1",
                orthanc_study_id="orthanc-1",
                study_uid="2.25.1",
                series_uid="2.25.1.1",
                sop_uid=f"2.25.1.1.{n}",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                transfer_syntax="1.2.840.10008.1.2.1",
                modality="CT",
                instance_number=n,
                size=1000 + n,
            )
        )

    # -- teach ---------------------------------------------------------------------
    from archive.teach.store import TeachStore

    teach = TeachStore(conn)
    teach.set_unknown("OLD-2025-00001", True, "alice", T0.isoformat())
    teach.save_answer("OLD-2025-00001", "bob", "pneumothorax", T0.isoformat())
    teach.choose("2025-03-01", "OLD-2025-00002", "alice", T0.isoformat())

    # -- ingest: origins, flags ---------------------------------------------------------
    from archive.ingest import flags, origins

    origins.record(conn, "2.25.1", "dicom")
    flags.record_flags(conn, "2.25.1", "2.25.1.1", ["burned-in-annotation"])
    flags.record_pixel_report(
        conn,
        "2.25.1",
        "2.25.1.1",
        "2.25.1.1.1",
        "CT",
        {"action": "kept", "assessed": True, "ocr": {"frames": 1, "words": 2, "kinds": ["date"]}},
        "alice",
    )

    # -- transfer peers ---------------------------------------------------------------
    from archive.transfer import store as transfer

    transfer.add_peer(conn, "Synthetic Partner School", "ab" * 32, "boss")

    # -- dicom workstation sessions, governance: the rooms' own SQL -----------------
    from archive.dicom.sessions import ROOM as D_ROOM
    from archive.dicom.sessions import STEPS as D_STEPS
    from archive.governance._store import ensure_schema as governance_schema

    db.migrate(conn, D_ROOM, D_STEPS)
    governance_schema(conn)
    rows = [
        "INSERT INTO dicom_workstation_sessions (workstation, user, epoch, trained,"
        " started_at, expires_at) VALUES ('WS1', 'alice', 0, 1,"
        " '2025-03-01T09:00:00+00:00', '2025-03-01T17:00:00+00:00')",
        "INSERT INTO governance_pulls (case_id, workstation, user, pulled_at)"
        " VALUES ('OLD-2025-00001', 'WS1', 'alice', '2025-03-01T09:05:00Z')",
        "INSERT INTO governance_pulls (case_id, workstation, user, pulled_at)"
        " VALUES ('OLD-2025-00002', 'WS1', 'alice', '2025-03-01T09:06:00Z')",
        "INSERT INTO governance_removal_requests (purpose, destination, requester,"
        " requester_roles, status, created_at, policy_version) VALUES"
        " ('conference talk', 'usb', 'alice', '[\"trainer\"]', 'pending',"
        " '2025-03-01T09:10:00Z', '1')",
        "INSERT INTO governance_removal_cases (request_id, case_id, level_at_request)"
        " VALUES (1, 'OLD-2025-00001', 'limited-access')",
        # The order given was SQLite's rowid (the translator's hidden one here): not sorted.
        "INSERT INTO governance_removal_requests (purpose, destination, requester,"
        " requester_roles, status, created_at, policy_version) VALUES"
        " ('teaching day', 'usb', 'alice', '[\"trainer\"]', 'pending',"
        " '2025-03-01T09:11:00Z', '1')",
        "INSERT INTO governance_removal_cases (request_id, case_id, level_at_request)"
        " VALUES (2, 'OLD-2025-00003', 'limited-access')",
        "INSERT INTO governance_removal_cases (request_id, case_id, level_at_request)"
        " VALUES (2, 'OLD-2025-00001', 'limited-access')",
        "INSERT INTO governance_removal_cases (request_id, case_id, level_at_request)"
        " VALUES (2, 'OLD-2025-00002', 'limited-access')",
        "INSERT INTO governance_withdrawals (pseudonym_sha256, kind, requested_by,"
        " recorded_by, recorded_at) VALUES ('" + "34" * 32 + "', 'withdrawal',"
        " 'synthetic requester', 'boss', '2025-03-01T09:45:00Z')",
        "INSERT INTO governance_withdrawn_cases (withdrawal_id, case_id)"
        " VALUES (1, 'OLD-2025-00002')",
        "INSERT INTO governance_withdrawn_cases (withdrawal_id, case_id)"
        " VALUES (1, 'OLD-2025-00001')",
        # Rows rewritten in place move in the heap: their physical order (and the dump's)
        # is no longer the order given, which only rowid keeps.
        "UPDATE governance_removal_cases SET level_at_request = level_at_request"
        " WHERE case_id = 'OLD-2025-00003'",
        "UPDATE governance_withdrawn_cases SET case_id = case_id WHERE case_id = 'OLD-2025-00002'",
    ]
    from archive.ingest import tickets
    from archive.intake.journal import STEPS as INTAKE_STEPS
    from archive.web.downloads import SCHEMA as LINK_SCHEMA

    db.migrate(conn, "intake", INTAKE_STEPS)
    db.migrate(conn, "web_links", LINK_SCHEMA)
    tickets.mint(
        conn,
        b"k" * 32,
        item_id="q-0001",
        sop_uid="2.25.9.1.1",
        data=b"synthetic masked instance",
        reviewer="alice",
        now=T0,
    )
    rows += [
        "INSERT INTO quarantine_items (id, received_at, reason, intake, modality, study_uid,"
        " patient_pseudonym, raw, ingested_by, kind, series_uid, sop_uid, flags) VALUES"
        " ('q-0001', '2025-03-01T09:20:00+00:00', 'burned-in text', 'dicom', 'US',"
        " '2.25.9', 'PSN0009', 0, 'alice', 'pixels', '2.25.9.1', '2.25.9.1.1',"
        " '[\"burned-in-annotation\"]')",
        "INSERT INTO quarantine_consent (study_uid, level, recorded_by, recorded_at, note)"
        " VALUES ('2.25.9', 'open', 'alice', '2025-03-01T09:21:00+00:00', '')",
        "INSERT INTO intake_sources (path_key, size, mtime_ns, sha256, state, first_seen,"
        " updated_at) VALUES ('pk-0001', 1234, 1700000000000000000, 'cd', 'seen',"
        " '2025-03-01T09:00:00+00:00', '2025-03-01T09:00:00+00:00')",
        "INSERT INTO web_download_links (token_sha256, request_id, user_name, recipient,"
        " created_at, expires_at) VALUES ('ef', 1, 'alice', 'conference',"
        " '2025-03-01T09:30:00Z', '2025-03-02T09:30:00Z')",
        "INSERT INTO governance_optout (pseudonym_sha256, added_by, added_at)"
        " VALUES ('" + "12" * 32 + "', 'boss', '2025-03-01T09:40:00Z')",
    ]
    for sql in rows:
        conn.execute(sql)
    conn.commit()

    # -- audit anchor --------------------------------------------------------------
    from archive.audit.anchor import DbAnchor

    anchor = DbAnchor(lambda: conn)
    anchor.write(7, "ab" * 32, 2)
    anchor.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
