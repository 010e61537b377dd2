"""An archive made on PostgreSQL before issue 27 opens with today's code and loses nothing.

tests/unit/old_homes/postgres_5c809bb.sql is pg_dump of the archive's schema as the
code at 5c809bb left it (every room's tables made by the regex translator from the
SQLite scripts: BIGINT columns, identity keys, a hidden `rowid` identity column,
schema_steps), with synthetic rows in every room (see old_homes/README.md). Each test
restores it into a fresh schema of the unit run's PostgreSQL, then opens every room
with today's code, which migrates it."""

from __future__ import annotations

import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import insert, text

from archive.vault.keyring import KdfParams
from tests import postgres

DUMP = Path(__file__).parent / "old_homes" / "postgres_5c809bb.sql"
OLD_SCHEMA = "old_home"
PASSPHRASE = "old-home test passphrase"  # the dump's test-only passphrase  # noqa: S105
FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
T1 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _restore(server: postgres.PostgresServer, schema: str) -> None:
    """The dump into `schema` (its one schema renamed), as the archive's role."""
    sql = DUMP.read_text().replace(OLD_SCHEMA, schema)
    # pg_dump 15.14+ fences the script with \restrict/\unrestrict, which an older psql
    # does not know; they only guard against commands hidden in the dumped data.
    lines = sql.splitlines(keepends=True)
    sql = "".join(line for line in lines if not line.startswith(("\\restrict", "\\unrestrict")))
    result = subprocess.run(
        [
            str(postgres.PG_BIN / "psql"),
            "-h", "127.0.0.1",
            "-p", str(server.port),
            "-U", server.user,
            "-d", server.database,
            "-v", "ON_ERROR_STOP=1",
            "-q",
        ],
        input=sql,
        env={"PGPASSWORD": server.password, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def old_home(pg):
    """A connection opener on a fresh schema holding the old home."""
    path = f"old-home-{secrets.token_hex(4)}"
    _restore(pg.server, pg.schema_for(path))
    return lambda: pg.connect(path)


def _open_every_room(conn, tmp_path: Path) -> dict:
    """Every room of today's code on `conn` (each migrates as it opens)."""
    from archive.access import AccessStore, AccountPolicy
    from archive.audit.anchor import ANCHOR_ROOM, schema_steps
    from archive.catalogue import Catalogue
    from archive.db import migrate
    from archive.dicom.sessions import SessionTable
    from archive.governance._store import ensure_schema as governance_schema
    from archive.ingest import flags, origins, tickets
    from archive.intake.journal import Journal
    from archive.paths import HomePaths
    from archive.quarantine.store import QuarantineStore
    from archive.teach.store import TeachStore
    from archive.transfer import store as transfer
    from archive.vault.keyring import Keyring
    from archive.vault.ledger import InstanceLedger
    from archive.web.downloads import SCHEMA as LINKS
    from archive.web.sessions import SessionStore
    from tests.unit.test_catalogue import fake_scan

    home = HomePaths(tmp_path)
    home.data_dir.mkdir(parents=True, exist_ok=True)
    ring_path = tmp_path / "keys" / "keyring.json"
    ring = (
        Keyring.open(ring_path, "test passphrase 42")
        if ring_path.exists()
        else Keyring.create(ring_path, "test passphrase 42", kdf=FAST)
    )
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    rooms = {
        "access": AccessStore(conn, AccountPolicy(), hasher=cheap),
        "catalogue": Catalogue(conn, "OLD", scanner=fake_scan),
        "quarantine": QuarantineStore(home, ring, conn),
        "web": SessionStore(conn),
        "ledger": InstanceLedger(conn),
        "teach": TeachStore(conn),
        "dicom": SessionTable(conn),
        "journal": Journal(conn),
    }
    governance_schema(conn)
    flags.ensure_schema(conn)
    origins.ensure_schema(conn)
    tickets._ensure(conn)
    transfer.ensure_schema(conn)
    migrate(conn, "web_links", LINKS)
    migrate(conn, ANCHOR_ROOM, schema_steps())
    return rooms


def _steps(conn) -> list[tuple[str, int]]:
    rows = conn.execute(text("SELECT room, step FROM schema_steps ORDER BY room, step"))
    return [(r[0], r[1]) for r in rows]


def test_old_postgres_home_opens_and_migrates_every_room(old_home, tmp_path):
    conn = old_home()
    before = _steps(conn)
    _open_every_room(conn, tmp_path)
    after = _steps(conn)
    assert set(before) <= set(after)
    conn.close()
    # A second open is a no-op: no step runs again, nothing new is recorded.
    again = old_home()
    _open_every_room(again, tmp_path)
    assert _steps(again) == after


def test_every_old_row_reads_through_todays_rooms(old_home, tmp_path):
    from archive.access import Principal
    from archive.audit.anchor import DbAnchor
    from archive.governance.optout.register import OptOutRegister
    from archive.governance.policy import load_policy
    from archive.governance.pulls import PullInventory
    from archive.governance.removals.records import RemovalRequests
    from archive.ingest import flags, origins, tickets
    from archive.transfer import store as transfer

    conn = old_home()
    rooms = _open_every_room(conn, tmp_path)
    alice = rooms["access"].authenticate_basic("alice", PASSPHRASE, T1)
    assert isinstance(alice, Principal) and alice.roles == ("trainer",)
    assert rooms["access"].authenticate_basic("alice", "wrong", T1).__class__ is not Principal
    [node] = rooms["access"].nodes.list_dicom_nodes()
    assert (node.name, node.aet, node.port, node.may_store, node.may_query) == (
        "ws-01",
        "WS01",
        11112,
        False,
        True,
    )
    # Access step 4's place columns are there, empty: a workstation once given a place.
    assert not rooms["access"].workstations.exists("ws-01")
    cat = rooms["catalogue"]
    old = cat.get("OLD-2025-00001")
    assert (old.study_uid, old.patient_pseudonym, old.modalities) == (
        "2.25.1001",
        "PSN0001",
        ["CT"],
    )
    assert len(old.series) == 2
    assert [c.collection_id for c in cat.list_collections()] == ["OLD-COL-0001"]
    item = rooms["quarantine"].get("q-0001")
    assert (item.study_uid, item.kind, item.status) == ("2.25.9", "pixels", "held")
    assert rooms["quarantine"].consent_for("2.25.9") == "open"
    assert rooms["ledger"].instance("inst-2").sop_uid == "2.25.1.1.2"
    assert rooms["ledger"].counts()["instances"] == 2
    teach = rooms["teach"]
    assert teach.unknowns() == ["OLD-2025-00001"]
    assert teach.answer("OLD-2025-00001", "bob").answer == "pneumothorax"
    assert teach.case_of_day("2025-03-01").case_id == "OLD-2025-00002"
    ws = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert [s.user for s in rooms["dicom"].all_active(ws)] == ["alice"]
    assert rooms["journal"].counts()
    pulls = PullInventory(conn)
    assert pulls.inventory() == {"WS1": ["OLD-2025-00001", "OLD-2025-00002"]}
    removal = RemovalRequests(conn, load_policy()).get(1)
    assert (removal.requester, removal.case_ids) == ("alice", ("OLD-2025-00001",))
    # The order given, kept by SQLite's rowid (here the translator's hidden one), is
    # governance step 3's `position`.
    assert RemovalRequests(conn, load_policy()).get(2).case_ids == (
        "OLD-2025-00003",
        "OLD-2025-00001",
        "OLD-2025-00002",
    )
    [withdrawal] = OptOutRegister(conn).withdrawals()
    assert withdrawal.case_ids == ("OLD-2025-00002", "OLD-2025-00001")
    assert origins.intake_of(conn, "2.25.1") == "dicom"
    assert flags.flags_for_study(conn, "2.25.1") == ["burned-in-annotation"]
    report = flags.pixel_report(conn, "2.25.1")["2.25.1.1"]
    assert (report["instances"], report["ocr_read"], report["words_found"]) == (1, 1, 2)
    assert report["kinds"] == ["date"]
    assert not tickets.was_redeemed(conn, _only(conn, "ingest_release_tickets", "nonce"))
    assert [p.organisation for p in transfer.peers(conn)] == ["Synthetic Partner School"]
    assert _only(conn, "web_download_links", "user_name") == "alice"
    assert _only(conn, "governance_optout", "added_by") == "boss"
    anchor = DbAnchor(old_home).read()
    assert (anchor.seq, anchor.hash, anchor.format) == (7, "ab" * 32, 2)


def _only(conn, table: str, column: str):
    rows = conn.execute(text(f"SELECT {column} FROM {table}")).fetchall()  # noqa: S608 - test names
    assert len(rows) == 1, rows
    return rows[0][0]


def test_new_rows_after_the_old_ones(old_home, tmp_path):
    """Identity keys go on after the old maximum; unique keys still refuse a duplicate."""
    from archive.access.tables import roles as roles_table
    from archive.catalogue.tables import cases as cases_table
    from archive.db import IntegrityError
    from archive.governance.optout.register import OptOutRegister
    from archive.governance.policy import load_policy
    from archive.governance.pulls import PullInventory
    from archive.governance.removals.records import RemovalRequests
    from archive.ingest import origins
    from archive.transfer import store as transfer
    from tests.unit.test_catalogue import study

    conn = old_home()
    rooms = _open_every_room(conn, tmp_path)
    access = rooms["access"]
    access.add_user("carol", PASSPHRASE, ["registrar"], T1, "boss")
    with pytest.raises(Exception, match="exists|already"):
        access.add_user("alice", PASSPHRASE, ["trainer"], T1, "boss")
    token_id, _ = access.create_token("carol", T1, days=5)
    assert token_id
    cat = rooms["catalogue"]
    new = cat.upsert_from_study(study(4), "orthanc-4", T1)
    assert new.case_id == "OLD-2026-00001" or new.case_id.endswith("00004")
    assert cat.get(new.case_id).series
    coll = cat.create_collection("Abdomen", "Synthetic set two", "alice", T1)
    assert coll.collection_id == "OLD-COL-0002"
    cat.add_to_collection(coll.collection_id, ["OLD-2025-00001", new.case_id], "alice")
    assert [i.case_id for i in cat.get_collection(coll.collection_id).items] == [
        "OLD-2025-00001",
        new.case_id,
    ]
    pulls = PullInventory(conn)
    assert pulls.record_pull("OLD-2025-00003", "WS2", "alice", T1) == 3
    removals = RemovalRequests(conn, load_policy())
    assert sorted(r.id for r in removals.list()) == [1, 2]
    request = removals.create(
        [new.case_id, "OLD-2025-00003"],  # 00001 and 00002 were withdrawn in the old home
        "teaching_materials",
        "Synthetic teaching day slides",
        "alice",
        ["trainer"],
        case_levels={new.case_id: "publication", "OLD-2025-00003": "publication"},
        now=T1,
    )
    assert request.id == 3
    assert removals.get(3).case_ids == (new.case_id, "OLD-2025-00003")
    withdrawal = OptOutRegister(conn).record_withdrawal(
        "PSN0003", ["OLD-2025-00003"], requested_by="synthetic", recorded_by="boss", now=T1
    )
    assert withdrawal.id == 2
    held = rooms["quarantine"].hold(
        b"synthetic", "test", raw=False, intake="dicom", study_uid="2.25.10", kind="deid"
    )
    assert {i.id for i in rooms["quarantine"].list()} == {"q-0001", held}
    session_id, _ = rooms["web"].create("carol", T1, epoch=0, trained=True)
    assert rooms["web"].lookup(session_id, T1 + timedelta(minutes=1)).user == "carol"
    origins.record(conn, "2.25.11", "web")
    assert origins.intake_of(conn, "2.25.11") == "web"
    transfer.add_peer(conn, "Synthetic Partner School", "cd" * 32, "boss")  # a new key
    assert [p.signing_key for p in transfer.peers(conn)] == ["cd" * 32]
    # The old tables' unique keys hold against today's statements.
    for table, values in (
        (roles_table, {"user": "alice", "role": "trainer", "granted_at": "x", "granted_by": "x"}),
        (cases_table, {**_case_values(), "study_uid": "2.25.1001"}),
    ):
        with pytest.raises(IntegrityError), conn.write():
            conn.execute(insert(table).values(**values))
    with conn.write():  # the same rows with another key go in (the refusals were the keys)
        conn.execute(
            insert(roles_table).values(user="carol", role="trainer", granted_at="x", granted_by="x")
        )
        conn.execute(insert(cases_table).values(**_case_values(), study_uid="2.25.9999"))
    entry = rooms["journal"].record("pk-0002", 10, 1, "ef" * 32)
    assert entry.id == 2


def _case_values() -> dict:
    return {
        "case_id": "OLD-2099-00009",
        "orthanc_study_id": "orthanc-9",
        "patient_pseudonym": "PSN0099",
        "modalities": "CT",
        "level": "limited-access",
        "intake": "dicom",
        "status": "available",
        "added_at": "2026-12-04T09:00:00Z",
        "updated_at": "2026-12-04T09:00:00Z",
    }


def _shape(conn) -> dict[str, set[tuple]]:
    """Columns (type, nullability, default, identity), indexes, constraints and
    triggers of the connection's schema, the schema's name taken out."""

    def rows(sql: str) -> set[tuple]:
        found = conn.execute(text(sql)).fetchall()
        return {tuple(_plain(value) for value in row) for row in found}

    return {
        "columns": rows(
            "SELECT table_name, column_name, data_type, is_nullable, column_default,"
            " is_identity FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ),
        "indexes": rows(
            "SELECT tablename, regexp_replace(indexdef, ' ON [a-z0-9_]+\\.', ' ON ')"
            " FROM pg_indexes WHERE schemaname = current_schema()"
        ),
        "constraints": rows(
            "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace = to_regnamespace(current_schema())"
        ),
        "triggers": rows(
            "SELECT event_object_table, trigger_name, action_statement"
            " FROM information_schema.triggers WHERE trigger_schema = current_schema()"
        ),
    }


def _plain(value):
    """A default as a value ('0'::bigint and 0 alike); other values unchanged."""
    if isinstance(value, str) and "::" in value:
        value = value.split("::")[0].strip("'")
    return value


# What an upgraded translator-made home keeps of its old shape, none of it read or
# written by today's code: the hidden `rowid` identity column (governance step 3 read
# it once for `position`), identity on the two governance keys that are a request's id
# (always given), and schema_steps.step as BIGINT.
def _old_only(column: tuple) -> bool:
    table, name, data_type = column[:3]
    return (
        name == "rowid"
        or (table, name) in {
            ("governance_removal_approvals", "request_id"),
            ("governance_removal_refusals", "request_id"),
        }
        or (table, name, data_type) == ("schema_steps", "step", "bigint")
    )  # fmt: skip


def test_upgraded_old_home_has_the_shape_of_a_new_one(old_home, pg, tmp_path):
    """Every index, unique key, check, foreign key, trigger and column of a home made
    today is in the upgraded old one, the same; the old one has only the leftovers
    above besides."""
    old = old_home()
    _open_every_room(old, tmp_path / "old")
    new = pg.connect("a-home-made-today")
    _open_every_room(new, tmp_path / "new")
    upgraded, fresh = _shape(old), _shape(new)
    leftovers = upgraded["columns"] - fresh["columns"]
    assert leftovers and all(_old_only(c) for c in leftovers)
    # A column of today's home differs only where the old one keeps a leftover.
    differing = {c[:2] for c in fresh["columns"] - upgraded["columns"]}
    assert differing == {
        ("governance_removal_approvals", "request_id"),
        ("governance_removal_refusals", "request_id"),
        ("schema_steps", "step"),
    }
    for kind in ("indexes", "constraints", "triggers"):
        assert fresh[kind] and upgraded[kind] == fresh[kind], kind


def test_the_wipe_copies_the_old_homes_records_for_its_certificate(old_home, tmp_path):
    """The closure wipe copies the certificate's records out of PostgreSQL column by
    column as today's rooms declare them: the old tables' hidden rowid stays behind and
    every old row comes along."""
    from archive.db import connect
    from archive.governance.closure.wipe import _copy_records
    from archive.governance.policy import load_policy
    from archive.governance.pulls import PullInventory
    from archive.transfer import store as transfer

    conn = old_home()
    _open_every_room(conn, tmp_path)
    memory = connect(":memory:")
    _copy_records(conn, memory, load_policy())
    pulls = PullInventory(memory).pulls()
    assert sorted((p["id"], p["case_id"]) for p in pulls) == [
        (1, "OLD-2025-00001"),
        (2, "OLD-2025-00002"),
    ]
    assert [p.organisation for p in transfer.peers(memory)] == ["Synthetic Partner School"]


def test_a_home_restored_in_part_is_refused_saying_what_to_do(old_home, tmp_path):
    """The teach room's tables without their schema_steps rows (a partial restore): its
    step 1 cannot run; the refusal says so and what to do, and changes nothing."""
    from archive.db import DatabaseError, SchemaStepError
    from archive.teach.store import TeachStore

    conn = old_home()
    with conn.write():
        conn.execute(text("DELETE FROM schema_steps WHERE room = 'teach'"))
    with pytest.raises(SchemaStepError) as caught:
        TeachStore(conn)
    message = str(caught.value)
    assert "teach room's schema step 1" in message and "schema_steps has no record" in message
    assert "restore the archive's tables and schema_steps together" in message
    assert not isinstance(caught.value, DatabaseError)  # no tolerant caller carries on
    again = old_home()
    assert again.execute(text("SELECT count(*) FROM teach_answers")).scalar() == 1
    assert ("teach", 1) not in _steps(again)


def test_a_refused_step_on_sqlite_says_what_to_do_too(tmp_path):
    from archive.db import SchemaStepError, connect, migrate

    conn = connect(tmp_path / "archive.db")
    conn.execute("CREATE TABLE t (a TEXT)")
    with pytest.raises(SchemaStepError, match="the r room's schema step 1 .*already exists"):
        migrate(conn, "r", ["CREATE TABLE t (a TEXT)"])
    with pytest.raises(SchemaStepError, match="restore the backup made before the upgrade"):
        migrate(conn, "s", ["INSERT INTO no_such_table VALUES (1)"])
    assert conn.execute("SELECT count(*) FROM schema_steps").fetchone()[0] == 0
