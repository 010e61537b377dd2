"""A home made by the code before issue 27 (SQLite, schema_steps) opens and migrates
under the SQLAlchemy Core rooms, its data intact (tests/unit/old_schemas.py keeps the
old scripts verbatim)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from archive.catalogue import Catalogue
from archive.db import connect
from tests.unit.old_schemas import CATALOGUE_STEPS
from tests.unit.test_catalogue import fake_scan, study

NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def _old_home(path: Path) -> None:
    """archive.db as the old code left it: the catalogue's three steps and one case."""
    raw = sqlite3.connect(path)
    raw.execute(
        "CREATE TABLE schema_steps (room TEXT NOT NULL, step INTEGER NOT NULL,"
        " PRIMARY KEY (room, step))"
    )
    for number, script in enumerate(CATALOGUE_STEPS, start=1):
        raw.executescript(script)
        raw.execute("INSERT INTO schema_steps VALUES ('catalogue', ?)", (number,))
    raw.execute("INSERT INTO catalogue_sequences VALUES ('case:2026', 1)")
    raw.execute(
        "INSERT INTO catalogue_cases (case_id, study_uid, orthanc_study_id,"
        " patient_pseudonym, modalities, level, intake, status, added_at, updated_at, title)"
        " VALUES ('NSR-2026-00001', '2.25.77', 'orthanc-77', 'PSN0077', 'CT',"
        " 'limited-access', 'dicom', 'available', '2026-01-01T00:00:00Z',"
        " '2026-01-01T00:00:00Z', 'Tension pneumothorax')"
    )
    raw.execute(
        "INSERT INTO catalogue_series VALUES (1, 1, '2.25.77.1', 'CT', 'axial', 40, 'os-1')"
    )
    raw.execute("INSERT INTO catalogue_case_modalities VALUES ('CT', 1)")
    raw.commit()
    raw.close()


def test_old_catalogue_opens_migrates_and_keeps_its_cases(tmp_path):
    path = tmp_path / "archive.db"
    _old_home(path)
    cat = Catalogue(connect(path), "NSR", scanner=fake_scan)
    conn = connect(path)
    steps = conn.execute("SELECT step FROM schema_steps WHERE room = 'catalogue' ORDER BY step")
    assert [r[0] for r in steps] == [1, 2, 3, 4]
    title_index = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'catalogue_cases_title'"
    ).fetchone()[0]
    assert "lower(title)" in title_index  # step 4 ran on the old home
    old = cat.get("NSR-2026-00001")
    assert (old.title, old.series[0].series_uid, old.modalities) == (
        "Tension pneumothorax",
        "2.25.77.1",
        ["CT"],
    )
    assert [c.case_id for c in cat.search("pneumothorax").items] == ["NSR-2026-00001"]
    new = cat.upsert_from_study(study(5), "orthanc-5", NOW)
    assert new.case_id == "NSR-2026-00002"  # the old sequence goes on
    titled = [c.case_id for c in cat.search("", sort="title").items]
    assert titled == ["NSR-2026-00001", "NSR-2026-00002"]  # untitled last


def test_old_access_tables_gain_their_later_columns(tmp_path):
    """Steps 1-3 made by the old scripts, step 4 not yet: add_columns adds the
    workstation columns to the old table; accounts and tokens keep working."""
    from argon2 import PasswordHasher

    from archive.access import AccessStore, AccountPolicy
    from tests.unit.old_schemas import ACCESS_STEPS

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    path = tmp_path / "archive.db"
    raw = sqlite3.connect(path)
    raw.execute(
        "CREATE TABLE schema_steps (room TEXT NOT NULL, step INTEGER NOT NULL,"
        " PRIMARY KEY (room, step))"
    )
    for number, script in enumerate(ACCESS_STEPS[:3], start=1):
        raw.executescript(script)
        raw.execute("INSERT INTO schema_steps VALUES ('access', ?)", (number,))
    stamp = "2025-03-01T09:00:00+00:00"
    raw.execute(
        "INSERT INTO access_users (name, password_hash, created_at, created_by,"
        " password_changed_at, session_epoch) VALUES ('boss', ?, ?, 'root', ?, 3)",
        (cheap.hash("correct horse battery"), stamp, stamp),
    )
    raw.execute("INSERT INTO access_roles VALUES ('boss', 'personnel', ?, 'root')", (stamp,))
    raw.execute("INSERT INTO access_dicom_nodes VALUES ('ws-01', 'WS01', '10.0.0.21', 104, 0, 1)")
    raw.commit()
    raw.close()

    store = AccessStore(connect(path), AccountPolicy(), hasher=cheap)
    conn = connect(path)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(access_dicom_nodes)")}
    assert {"location", "added_by", "added_at"} <= columns
    steps = conn.execute("SELECT step FROM schema_steps WHERE room = 'access' ORDER BY step")
    assert [r[0] for r in steps] == [1, 2, 3, 4]
    boss = store.get_user("boss")
    assert boss.roles == ("personnel",) and store.session_epoch("boss") == 3
    store.add_user("alice", "correct horse battery", ["trainer"], NOW, "boss")
    assert [u.name for u in store.list_users()] == ["alice", "boss"]
    assert [n.name for n in store.list_dicom_nodes()] == ["ws-01"]


def _old_room(path: Path, room: str, steps: list[str]) -> sqlite3.Connection:
    raw = sqlite3.connect(path)
    raw.execute(
        "CREATE TABLE IF NOT EXISTS schema_steps (room TEXT NOT NULL, step INTEGER NOT NULL,"
        " PRIMARY KEY (room, step))"
    )
    for number, script in enumerate(steps, start=1):
        raw.executescript(script)
        raw.execute("INSERT INTO schema_steps VALUES (?, ?)", (room, number))
    return raw


def test_old_quarantine_gains_pixel_review_columns_and_keeps_items(tmp_path):
    from archive.paths import HomePaths
    from archive.quarantine.store import QuarantineStore
    from tests.unit.old_schemas import QUARANTINE_STEPS

    path = tmp_path / "archive.db"
    raw = _old_room(path, "quarantine", QUARANTINE_STEPS[:1])
    raw.execute(
        "INSERT INTO quarantine_items (id, received_at, reason, intake) VALUES"
        " ('q1', '2025-01-01T00:00:00+00:00', 'burned-in text', 'dicom')"
    )
    raw.commit()
    raw.close()
    store = QuarantineStore(HomePaths(tmp_path / "home"), None, connect(path))
    held = store.get("q1")
    assert (held.reason, held.kind, held.flags, held.status) == (
        "burned-in text",
        "deid",
        (),
        "held",
    )
    store.record_consent("2.25.5", "teaching", "trainer1")
    store.record_consent("2.25.5", "publication", "trainer2")
    assert store.consent_for("2.25.5") == "publication" and store.count() == 1


def test_old_governance_keeps_the_order_of_withdrawn_cases(tmp_path):
    """Cases were read back in rowid order; step 3 moves that order into `position`."""
    from archive.governance.optout.register import OptOutRegister
    from tests.unit.old_schemas import GOVERNANCE_STEPS

    path = tmp_path / "archive.db"
    raw = _old_room(path, "governance", GOVERNANCE_STEPS)
    raw.execute(
        "INSERT INTO governance_withdrawals (pseudonym_sha256, kind, requested_by,"
        " recorded_by, recorded_at) VALUES (?, 'withdrawal', 'patient', 'dpo', ?)",
        ("ab" * 32, "2025-01-01T00:00:00+00:00"),
    )
    for case_id in ("NSR-0009", "NSR-0001", "NSR-0005"):
        raw.execute("INSERT INTO governance_withdrawn_cases VALUES (1, ?)", (case_id,))
    raw.commit()
    raw.close()
    (withdrawal,) = OptOutRegister(connect(path)).withdrawals()
    assert withdrawal.case_ids == ("NSR-0009", "NSR-0001", "NSR-0005")
